"""Regularisation in `finetune`: label smoothing, MixUp/CutMix, weight EMA (resumed too), and test-time
augmentation in `evaluate` / `predict` / `cnnzoo predict --tta`. Real Keras training on tiny models."""

import json

import numpy as np
import pytest

import cnnzoo
from cnnzoo.errors import ConfigError
from conftest import brightness_blobs, crash_at

SIZE = 12
KEYS = {"loss", "accuracy", "val_loss", "val_accuracy"}


def tiny(batch_norm=False):
    return cnnzoo.get(
        "bird_classifier",
        num_classes=3,
        input_shape=(SIZE, SIZE, 3),
        compile=False,
        blocks=[{"filters": 4, "batch_norm": batch_norm}, {"filters": 8}],
        dense=[8],
        dropout=0.0,
    )


def blobs(n=36, classes=3, seed=0):
    """`brightness_blobs` with a brighter left half (so a flip changes the input)."""
    x, y = brightness_blobs(n, classes, seed, SIZE)
    x[:, :, : SIZE // 2] = np.clip(x[:, :, : SIZE // 2] + 30, 0, 255)
    return x, y


def data():
    x, y = blobs()
    xv, yv = blobs(12, seed=1)
    return x, y, xv, yv


def plain_cross_entropy(model, x, y):
    import keras

    probs = cnnzoo.deploy.inference.predictor(model)(x)
    return float(np.mean(keras.losses.sparse_categorical_crossentropy(y, probs)))


def test_loss_and_accuracy_take_integer_labels_and_distributions():
    import keras

    from cnnzoo.finetuning.regularisation import cross_entropy, label_accuracy

    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], "float32")
    labels = np.array([0, 1])
    one_hot = np.eye(3, dtype="float32")[labels]
    loss = cross_entropy(0.1)
    smoothed = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(one_hot, probs)
    assert np.allclose(np.mean(loss(one_hot, probs)), smoothed)  # distributions: smoothed
    assert np.allclose(np.mean(loss(labels, probs)), keras.losses.SparseCategoricalCrossentropy()(labels, probs))
    for y in (labels, one_hot, labels[:, None]):
        metric = label_accuracy()
        metric.update_state(y, probs)
        assert metric.name == "accuracy" and float(metric.result()) == 0.5


def test_mixup_and_cutmix_mix_images_and_targets_alike_and_differently_each_epoch():
    import tensorflow as tf

    from cnnzoo.data.mixing import soft_targets

    x, y = blobs(8)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    for kind in ({"mixup": 0.4}, {"cutmix": 1.0}):
        mixed = soft_targets(ds, 3, seed=3, **kind)
        assert int(mixed.cardinality()) == 1
        ((a_x, a_t),) = list(mixed)
        ((b_x, b_t),) = list(mixed)  # a second epoch
        ((c_x, c_t),) = list(soft_targets(ds, 3, seed=3, **kind))  # the same seed, a new pipeline
        assert np.array_equal(a_x, c_x) and np.array_equal(a_t, c_t)
        assert not np.array_equal(a_t, b_t)
        a_x, a_t = np.asarray(a_x), np.asarray(a_t)
        assert np.allclose(a_t.sum(axis=1), 1)
        lam = a_t[0, y[0]] if y[0] != y[-1] else None
        if "mixup" in kind:  # every image is lam * itself + (1 - lam) * its partner
            assert np.allclose(a_x, lam * x + (1 - lam) * x[::-1], atol=1e-3)
        else:  # every pixel comes from the image or its partner; the kept share is lam
            from_other = np.all(a_x == x[::-1], axis=-1) & ~np.all(a_x == x, axis=-1)
            assert np.all(np.all(a_x == x, axis=-1) | np.all(a_x == x[::-1], axis=-1))
            assert np.isclose(1 - from_other[0].mean(), lam)
    ((plain_x, targets),) = list(soft_targets(ds, 3))  # no mixing: one-hot targets
    assert np.array_equal(plain_x, x) and np.array_equal(targets, np.eye(3)[y])


def test_options_are_checked_before_any_work(tmp_path):
    for bad in ({"label_smoothing": 1.0}, {"mixup": -0.1}, {"cutmix": "yes"}, {"ema": 1.5}):
        with pytest.raises(ConfigError, match=f"`{next(iter(bad))}`.*Received"):
            cnnzoo.finetune("no_such_model", "no_such_folder", out=tmp_path / "run", **bad)
    assert not (tmp_path / "run").exists()


def test_label_smoothing_trains_with_cached_features_and_keeps_validation_unsmoothed(tmp_path):
    x, y, xv, yv = data()
    result = cnnzoo.finetune(
        tiny(),
        (x, y, xv, yv),
        stages=["head:2:1e-2", "all:2:1e-3"],
        out=tmp_path / "run",
        batch_size=8,
        verbose=0,
        plots=False,
        pretrained=True,
        label_smoothing=0.2,
        augment=False,
    )
    assert [s.feature_cache for s in result.stages] == [True, False]  # smoothing needs no images
    for stage in result.stages:
        assert set(stage.history) == KEYS and all(len(v) == 2 for v in stage.history.values())
    # val_loss is the plain cross-entropy of the model, as without smoothing (no BatchNorm, no EMA here)
    assert np.isclose(result.stages[-1].history["val_loss"][-1], plain_cross_entropy(result.model, xv, yv), rtol=1e-4)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["fingerprint"]["label_smoothing"] == 0.2
    loaded = cnnzoo.load(result.model_path)  # saved with the plain compile: loads, predicts, evaluates
    assert loaded.loss == "sparse_categorical_crossentropy"
    probs = cnnzoo.deploy.inference.predictor(loaded)(xv)
    assert np.allclose(probs, cnnzoo.deploy.inference.predictor(result.model)(xv), atol=1e-6)
    assert cnnzoo.predict(loaded, xv[0]).label in ("0", "1", "2")
    accuracy = loaded.evaluate(xv, yv, verbose=0, return_dict=True)["accuracy"]
    assert np.isclose(accuracy, result.val_accuracy)


def test_mixup_and_cutmix_train_through_the_network(tmp_path):
    x, y, xv, yv = data()
    result = cnnzoo.finetune(
        tiny(),
        (x, y, xv, yv),
        stages=["head:2:1e-2"],
        out=tmp_path / "run",
        batch_size=8,
        verbose=0,
        plots=False,
        pretrained=True,
        mixup=0.2,
        cutmix=1.0,
    )
    (stage,) = result.stages
    assert not stage.feature_cache and set(stage.history) == KEYS
    assert np.isclose(stage.history["val_loss"][-1], plain_cross_entropy(result.model, xv, yv), rtol=1e-4)


def ema_probe(seen):
    """Records, per epoch: the weights validation ran on, the weights after it, and the optimizer's averages."""
    import keras

    class Probe(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            seen.setdefault("validated", []).append([np.array(w) for w in self.model.trainable_weights])

        def on_epoch_end(self, epoch, logs=None):
            seen.setdefault("raw", []).append([np.array(w) for w in self.model.trainable_weights])
            seen.setdefault("average", []).append(averages(self.model))

        def on_train_begin(self, logs=None):
            seen.setdefault("averages_at_start", []).append(
                averages(self.model) if self.model.optimizer.built else None
            )

    return Probe()


def averages(model):
    """The optimizer's moving averages, in the order of the trainable weights."""
    out = [np.array(v) for v in model.optimizer.variables if v.name.endswith("_average")]
    assert len(out) == len(model.trainable_weights)
    return out


def test_ema_validates_and_saves_the_averaged_weights(tmp_path):
    x, y, xv, yv = data()
    seen = {}
    result = cnnzoo.finetune(
        tiny(),
        (x, y, xv, yv),
        stages=["all:3:1e-2"],
        out=tmp_path / "run",
        batch_size=8,
        verbose=0,
        plots=False,
        pretrained=True,
        ema=0.8,
        callbacks=[ema_probe(seen)],
    )
    for validated, average, raw in zip(seen["validated"], seen["average"], seen["raw"]):
        assert all(np.allclose(v, a) for v, a in zip(validated, average))  # validation on the averages
        assert not all(np.allclose(v, r) for v, r in zip(validated, raw))  # ... not the raw weights
    final = [np.array(w) for w in result.model.trainable_weights]
    assert all(np.allclose(f, a) for f, a in zip(final, seen["average"][-1]))  # saved: the averages
    assert np.isclose(result.stages[0].history["val_loss"][-1], plain_cross_entropy(result.model, xv, yv), rtol=1e-4)
    loaded = cnnzoo.load(result.model_path)
    assert all(np.allclose(f, np.array(w)) for f, w in zip(final, loaded.trainable_weights))


@pytest.mark.parametrize("dtype", [None, "mixed_float16"])  # mixed: the averages of a LossScaleOptimizer's inner one
def test_ema_averages_survive_a_crash_and_resume(tmp_path, dtype):
    x, y, xv, yv = data()
    first, second = {}, {}
    common = dict(
        stages=["all:3:1e-2"],
        out=tmp_path / "run",
        batch_size=8,
        verbose=0,
        plots=False,
        pretrained=True,
        ema=0.8,
        dtype=dtype,
    )
    with pytest.raises(RuntimeError, match="simulated crash"):
        cnnzoo.finetune(tiny(True), (x, y, xv, yv), callbacks=[ema_probe(first), crash_at(2)], **common)
    assert (tmp_path / "run" / "backup" / "stage_1" / "epoch_0002.weights.h5").is_file()
    result = cnnzoo.finetune(tiny(True), (x, y, xv, yv), callbacks=[ema_probe(second)], **common)
    assert result.resumed and len(result.stages[0].history["loss"]) == 3
    restored = second["averages_at_start"][0]  # the checkpoint's averages, not copies of the raw weights
    assert all(np.array_equal(r, a) for r, a in zip(restored, first["average"][-1]))
    assert not all(np.allclose(r, w) for r, w in zip(restored, first["raw"][-1]))
    assert all(np.allclose(np.array(w), a) for w, a in zip(result.model.trainable_weights, second["average"][-1]))


def test_tta_is_the_mean_of_the_image_and_its_mirror(tmp_path):
    from cnnzoo.deploy.inference import predictor
    from cnnzoo.finetuning.results import evaluate

    x, y = blobs(10)
    model = tiny()
    forward = predictor(model)
    expected = (forward(x) + forward(x[:, :, ::-1])) / 2
    assert not np.allclose(forward(x), forward(x[:, :, ::-1]))  # the flip matters for this model
    got = np.array(
        [[p for _, p in sorted(pred.top_k, key=lambda t: t[0])] for pred in cnnzoo.predict(model, x, top_k=3, tta=True)]
    )
    assert np.allclose(got, expected, atol=1e-6)
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    accuracy, cm = evaluate(model, ds, 3, tta=True)
    assert np.array_equal(cm.sum(axis=0), np.bincount(expected.argmax(axis=1), minlength=3))
    assert accuracy == np.mean(expected.argmax(axis=1) == y)

    path = tmp_path / "m.keras"
    model.save(path)
    from PIL import Image

    Image.fromarray(x[0].astype("uint8")).save(tmp_path / "a.png")
    import contextlib
    import io

    from cnnzoo.cli.app import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["predict", str(path), str(tmp_path / "a.png"), "--tta", "--json", "--top-k", "3"]) == 0
    (row,) = json.loads(out.getvalue())
    image = np.asarray(Image.open(tmp_path / "a.png"), "float32")[None]
    mean = (forward(image) + forward(image[:, :, ::-1])) / 2
    assert np.allclose(
        [row_p["probability"] for row_p in sorted(row["top_k"], key=lambda t: t["label"])], mean[0], atol=1e-6
    )


def test_finetune_command_line_flags():
    from cnnzoo.cli.app import build_parser

    parser = build_parser()
    args = parser.parse_args(
        [
            "finetune",
            "digits_cnn",
            "data/",
            "--augment",
            "auto",
            "--label-smoothing",
            "0.1",
            "--mixup",
            "0.2",
            "--cutmix",
            "1",
            "--ema",
        ]
    )
    assert (args.augment, args.label_smoothing, args.mixup, args.cutmix, args.ema) == ("auto", 0.1, 0.2, 1.0, True)
    args = parser.parse_args(["finetune", "digits_cnn", "data/", "--augment", "--ema", "0.99"])
    assert (args.augment, args.ema) == (True, 0.99)
    args = parser.parse_args(["finetune", "digits_cnn", "data/"])
    assert (args.augment, args.label_smoothing, args.mixup, args.cutmix, args.ema) == (
        "auto",
        0.1,
        0.0,
        0.0,
        False,
    )  # the defaults
    assert parser.parse_args(["finetune", "digits_cnn", "data/", "--no-augment"]).augment is False
    with pytest.raises(SystemExit):
        parser.parse_args(["finetune", "digits_cnn", "data/", "--augment", "sometimes"])
