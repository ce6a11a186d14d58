"""cnnzoo.data: image folders of real Pillow-written files (every format and mode,
every kind of bad file), the tf.data pipeline, the split, augmentation, and the
digits written as an image folder and trained on."""

import struct
import subprocess
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

import cnnzoo
from cnnzoo import data
from cnnzoo.errors import DataError, DataNotFoundError, DataWarning
from conftest import PYTHON, REPO, write_image_folder

# ------------------------------------------------------------------ helpers


def gradient(h=10, w=14):
    """A smooth RGB image (JPEG-friendly) with distinct channels."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([20 + 15 * x, 30 + 20 * y, 200 - 8 * x - 5 * y], axis=-1).astype(np.uint8)


def png_claiming_size(path, width, height):
    """A tiny valid PNG whose header claims width x height pixels (a decompression bomb)."""

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )
    return path


def batches(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def quiet_image_folder(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # these folders have no bad files
        return data.image_folder(*args, **kwargs)


# ----------------------------------------------------------- formats and modes


@pytest.fixture
def mixed_folder(tmp_path):
    """One class per kind of file a user may have; each written by Pillow."""
    root = tmp_path / "mixed"
    rgb = gradient()
    files = {}

    def save(cls, name, image, fmt, **kw):
        (root / cls).mkdir(parents=True, exist_ok=True)
        image.save(root / cls / name, fmt, **kw)
        files[f"{cls}/{name}"] = root / cls / name

    save("jpeg", "rgb.jpg", Image.fromarray(rgb), "JPEG", quality=95)
    save("jpeg", "gray.jpeg", Image.fromarray(rgb[..., 0]), "JPEG", quality=95)
    save("jpeg", "cmyk.jpg", Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95)
    save("png", "rgb.png", Image.fromarray(rgb), "PNG")
    save("png", "sixteen.png", Image.fromarray(rgb[..., 1].astype(np.uint16) * 257), "PNG")
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:3, :3, 3] = 0  # a transparent corner
    save("png", "rgba.png", Image.fromarray(rgba), "PNG")
    save("other", "palette.gif", Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "GIF")
    save("other", "rgb.bmp", Image.fromarray(rgb), "BMP")
    save("other", "rgb.webp", Image.fromarray(rgb), "WEBP", lossless=True)
    return root, rgb, files


def test_every_format_and_mode_becomes_rgb_or_grayscale(mixed_folder):
    root, rgb, files = mixed_folder
    assert Image.open(files["jpeg/cmyk.jpg"]).mode == "CMYK"
    assert Image.open(files["png/sixteen.png"]).mode.startswith("I")
    assert Image.open(files["other/palette.gif"]).mode == "P"

    exact = {"png/rgb.png", "other/rgb.bmp", "other/rgb.webp"}
    for key, path in files.items():
        image = data.load_image(path)
        assert image.shape == (10, 14, 3) and image.dtype == np.uint8, key
        if key in exact:
            np.testing.assert_array_equal(image, rgb, err_msg=key)
        elif key in ("jpeg/rgb.jpg", "jpeg/cmyk.jpg"):
            assert np.abs(image.astype(int) - rgb).mean() < 8, key
    with Image.open(files["other/palette.gif"]) as gif:  # the palette's 16 colours, looked up
        np.testing.assert_array_equal(data.load_image(files["other/palette.gif"]), np.asarray(gif.convert("RGB")))
    np.testing.assert_array_equal(data.load_image(files["png/sixteen.png"])[..., 0], rgb[..., 1])  # 16 -> 8 bit
    rgba = data.load_image(files["png/rgba.png"])
    assert (rgba[:3, :3] == 255).all() and (rgba[3:, 3:] == rgb[3:, 3:]).all()  # transparency over white
    gray = data.load_image(files["jpeg/gray.jpeg"], image_size=(5, 7), channels=1)
    assert gray.shape == (5, 7, 1)
    with Image.open(files["png/rgba.png"]) as im:
        np.testing.assert_array_equal(data.convert_image(im), rgba)
        assert data.convert_image(im, channels=1).shape == (10, 14, 1)

    result = quiet_image_folder(root, image_size=(10, 14), validation_split=0, shuffle=False, batch_size=4)
    assert result.skipped == () and result.num_train == len(files)
    assert result.class_names == ("jpeg", "other", "png")
    x, y = batches(result.train)
    assert x.shape == (9, 10, 14, 3) and x.dtype == np.float32 and y.dtype == np.int32
    assert x.max() > 200 and x.min() >= 0  # raw 0-255, not normalised
    np.testing.assert_array_equal(y, [0, 0, 0, 1, 1, 1, 2, 2, 2])

    gray = quiet_image_folder(root, image_size=(6, 6), channels=1, validation_split=0)
    assert gray.channels == 1 and batches(gray.train)[0].shape == (9, 6, 6, 1)


# ------------------------------------------------------------------ bad files


def test_bad_files_are_skipped_and_reported_in_one_warning(tmp_path, caplog):
    root = write_image_folder(tmp_path / "photos", classes=("cat", "dog"), per_class=5, size=(12, 12))
    Image.fromarray(gradient(40, 40)).save(root / "cat" / "big.jpg", quality=95)
    good_jpeg = (root / "cat" / "big.jpg").read_bytes()
    good_png = (root / "dog" / "0.png").read_bytes()
    bad = {
        root / "cat" / "empty.jpg": "empty file (0 bytes)",
        root / "cat" / "words.jpg": "not an image",
        root / "dog" / "noise.png": "not an image",
        root / "cat" / "cut.jpg": "corrupt or truncated",
        root / "dog" / "cut.png": "corrupt or truncated",
        root / "dog" / "bomb.png": "decompression bomb",
        root / "dog" / "notes.txt": "is not an image type",
        root / "stray.png": "not inside a class folder",
    }
    (root / "cat" / "empty.jpg").write_bytes(b"")
    (root / "cat" / "words.jpg").write_text("this is a text file, not a JPEG")
    (root / "dog" / "noise.png").write_bytes(np.random.default_rng(1).bytes(500))
    (root / "cat" / "cut.jpg").write_bytes(good_jpeg[: len(good_jpeg) * 2 // 3])
    (root / "dog" / "cut.png").write_bytes(good_png[: len(good_png) // 2])
    flipped = bytearray(good_png)
    flipped[len(flipped) // 2] ^= 0xFF  # one damaged byte inside the image data
    (root / "dog" / "flipped.png").write_bytes(bytes(flipped))
    png_claiming_size(root / "dog" / "bomb.png", 60_000, 60_000)
    (root / "dog" / "notes.txt").write_text("labels checked by Ann")
    (root / "stray.png").write_bytes(good_png)

    with pytest.warns(DataWarning) as record:
        result = data.image_folder(root, image_size=16, batch_size=4, validation_split=0.25)
    ours = [w for w in record if issubclass(w.category, DataWarning)]  # not a ResourceWarning gc happens to emit
    assert len(ours) == 1
    message = str(ours[0].message)
    assert "skipped 8 of 20 files" in message and all(str(p) in message for p in bad)

    reasons = dict(result.skipped)
    assert set(reasons) == {str(p) for p in bad}
    for path, expected in bad.items():
        assert expected in reasons[str(path)], (path, reasons[str(path)])
    assert result.num_train + result.num_validation == 12  # 5 + 5 + big.jpg + flipped.png (its header is fine)
    assert not set(result.train_files) & set(reasons)
    with caplog.at_level("WARNING", logger="cnnzoo"):
        x, y = batches(result.train)
        assert len(x) == result.num_train and batches(result.validation)[0].shape[0] == result.num_validation
    # the damaged image data shows when decoding: the file joins `skipped`, and the epoch went on
    flipped = str(root / "dog" / "flipped.png")
    assert "failed to decode while training" in dict(result.skipped)[flipped] and len(result.skipped) == 9
    assert any(f"{flipped} could not be decoded during training" in r.getMessage() for r in caplog.records)


def test_max_pixels_skips_large_images_as_bombs(tmp_path):
    root = write_image_folder(tmp_path / "photos", per_class=3, size=(8, 8))
    Image.fromarray(gradient(30, 30)).save(root / "a" / "large.png")
    with pytest.warns(DataWarning, match="large.png: decompression bomb: 30x30 = 900 pixels"):
        result = data.image_folder(root, image_size=8, max_pixels=100, validation_split=0)
    assert result.num_train == 6


def test_a_file_spoiled_after_the_check_never_stops_the_epoch(tmp_path, caplog):
    root = write_image_folder(tmp_path / "photos", per_class=4, size=(8, 8))
    result = quiet_image_folder(root, image_size=8, batch_size=3, validation_split=0, shuffle=False)
    assert result.train.cardinality() == 3  # known: Keras shows progress and never warns of running dry
    (root / "a" / "1.png").write_bytes(b"overwritten by a crashed sync tool")
    with caplog.at_level("WARNING", logger="cnnzoo"):
        x, y = batches(result.train)  # decoding happens now, and the epoch completes
    assert len(x) == 8 and list(y) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert (x[1] == 0).all() and x[0].max() > 0  # a blank stand-in for the spoiled file
    assert any("1.png could not be decoded during training" in r.getMessage() for r in caplog.records)


def test_a_class_without_readable_images_is_an_error(tmp_path):
    root = write_image_folder(tmp_path / "photos", per_class=3, size=(8, 8))
    (root / "empty_class").mkdir()
    (root / "empty_class" / "x.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="\\['empty_class'\\] .* hold none .*empty file"):
        data.image_folder(root)


# ------------------------------------------------------------ split and pipeline


def test_split_is_stratified_deterministic_and_disjoint(tmp_path):
    root = write_image_folder(tmp_path / "photos", classes=("a", "b", "c"), per_class=10, size=(8, 8))
    for i in range(10, 20):  # class a is twice as large
        (root / "a" / f"{i}.png").write_bytes((root / "a" / f"{i - 10}.png").read_bytes())
    first = quiet_image_folder(root, image_size=8, validation_split=0.2, seed=3)
    again = quiet_image_folder(root, image_size=8, validation_split=0.2, seed=3)
    other = quiet_image_folder(root, image_size=8, validation_split=0.2, seed=4)
    assert first.validation_files == again.validation_files and first.train_files == again.train_files
    assert first.validation_files != other.validation_files
    assert first.stratified and np.bincount(first.validation_labels).tolist() == [4, 2, 2]
    assert not set(first.train_files) & set(first.validation_files)
    assert len(set(first.train_files) | set(first.validation_files)) == 40
    assert first.num_train == 32 and first.num_validation == 8
    for files, labels in ((first.train_files, first.train_labels), (first.validation_files, first.validation_labels)):
        assert all(f.split("/")[-2] == first.class_names[y] for f, y in zip(files, labels))


def test_small_classes_keep_their_images_for_training(tmp_path):
    root = write_image_folder(tmp_path / "photos", classes=("big", "tiny"), per_class=10, size=(8, 8))
    for p in sorted((root / "tiny").iterdir())[1:]:
        p.unlink()
    result = quiet_image_folder(root, image_size=8, validation_split=0.2)
    assert result.validation_labels == (0, 0) and result.train_labels.count(1) == 1
    assert not result.stratified


def test_no_validation_split_gives_none(image_folder):
    result = quiet_image_folder(image_folder, image_size=8, validation_split=0)
    assert result.validation is None and result.num_validation == 0 and result.num_train == 12


def test_batches_are_float_0_255_with_correct_labels_and_reshuffled(tmp_path):
    written = ("red", "blue", "teal")  # write_image_folder gives class k a distinct mean colour
    root = write_image_folder(tmp_path / "photos", classes=written, per_class=8, size=(10, 10))
    result = quiet_image_folder(root, image_size=(6, 5), batch_size=5, validation_split=0.25, seed=0)
    assert result.class_names == ("blue", "red", "teal")  # sorted
    assert result.input_shape == (6, 5, 3) and result.batch_size == 5
    x, y = batches(result.train)
    assert x.shape == (18, 6, 5, 3) and x.dtype == np.float32 and y.dtype == np.int32
    means = {
        name: np.array([40 + 180 * (k % 2), 40 + 90 * (k % 3), 200 - 150 * (k % 2)]) for k, name in enumerate(written)
    }
    nearest = [min(means, key=lambda name: np.abs(img.mean(axis=(0, 1)) - means[name]).sum()) for img in x]
    assert nearest == [result.class_names[label] for label in y]  # labels still match the pixels
    orders = [tuple(batches(result.train)[1]) for _ in range(3)]
    assert len(set(orders + [tuple(y)])) > 1  # a new order each epoch
    xv, yv = batches(result.validation)
    np.testing.assert_array_equal(yv, result.validation_labels)  # validation keeps file order
    # TensorFlow decodes this PNG and resizes it (antialiased: shrunk by half) within 1 of Pillow's `load_image`
    np.testing.assert_allclose(xv[0], data.load_image(result.validation_files[0], (6, 5)), atol=1)


def test_disk_cache_is_written_and_read_back(tmp_path, image_folder):
    cache = tmp_path / "cache"
    result = quiet_image_folder(image_folder, image_size=8, cache=cache, shuffle=False)
    x1, _ = batches(result.train)
    batches(result.validation)  # cache files are written by the first full pass
    assert any(p.name.startswith("train-") for p in cache.iterdir())
    assert any(p.name.startswith("validation-") for p in cache.iterdir())
    again = quiet_image_folder(image_folder, image_size=8, cache=cache, shuffle=False)
    np.testing.assert_array_equal(batches(again.train)[0], x1)
    smaller = quiet_image_folder(image_folder, image_size=6, cache=cache, shuffle=False)
    assert batches(smaller.train)[0].shape[1:] == (6, 6, 3)  # a new cache, never a stale one


def test_image_size_from_a_model_input_shape_and_default(image_folder):
    spec = cnnzoo.spec("digits_cnn")
    result = quiet_image_folder(image_folder, image_size=spec.input_shape)
    assert result.image_size == (8, 8) and result.channels == 1
    assert batches(result.train)[0].shape[1:] == (8, 8, 1)
    default = quiet_image_folder(image_folder, validation_split=0, batch_size=12)
    assert default.image_size == data.DEFAULT_IMAGE_SIZE == (224, 224)
    assert next(iter(default.train))[0].shape == (12, 224, 224, 3)


def test_class_names_fix_the_label_order(image_folder):
    result = quiet_image_folder(image_folder, image_size=8, class_names=["b", "a"], validation_split=0, shuffle=False)
    assert result.class_names == ("b", "a") and result.train_labels == (0,) * 6 + (1,) * 6
    with pytest.raises(DataError, match="missing folders \\['c'\\]"):
        data.image_folder(image_folder, class_names=["a", "b", "c"])


# ---------------------------------------------------------------- augmentation


def test_augmentation_changes_training_batches_only(image_folder):
    import keras

    result = quiet_image_folder(image_folder, image_size=12, augment=True, shuffle=False, validation_split=0.5)
    assert [type(a).__name__ for a in result.augment] == [
        "RandomFlip",
        "RandomRotation",
        "RandomZoom",
        "RandomContrast",
    ]
    epoch1, epoch2 = batches(result.train)[0], batches(result.train)[0]
    plain = np.stack([data.load_image(f, (12, 12)) for f in result.train_files]).astype(np.float32)
    assert not np.allclose(epoch1, plain) and not np.allclose(epoch1, epoch2)
    assert epoch1.min() >= 0 and epoch1.max() <= 255
    validation = np.stack([data.load_image(f, (12, 12)) for f in result.validation_files]).astype(np.float32)
    np.testing.assert_array_equal(batches(result.validation)[0], validation)

    flip = quiet_image_folder(
        image_folder,
        image_size=12,
        augment=[keras.layers.RandomFlip("vertical", seed=1)],
        shuffle=False,
        validation_split=0,
    )
    assert len(flip.augment) == 1 and batches(flip.train)[0].shape == (12, 12, 12, 3)


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": 0}, "`image_size` must be an int"),
        ({"image_size": (8, 8, 3), "channels": 1}, "`channels` must agree with `image_size`"),
        ({"channels": 4}, "`channels` must be 1 \\(grayscale\\) or 3"),
        ({"batch_size": 0}, "`batch_size` must be an integer >= 1"),
        ({"validation_split": 1.0}, "`validation_split` must be a number in \\[0, 1\\)"),
        ({"augment": "yes"}, "`augment` must be True, False, 'auto', or a list of Keras layers"),
        ({"cache": 3}, "`cache` must be True"),
        ({"interpolation": "cubic"}, "`interpolation` must be one of"),
        ({"check": "thorough"}, "`check` must be 'fast' or 'full'"),
    ],
)
def test_bad_arguments_are_data_errors(image_folder, kwargs, match):
    with pytest.raises(DataError, match=match) as info:
        data.image_folder(image_folder, **kwargs)
    assert "Received:" in str(info.value) and isinstance(info.value, ValueError)


def test_bad_paths(tmp_path, image_folder):
    with pytest.raises(DataNotFoundError, match="does not exist") as info:
        data.image_folder(tmp_path / "nowhere")
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(DataError, match="not a file"):
        data.image_folder(image_folder / "a" / "0.png")
    (tmp_path / "flat").mkdir()
    Image.fromarray(gradient()).save(tmp_path / "flat" / "x.png")
    with pytest.raises(DataError, match="one sub-folder per class"):
        data.image_folder(tmp_path / "flat")
    with pytest.raises(DataNotFoundError):
        data.load_image(tmp_path / "missing.png")
    with pytest.raises(DataError, match="failed to decode"):
        data.load_image(REPO / "pyproject.toml")
    with pytest.raises(DataError, match="`channels` must be 1 \\(grayscale\\) or 3"):
        data.load_image(image_folder / "a" / "0.png", channels=4)


# ------------------------------------------------------------------ digits


def test_digits_folder_matches_the_digits_arrays(tmp_path):
    train_dir, test_dir = data.digits_folder(tmp_path / "digits")
    arrays = data.digits()
    assert len(list(train_dir.rglob("*.png"))) == 1437 and len(list(test_dir.rglob("*.png"))) == 360
    for directory, x, y in ((train_dir, arrays.x_train, arrays.y_train), (test_dir, arrays.x_test, arrays.y_test)):
        result = quiet_image_folder(
            directory, image_size=8, channels=1, validation_split=0, shuffle=False, batch_size=256
        )
        order = np.argsort(y, kind="stable")  # folders are read class by class, files by index
        images, labels = batches(result.train)
        np.testing.assert_array_equal(images, x[order].astype(np.float32))
        np.testing.assert_array_equal(labels, y[order])
    assert data.digits_folder(tmp_path / "digits") == (train_dir, test_dir)  # writing again is fine
    (train_dir / "3" / "mine.png").write_bytes(b"")
    with pytest.raises(DataError, match="other files are there"):
        data.digits_folder(tmp_path / "digits")


def test_digits_folder_old_directory_keyword_warns_naming_out_and_still_works(tmp_path):
    with pytest.warns(DeprecationWarning, match=r"`digits_folder\(directory=\.\.\.\)` is deprecated.*use `out=`"):
        train_dir, test_dir = data.digits_folder(directory=tmp_path / "digits")
    assert (train_dir, test_dir) == (tmp_path / "digits" / "train", tmp_path / "digits" / "test")
    assert len(list(train_dir.rglob("*.png"))) == 1437 and len(list(test_dir.rglob("*.png"))) == 360


def test_training_from_the_digits_folder(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    train_dir, test_dir = data.digits_folder(tmp_path / "digits")
    train = quiet_image_folder(train_dir, image_size=8, channels=1, validation_split=0.1, seed=0)
    test = quiet_image_folder(test_dir, image_size=8, channels=1, validation_split=0, shuffle=False)
    assert train.class_names == tuple(str(i) for i in range(10)) and train.stratified
    model = cnnzoo.get("digits_cnn", class_names=list(train.class_names))
    history = model.fit(train.train, validation_data=train.validation, epochs=15, verbose=0)
    _, accuracy = model.evaluate(test.train, verbose=0)  # the 360 held-out digits, read from PNG files
    assert accuracy >= 0.97 and history.history["val_accuracy"][-1] >= 0.95


def test_importing_data_and_reading_digits_loads_no_tensorflow():
    code = (
        "import sys, cnnzoo, cnnzoo.data as d; d.digits(); d.check_image(sys.argv[1]); "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run(
        [PYTHON, "-c", code, str(REPO / "pyproject.toml")], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.split() == ["False", "False"]
