"""`cnnzoo.finetune(dtype=..., steps_per_execution=...)`: mixed precision runs train and save with their policy,
a float32 model fine-tunes into mixed precision, and running several batches per call changes neither the
per-epoch checkpoints and history nor what per-batch callbacks see. Real Keras training on tiny models."""

import numpy as np
import pytest

import cnnzoo
from cnnzoo.errors import ConfigError
from cnnzoo.zoo.precision import dtype_of
from conftest import brightness_blobs, crash_at

SIZE = 12


def tiny(**kw):
    return cnnzoo.get(
        "bird_classifier",
        num_classes=3,
        input_shape=(SIZE, SIZE, 3),
        compile=False,
        blocks=[{"filters": 4, "batch_norm": True}, {"filters": 8}],
        dense=[8],
        dropout=0.2,
        **kw,
    )


def blobs(n=60, classes=3, seed=0):
    return brightness_blobs(n, classes, seed, SIZE)


def test_a_mixed_bfloat16_run_trains_and_saves_with_its_policy(tmp_path):
    x, y = blobs()
    result = cnnzoo.finetune(
        tiny(),
        (x, y),
        stages=["all:4:1e-2"],
        out=tmp_path / "run",
        batch_size=8,
        verbose=0,
        plots=False,
        dtype="mixed_bfloat16",
    )
    loss = result.stages[0].history["loss"]
    assert len(loss) == 4 and loss[-1] < loss[0]
    assert dtype_of(result.model) == "mixed_bfloat16"
    loaded = cnnzoo.load(result.model_path)
    assert dtype_of(loaded) == "mixed_bfloat16"
    assert loaded.get_layer("head").steps[-1].compute_dtype == "float32"
    probs = loaded.predict(x[:6], verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probs, result.model.predict(x[:6], verbose=0))
    assert "dtype" in __import__("json").loads((tmp_path / "run" / "state.json").read_text())["fingerprint"]


def test_a_float32_model_fine_tunes_into_mixed_precision_with_a_new_head(tmp_path):
    x, y = blobs(classes=2)
    model = tiny()
    model.get_layer("head").pretrained = True
    result = cnnzoo.finetune(
        model,
        (x, y),
        stages=["head:1:1e-2", "all:1:1e-3"],
        out=tmp_path / "run",
        batch_size=8,
        verbose=0,
        plots=False,
        dtype="mixed_float16",
    )
    assert dtype_of(model) == "float32"  # the caller's model is left as it was
    trained = result.model
    assert dtype_of(trained) == "mixed_float16" and trained.output_shape == (None, 2)
    assert trained.get_layer("block1").steps[0].compute_dtype == "float16"
    import keras

    assert isinstance(trained.optimizer, keras.optimizers.LossScaleOptimizer)
    assert dtype_of(cnnzoo.load(result.model_path)) == "mixed_float16"


def test_a_mixed_model_keeps_its_policy_when_dtype_is_not_given(tmp_path):
    x, y = blobs()
    result = cnnzoo.finetune(
        tiny(dtype="mixed_bfloat16"),
        (x, y),
        stages=["all:1:1e-2"],
        out=tmp_path / "run",
        batch_size=8,
        verbose=0,
        plots=False,
    )
    assert dtype_of(result.model) == "mixed_bfloat16"


def test_bad_dtype_and_steps_per_execution_are_refused_before_any_work(tmp_path):
    x, y = blobs()
    with pytest.raises(ConfigError, match="`dtype`"):
        cnnzoo.finetune(tiny(), (x, y), out=tmp_path / "a", dtype="bfloat16")
    for bad in (0, -1, 2.5, True, "fast"):
        with pytest.raises(ConfigError, match="`steps_per_execution` must be 'auto' or an integer >= 1"):
            cnnzoo.finetune(tiny(), (x, y), out=tmp_path / "b", steps_per_execution=bad)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _recorder():
    import keras

    class Epochs(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs = []

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append(epoch)

    return Epochs()


@pytest.mark.parametrize("cache", [False, True])
def test_steps_per_execution_keeps_epochs_checkpoints_and_history(tmp_path, cache):
    import keras

    x, y = blobs(90)  # 72 training images in batches of 8: 9 steps, not a multiple of 4
    runs = {}
    for per_call in (1, 4, "auto"):
        seen = _recorder()
        keras.utils.set_random_seed(0)
        model = tiny()
        model.get_layer("head").pretrained = True
        result = cnnzoo.finetune(
            model,
            (x, y),
            stages=["head:2:1e-2", "all:3:1e-3"],
            out=tmp_path / str(per_call),
            batch_size=8,
            verbose=0,
            plots=False,
            callbacks=[seen],
            cache_features=cache,
            steps_per_execution=per_call,
            seed=0,
            augment=False,
        )
        runs[per_call] = (result, seen.epochs)
        state = __import__("json").loads((tmp_path / str(per_call) / "state.json").read_text())
        assert [len(state["history"][k]) for k in ("1", "2")] == [2, 3]  # one checkpoint record per epoch
    base, base_epochs = runs[1]
    for result, epochs in runs.values():
        assert epochs == base_epochs == [0, 1, 0, 1, 2]
        for a, b in zip(result.stages, base.stages):
            assert {k: len(v) for k, v in a.history.items()} == {k: len(v) for k, v in b.history.items()}
            np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-3, atol=1e-4)


def test_auto_keeps_every_batch_for_per_batch_callbacks(tmp_path):
    import keras

    class Batches(keras.callbacks.Callback):
        count = 0

        def on_train_batch_end(self, batch, logs=None):
            Batches.count += 1

    x, y = blobs(90)
    cnnzoo.finetune(
        tiny(),
        (x, y),
        stages=["all:2:1e-2"],
        out=tmp_path / "run",
        batch_size=8,
        verbose=0,
        plots=False,
        callbacks=[Batches()],
    )
    assert Batches.count == 2 * 9  # every batch seen, as before steps_per_execution


def test_an_interrupted_run_resumes_with_another_steps_per_execution(tmp_path):
    x, y = blobs()
    kw = dict(stages=["all:4:1e-2"], out=tmp_path / "run", batch_size=8, verbose=0, plots=False)
    with pytest.raises(RuntimeError, match="simulated crash"):
        cnnzoo.finetune(tiny(), (x, y), callbacks=[crash_at(2)], steps_per_execution=1, **kw)
    seen = _recorder()
    result = cnnzoo.finetune(tiny(), (x, y), callbacks=[seen], steps_per_execution=8, **kw)
    assert result.resumed and seen.epochs == [2, 3]
    assert len(result.stages[0].history["loss"]) == 4
