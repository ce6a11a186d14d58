"""cnnzoo.data.prepare: every accepted form of `data`, each error, and the proof that
`finetune` and `tune` train and validate on exactly the same images.

Real TensorFlow pipelines over real arrays (the UCI digits) and real Pillow-written
image folders; the workflow test runs a real fine-tuning run and a real search.
"""

import warnings

import numpy as np
import pytest
from PIL import Image

import cnnzoo
from cnnzoo import data
from cnnzoo.data import pipeline
from cnnzoo.errors import ConfigError, DataError, DataNotFoundError, DataWarning
from conftest import write_image_folder

SIZE = 12


def batches(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # these folders have no bad files
        return fn(*args, **kwargs)


def small_digits(n=200):
    d = data.digits(seed=0)
    return d.x_train[:n], d.y_train[:n]


def rows(x):
    """Each image as bytes, to compare sets of images exactly."""
    return [img.tobytes() for img in np.asarray(x, np.float32)]


# ------------------------------------------------------------------ accepted forms


def test_arrays_are_split_stratified_by_seed_and_fed_as_float_batches():
    x, y = small_digits()
    inputs = data.prepare((x, y), (8, 8, 1), validation_split=0.25, seed=3, batch_size=16)
    again = data.prepare((x, y), (8, 8, 1), validation_split=0.25, seed=3, batch_size=16)
    other = data.prepare((x, y), (8, 8, 1), validation_split=0.25, seed=4, batch_size=16)
    xv, yv = batches(inputs.validation)
    xt, yt = batches(inputs.plain_train)
    assert xv.dtype == np.float32 and yv.dtype == np.int32 and xv.shape[1:] == (8, 8, 1)
    assert (inputs.num_train, inputs.num_validation) == (len(xt), len(xv)) == (150, 50)
    # the one splitter image folders use, per class and seeded
    train_idx, val_idx, _ = data.stratified_split(y, 10, 0.25, seed=3, shuffle=False)
    np.testing.assert_array_equal(xv, x[sorted(val_idx)].astype(np.float32))
    np.testing.assert_array_equal(yv, y[sorted(val_idx)])
    assert sorted(rows(xt)) == sorted(rows(x[train_idx]))
    np.testing.assert_array_equal(batches(again.validation)[0], xv)
    assert rows(batches(other.validation)[0]) != rows(xv)
    # every class gives validation images in proportion
    np.testing.assert_allclose(np.bincount(yv, minlength=10), 0.25 * np.bincount(y, minlength=10), atol=1)
    # training batches are reshuffled each epoch; Keras knows the number of steps
    orders = {tuple(batches(inputs.train)[1]) for _ in range(3)}
    assert len(orders) > 1 and int(inputs.train.cardinality()) == inputs.steps_per_epoch == 10
    assert inputs.num_labels == 10 and inputs.class_names is None and not inputs.augmented


def test_an_arrays_record_uses_its_training_part_only():
    d = data.digits(seed=0)
    inputs = data.prepare(d, (8, 8, 1), seed=0)
    assert inputs.class_names == data.DIGIT_CLASSES
    assert inputs.num_train + inputs.num_validation == len(d.x_train)
    seen = set(rows(batches(inputs.validation)[0])) | set(rows(batches(inputs.plain_train)[0]))
    assert seen == set(rows(d.x_train))  # x_test is left for testing
    assert data.prepare((d.x_train, d.y_train), (8, 8, 1), seed=0).source == inputs.source


def test_explicit_validation_arrays_are_used_as_given():
    x, y = small_digits(120)
    inputs = data.prepare((x[:80], y[:80], x[80:], y[80:]), (8, 8, 1), validation_split=0)
    xv, yv = batches(inputs.validation)
    np.testing.assert_array_equal(xv, x[80:].astype(np.float32))  # in their order
    np.testing.assert_array_equal(yv, y[80:])
    assert inputs.num_train == 80 and sorted(rows(batches(inputs.train)[0])) == sorted(rows(x[:80]))


def test_arrays_are_converted_and_resized_as_image_files_are(tmp_path):
    x, y = small_digits(6)
    inputs = data.prepare((x, y, x, y), (20, 14, 3), batch_size=4)
    xv, _ = batches(inputs.validation)
    assert xv.shape == (6, 20, 14, 3)
    for i, image in enumerate(x):
        path = tmp_path / f"{i}.png"
        Image.fromarray(image[..., 0]).save(path)  # the same 8x8 gray image, as a file
        np.testing.assert_array_equal(xv[i], data.load_image(path, (20, 14), channels=3))
    rgb = np.random.default_rng(0).uniform(0, 255, (4, 10, 10, 3))  # float RGB -> luma, resized
    gray, _ = batches(data.prepare((rgb, np.array([0, 1, 0, 1]), rgb, np.array([0, 1, 0, 1])), (5, 5, 1)).validation)
    expected = [data.resize_array(data.to_channels(img, 1), (5, 5)) for img in rgb]
    np.testing.assert_allclose(gray, np.stack(expected), atol=1e-4)


def test_arrays_bigger_than_the_eager_limit_are_resized_batch_by_batch(monkeypatch):
    from cnnzoo.data import arrays

    x, y = small_digits(40)
    eager = batches(data.prepare((x, y, x, y), (16, 16, 3)).validation)[0]
    monkeypatch.setattr(arrays, "EAGER_RESIZE_BYTES", 0)
    lazy = batches(data.prepare((x, y, x, y), (16, 16, 3)).validation)[0]
    np.testing.assert_array_equal(lazy, eager)


def test_augmented_arrays_keep_a_plain_copy_for_the_feature_cache():
    x, y = small_digits(64)
    inputs = data.prepare((x, y), (8, 8, 1), augment=True, batch_size=64)
    assert inputs.augmented
    plain = sorted(rows(batches(inputs.plain_train)[0]))
    assert plain == sorted(rows(x[np.sort(data.arrays.split_arrays(y.astype(np.int64), 0.2, 0)[0])]))
    assert sorted(rows(batches(inputs.train)[0])) != plain  # augmented


@pytest.mark.parametrize("source", ["arrays", "folder"])
def test_a_seeded_augmented_pipeline_repeats_image_for_image(source, tmp_path):
    """Two pipelines built with the same seed give the same augmented batches, epoch after epoch (the
    layers' seed state must advance in batch order: a parallel map made seeded runs differ)."""
    x, y = small_digits(256)
    if source == "folder":
        root = write_image_folder(tmp_path / "images", per_class=40, size=(16, 16))
        make = lambda augment: quiet(data.prepare, root, (16, 16, 3), augment=augment, batch_size=8, seed=3)  # noqa: E731
    else:
        make = lambda augment: data.prepare((x, y), (16, 16, 1), augment=augment, batch_size=8, seed=3)  # noqa: E731
    first, second = make("auto"), make("auto")
    for _ in range(2):
        a, b = batches(first.train)[0], batches(second.train)[0]
        np.testing.assert_array_equal(a, b)
    assert sorted(rows(a)) != sorted(rows(batches(make(False).train)[0]))  # augmented


def test_a_folder_path_and_an_image_folder(tmp_path):
    root = write_image_folder(tmp_path / "images", classes=("b", "a"), per_class=8, size=(SIZE, SIZE))
    inputs = quiet(data.prepare, root, (10, 10, 1), validation_split=0.25, seed=1, batch_size=4)
    folder = quiet(data.image_folder, root, image_size=(10, 10), channels=1, validation_split=0.25, seed=1)
    assert inputs.class_names == ("a", "b") and inputs.input_shape == (10, 10, 1)
    assert (inputs.num_train, inputs.num_validation) == (12, 4)
    np.testing.assert_array_equal(batches(inputs.validation)[0], batches(folder.validation)[0])  # the same split
    assert inputs.source.startswith("folder:") and inputs.plain_train is not None
    ordered = quiet(data.prepare, root, (10, 10, 1), class_names=["b", "a"])
    assert ordered.class_names == ("b", "a")  # a path is read in the order of class_names

    given = quiet(data.image_folder, root, image_size=SIZE, validation_split=0.25)
    inputs = data.prepare(given)  # its own shape
    assert inputs.input_shape == (SIZE, SIZE, 3) and inputs.train is given.train
    assert data.prepare(given, (SIZE, SIZE, 3)).validation is given.validation


def test_a_dataset_pair_passes_through_and_fixes_the_shape():
    import tensorflow as tf

    x, y = small_digits(40)
    x = x.astype(np.float32)
    train = tf.data.Dataset.from_tensor_slices((x[:30], y[:30])).batch(8)
    val = tf.data.Dataset.from_tensor_slices((x[30:], y[30:])).batch(8)
    inputs = data.prepare((train, val), class_names=[str(i) for i in range(10)])
    assert inputs.train is train and inputs.validation is val
    assert (inputs.num_train, inputs.num_validation, inputs.batch_size) == (32, 16, 8)  # 4 and 2 batches of 8
    assert inputs.class_names == data.DIGIT_CLASSES and inputs.augmented  # a user dataset may be augmented
    assert data.input_shape_for((train, val), default=(32, 32, 3)) == (8, 8, 1)
    unknown = train.filter(lambda a, b: True)  # unknown length: counted by reading it
    assert data.prepare((unknown, val), (8, 8, 1)).num_train == 30


def test_input_shape_explicit_then_fixed_by_the_data_then_the_default(tmp_path):
    root = write_image_folder(tmp_path / "images", per_class=4, size=(SIZE, SIZE))
    folder = quiet(data.image_folder, root, image_size=SIZE, validation_split=0.25)
    x, y = small_digits(20)
    assert data.input_shape_for(folder, (16, 16, 3), default=(8, 8, 1)) == (16, 16, 3)
    assert data.input_shape_for(folder, default=(8, 8, 1)) == (SIZE, SIZE, 3)
    assert data.input_shape_for((x, y), default=(32, 32, 1)) == (32, 32, 1)  # arrays are resized to it
    assert data.input_shape_for(root, default=(32, 32, 1)) == (32, 32, 1)  # a path is read at it
    assert data.input_shape_for((x, y)) is None
    assert data.prepare((x, y)).input_shape == (8, 8, 1)  # no shape at all: the arrays' own


def test_classes_settle_the_same_way_for_every_form():
    x, y = small_digits(60)
    inputs = data.prepare((x, y), (8, 8, 1))
    assert data.settle_classes(inputs, None, None, 200) == (10, data.DIGIT_CLASSES)
    assert data.settle_classes(inputs, 12, None, 200)[0] == 12
    with pytest.raises(ConfigError, match=r"`num_classes` must exceed every label.*Received: num_classes=5"):
        data.settle_classes(inputs, 5, None, 200)
    named = data.prepare(data.digits(), (8, 8, 1))
    with pytest.raises(ConfigError, match=r"`class_names` must match the data's classes"):
        data.settle_classes(named, None, ["a"] * 10, 10)


# ------------------------------------------------------------------ errors

ERRORS = [
    (lambda x, y: (x, np.eye(10, dtype=int)[y]), {}, "not one-hot. Received: shape=.*Pass y.argmax\\(axis=1\\)"),
    (lambda x, y: (x, y[:-1]), {}, "`data` needs one label per image. Received: 60 images"),
    (lambda x, y: (x, y - 1), {}, "`data` labels must be integers >= 0.*Received: dtype=int64, smallest label -1"),
    (lambda x, y: (x, y.astype(float)), {}, "labels must be integers >= 0.*Received: dtype=float64"),
    (lambda x, y: (x[:, 0, 0], y), {}, "`data` images must be a numeric array of shape.*Received: shape=\\(60, 1\\)"),
    (lambda x, y: (x, y, x[:5], y[:4]), {}, "`validation data` needs one label per image"),
    (
        lambda x, y: (x, y),
        {"validation_split": 0},
        "`validation_split` must be > 0 when `data` brings no "
        "validation images.*Received: validation_split=0 with \\(x, y\\)",
    ),
    (lambda x, y: (x, y), {"validation_split": 1.0}, "`validation_split` must be a number in \\[0, 1\\)"),
    (lambda x, y: (x, y), {"batch_size": 0}, "`batch_size` must be an integer >= 1. Received: batch_size=0"),
    (lambda x, y: (x, y), {"seed": -1}, "`seed` must be an integer >= 0. Received: seed=-1"),
    (lambda x, y: (x, y), {"class_names": "abc"}, "`class_names` must be a list of distinct strings"),
    (lambda x, y: (x, y), {"input_shape": (8, 8)}, "`input_shape` must be \\(height, width, channels\\)"),
    (lambda x, y: 3, {}, "`data` must be an image-folder path, .* Received: data of type int"),
    (lambda x, y: (x, y, x), {}, "`data` must be .* Received: data \\(ndarray, ndarray, ndarray\\)"),
]


@pytest.mark.parametrize("make, kwargs, message", ERRORS)
def test_array_errors_name_the_argument_the_rule_and_what_was_received(make, kwargs, message):
    x, y = small_digits(60)
    kwargs = {"input_shape": (8, 8, 1), **kwargs}
    with pytest.raises(DataError, match=message) as info:
        data.prepare(make(x, y), kwargs.pop("input_shape"), **kwargs)
    assert "Received:" in str(info.value)


def test_an_arrays_record_without_validation_split_is_an_error():
    with pytest.raises(DataError, match="`validation_split` must be > 0.*Received: validation_split=0"):
        data.prepare(data.digits(), (8, 8, 1), validation_split=0)


def test_folder_errors(tmp_path):
    root = write_image_folder(tmp_path / "images", per_class=4, size=(SIZE, SIZE))
    with pytest.raises(DataNotFoundError, match=r"`data` must be .*Received: data='.*nowhere', which does not exist"):
        data.prepare(tmp_path / "nowhere", (SIZE, SIZE, 3))
    with pytest.raises(DataError, match=r"`validation_split` must be > 0.*validation_split=0 with the image folder"):
        data.prepare(root, (SIZE, SIZE, 3), validation_split=0)
    no_validation = quiet(data.image_folder, root, image_size=SIZE, validation_split=0)
    with pytest.raises(
        DataError,
        match=r"`data` must include validation images.*validation_split=0.*Received: "
        r"ImageFolder",
    ):
        data.prepare(no_validation, (SIZE, SIZE, 3))
    folder = quiet(data.image_folder, root, image_size=SIZE, validation_split=0.25)
    with pytest.raises(
        DataError,
        match=r"`data` must match the model input 8x8x1. Received: an ImageFolder of "
        r"12x12x3 images. Pass the folder path",
    ):
        data.prepare(folder, (8, 8, 1))


def test_dataset_errors():
    import tensorflow as tf

    x, y = small_digits(16)
    ds = tf.data.Dataset.from_tensor_slices((x.astype(np.float32), y)).batch(4)
    with pytest.raises(DataError, match=r"`data` as tf.data must be a \(train_ds, val_ds\) pair.*Received"):
        data.prepare(ds, (8, 8, 1))
    with pytest.raises(DataError, match=r"`data` must be \(train_ds, val_ds\).*Received: val_ds of type NoneType"):
        data.prepare((ds, None), (8, 8, 1))
    with pytest.raises(DataError, match=r"Received: train_ds with element_spec=.*Batch the dataset"):
        data.prepare((ds.unbatch(), ds), (8, 8, 1))
    with pytest.raises(DataError, match=r"input shape \(16, 16, 1\). Received: train_ds of \(8, 8, 1\) images"):
        data.prepare((ds, ds), (16, 16, 1))
    with pytest.raises(DataError, match=r"must not be empty"):
        data.prepare((ds.filter(lambda a, b: False), ds), (8, 8, 1))


def test_importing_and_rejecting_data_loads_no_tensorflow():
    import subprocess

    from conftest import PYTHON, REPO

    code = (
        "import sys, cnnzoo, cnnzoo.data\n"
        "try:\n    cnnzoo.data.prepare(3, (8, 8, 1))\nexcept cnnzoo.errors.DataError:\n    pass\n"
        "assert 'tensorflow' not in sys.modules"
    )
    subprocess.run([PYTHON, "-c", code], check=True, cwd=REPO, timeout=120)


# ------------------------------------------------------------------ one data path for both workflows


def test_finetune_and_tune_train_and_validate_on_exactly_the_same_images(tmp_path, monkeypatch):
    """Both workflows get their pipelines from `pipeline.prepare`; each call is recorded
    (the real function runs) and the pipelines each workflow trained and scored on are
    compared image by image. The scores each workflow reports are then reproduced on the
    recorded validation pipeline, which shows they were computed on exactly those images."""
    real = pipeline.prepare
    seen = []

    def record(*args, **kwargs):
        inputs = real(*args, **kwargs)
        seen.append(inputs)
        return inputs

    monkeypatch.setattr(pipeline, "prepare", record)
    x, y = small_digits(240)
    tuned = cnnzoo.tune(
        "digits_cnn",
        (x, y),
        tuner="random",
        max_trials=1,
        max_epochs=1,
        seed=5,
        out=tmp_path / "search",
        early_stopping=0,
    )
    tuned_inputs = seen.pop()
    tuned_fit = cnnzoo.finetune(
        "digits_cnn", (x, y), stages=["all:1:1e-3"], seed=5, out=tmp_path / "run", verbose=0, plots=False, augment=False
    )  # finetune's default augments; tune does not
    finetune_inputs = seen.pop()
    assert not seen

    for a, b in (
        (tuned_inputs.validation, finetune_inputs.validation),
        (tuned_inputs.plain_train, finetune_inputs.plain_train),
    ):
        xa, ya = batches(a)
        xb, yb = batches(b)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert sorted(rows(batches(tuned_inputs.train)[0])) == sorted(rows(batches(finetune_inputs.train)[0]))
    xv, yv = batches(finetune_inputs.validation)
    assert len(xv) == 48 and not set(rows(xv)) & set(rows(batches(finetune_inputs.train)[0]))

    # the scores each workflow reports were computed on these validation images
    _, accuracy = tuned.best_model.evaluate(xv, yv, verbose=0)
    assert accuracy == pytest.approx(tuned.best_trial.score, abs=1e-6)
    assert tuned_fit.confusion_matrix.sum() == len(xv)
    np.testing.assert_array_equal(tuned_fit.confusion_matrix.sum(axis=1), np.bincount(yv, minlength=10))
    predicted = tuned_fit.model.predict(xv, verbose=0).argmax(axis=1)
    assert tuned_fit.val_accuracy == pytest.approx(float((predicted == yv).mean()), abs=1e-6)


def test_both_workflows_build_the_model_at_the_shape_an_image_folder_fixes(tmp_path):
    root = write_image_folder(tmp_path / "images", per_class=6, size=(SIZE, SIZE))
    folder = quiet(data.image_folder, root, image_size=SIZE, validation_split=0.25, batch_size=4)
    tuned = cnnzoo.tune(
        "digits_cnn", folder, tuner="random", max_trials=1, max_epochs=1, seed=0, out=tmp_path / "search"
    )
    fitted = cnnzoo.finetune("digits_cnn", folder, stages=["all:1:1e-3"], out=tmp_path / "run", verbose=0, plots=False)
    assert tuned.best_model.input_shape == fitted.model.input_shape == (None, SIZE, SIZE, 3)
    assert tuned.best_spec.class_names == fitted.class_names == ("a", "b")
    for workflow in (
        lambda: cnnzoo.tune(
            "digits_cnn",
            (np.zeros((9, 8, 8)), np.arange(9) % 3),
            tuner="random",
            validation_split=0,
            out=tmp_path / "never",
        ),
        lambda: cnnzoo.finetune(
            "digits_cnn", (np.zeros((9, 8, 8)), np.arange(9) % 3), validation_split=0, out=tmp_path / "never"
        ),
    ):
        with pytest.raises(DataError, match=r"`validation_split` must be > 0.*Received: validation_split=0"):
            workflow()
    assert not (tmp_path / "never").exists()
