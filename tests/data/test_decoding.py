"""cnnzoo.data.decoding: TensorFlow decodes plain JPEGs and PNGs inside tf.data, Pillow the rest.

Real files written by Pillow: TensorFlow's pixels against Pillow's (`load_image`), the variants
TensorFlow cannot decode as Pillow does, files that fail while training (reported, training goes
on), the memory cache on later epochs, and streamed epochs reshuffled.
"""

import logging
import struct
import zlib

import keras
import numpy as np
import pytest
from PIL import Image

from cnnzoo.data import image_folder, load_image
from cnnzoo.data.decoding import PILLOW, SkippedFiles, routes
from cnnzoo.data.images import read_header
from conftest import write_image_folder


def photo(h, w, seed=0):
    """A smooth RGB picture with some noise (as a photo has), so JPEG and resizing both have work."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, 128 + 60 * np.sin(x / 7.0)], axis=-1)
    return np.clip(base + np.random.default_rng(seed).normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)


def batches(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def broken_png(path, like):
    """A PNG whose header and end are intact but whose image data is not valid zlib (checksums fixed up)."""
    data = bytearray(like.read_bytes())
    at = data.index(b"IDAT")
    length = struct.unpack(">I", data[at - 4 : at])[0]
    body = bytearray(data[at + 4 : at + 4 + length])
    body[2 : min(len(body), 40)] = b"\xff" * (min(len(body), 40) - 2)
    data[at + 4 : at + 4 + length] = body
    data[at + 4 + length : at + 8 + length] = struct.pack(">I", zlib.crc32(b"IDAT" + bytes(body)))
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def plain_folder(tmp_path_factory):
    """Plain JPEGs and PNGs (what TensorFlow decodes), named after the resize they need to 64x48."""
    root = tmp_path_factory.mktemp("plain")
    (root / "jpeg").mkdir()
    (root / "png").mkdir()
    shapes = {"same": (64, 48), "draft": (300, 400), "halved": (150, 200), "plain": (90, 70)}
    for i, (name, (h, w)) in enumerate(shapes.items()):
        Image.fromarray(photo(h, w, i)).save(root / "jpeg" / f"{name}.jpg", quality=90)
        Image.fromarray(photo(h, w, i)).save(root / "png" / f"{name}.png")
    Image.fromarray(photo(90, 70, 7)).save(root / "jpeg" / "plain_progressive.jpg", quality=90, progressive=True)
    Image.fromarray(photo(64, 48, 8)[..., 0]).save(root / "jpeg" / "same_gray.jpg", quality=90)
    Image.fromarray(photo(64, 48, 9)[..., 1]).save(root / "png" / "same_gray.png")
    return root


@pytest.mark.parametrize("channels", [3, 1])
def test_tensorflow_gives_pillows_pixels_within_a_stated_tolerance(plain_folder, channels):
    data = image_folder(
        plain_folder, image_size=(64, 48), channels=channels, validation_split=0, shuffle=False, batch_size=32
    )
    assert all(r != PILLOW for r in routes([read_header(f) for f in data.train_files], (64, 48), "bilinear"))
    x, _ = batches(data.train)
    for path, image in zip(data.train_files, x):
        reference = load_image(path, (64, 48), channels).astype(np.float64)
        diff = np.abs(image - reference)
        name = path.rsplit("/", 1)[-1]
        if name.startswith("same"):  # no resize: TensorFlow's libjpeg (accurate IDCT) and libpng give Pillow's pixels
            assert diff.max() == 0, name
        elif name.startswith(("draft", "halved")):  # JPEG draft scale, then antialiased as Pillow: within 1
            assert diff.max() <= 1 and diff.mean() < 0.5, (name, diff.max(), diff.mean())
        else:  # shrunk by less than half: plain bilinear (as image_dataset_from_directory), Pillow antialiases
            assert diff.mean() < 3 and diff.max() < 32, (name, diff.max(), diff.mean())
    assert data.skipped == ()


def test_the_variants_tensorflow_reads_differently_go_to_pillow_and_match_it_exactly(tmp_path):
    rgb = photo(30, 40)
    root = tmp_path / "odd"
    (root / "a").mkdir(parents=True)
    Image.fromarray(rgb).convert("CMYK").save(root / "a" / "cmyk.jpg", quality=95)
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(root / "a" / "sixteen.png")
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:9, :9, 3] = 0
    Image.fromarray(rgba).save(root / "a" / "rgba.png")
    Image.fromarray(rgb).quantize(16).save(root / "a" / "palette.png")
    Image.fromarray(rgb).save(root / "a" / "transparent.png", transparency=(0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: Pillow's exif_transpose turns it upright
    Image.fromarray(rgb).save(root / "a" / "rotated.jpg", quality=95, exif=exif)
    Image.fromarray(rgb).save(root / "a" / "picture.gif")
    Image.fromarray(rgb).save(root / "a" / "picture.bmp")
    Image.fromarray(rgb).save(root / "a" / "picture.webp", lossless=True)
    upright = Image.Exif()
    upright[0x0112] = 1
    Image.fromarray(rgb).save(root / "a" / "upright.jpg", quality=95, exif=upright)
    Image.fromarray(rgb).save(root / "a" / "profiled.jpg", quality=95, icc_profile=bytes(range(256)) * 120)
    headers = {p.name: read_header(p) for p in (root / "a").iterdir()}
    assert headers.pop("upright.jpg") == headers.pop("profiled.jpg") == ("JPEG", 30, 40)  # 30 kB before the frame
    assert set(headers.values()) == {None}, headers
    assert read_header(root / "a" / "upright.jpg", max_pixels=100) is None  # over the limit: Pillow says why

    data = image_folder(root, image_size=(16, 20), validation_split=0, shuffle=False, batch_size=16)
    x, _ = batches(data.train)
    for path, image in zip(data.train_files, x):
        if not path.endswith(("upright.jpg", "profiled.jpg")):  # those two: TensorFlow's, within 1
            np.testing.assert_array_equal(image, load_image(path, (16, 20)), err_msg=path)
        else:
            np.testing.assert_allclose(image, load_image(path, (16, 20)), atol=1, err_msg=path)
    assert data.skipped == () and len(x) == 11


def test_a_file_tensorflow_refuses_is_read_by_pillow(tmp_path, caplog):
    """A PNG whose image-data checksum is wrong: libpng (TensorFlow) refuses it, Pillow reads it."""
    root = write_image_folder(tmp_path / "images", per_class=3, size=(10, 10))
    data = bytearray((root / "a" / "0.png").read_bytes())
    at = data.index(b"IDAT")
    length = struct.unpack(">I", data[at - 4 : at])[0]
    data[at + 4 + length] ^= 0xFF
    (root / "a" / "0.png").write_bytes(bytes(data))
    assert read_header(root / "a" / "0.png") is not None  # the header is fine: TensorFlow tries first
    with caplog.at_level(logging.WARNING, logger="cnnzoo"):
        result = image_folder(root, image_size=10, validation_split=0, shuffle=False)
        x, _ = batches(result.train)
    np.testing.assert_array_equal(x[0], load_image(root / "a" / "0.png", (10, 10)))
    assert result.skipped == () and not [r for r in caplog.records if r.name == "cnnzoo"]


def test_files_that_fail_to_decode_are_reported_and_training_goes_on(tmp_path, caplog):
    root = write_image_folder(tmp_path / "images", classes=("a", "b"), per_class=6, size=(16, 16))
    broken = [
        broken_png(root / "a" / "broken.png", root / "a" / "0.png"),
        broken_png(root / "b" / "broken.png", root / "b" / "0.png"),
    ]
    data = image_folder(root, image_size=16, batch_size=4, validation_split=0.25, seed=1)
    assert data.skipped == () and data.num_train + data.num_validation == 14  # the headers pass
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    with caplog.at_level(logging.WARNING, logger="cnnzoo"):
        history = model.fit(data.train, validation_data=data.validation, epochs=3, verbose=0)
    assert len(history.history["loss"]) == 3 and np.isfinite(history.history["loss"]).all()
    skipped = dict(data.skipped)
    assert set(skipped) == {str(p) for p in broken}
    assert all(reason.startswith("failed to decode while training") for reason in skipped.values())
    logged = [r.getMessage() for r in caplog.records if "could not be decoded during training" in r.getMessage()]
    assert sorted(m.split(" could not")[0] for m in logged) == sorted(map(str, broken))  # once each
    # in file order, the blank stand-in keeps its place and every label stays with its image
    ordered = image_folder(root, image_size=16, batch_size=5, validation_split=0, shuffle=False)
    x, y = batches(ordered.train)
    at = list(ordered.train_files).index(str(broken[0]))
    assert (x[at] == 0).all() and x[at + 1].max() > 0 and list(y) == list(ordered.train_labels)


def test_later_epochs_read_the_memory_cache(tmp_path, caplog):
    root = write_image_folder(tmp_path / "images", per_class=5, size=(12, 12), fmt="JPEG")
    data = image_folder(root, image_size=12, validation_split=0, shuffle=False)
    assert data.cache_mode == "memory"
    first, labels = batches(data.train)
    for path in data.train_files:  # decoding again now would give blank images and log warnings
        with open(path, "wb") as f:
            f.write(b"gone")
    caplog.clear()  # image_folder's own INFO line (when the cnnzoo logger is at INFO) is not under test
    with caplog.at_level(logging.WARNING, logger="cnnzoo"):
        again, labels_again = batches(data.train)
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(labels_again, labels)
    warned = [r for r in caplog.records if r.name.startswith("cnnzoo") and r.levelno >= logging.WARNING]
    assert first.max() > 0 and not warned and data.skipped == ()


def test_streamed_epochs_are_complete_reshuffled_and_report_a_bad_file_once(tmp_path, caplog):
    written = ("red", "blue", "teal")  # write_image_folder gives class k a distinct mean colour
    root = write_image_folder(tmp_path / "images", classes=written, per_class=6, size=(10, 10), fmt="JPEG")
    broken_png(root / "red" / "broken.png", write_image_folder(tmp_path / "spare", per_class=1) / "a" / "0.png")
    data = image_folder(root, image_size=10, batch_size=4, validation_split=0, cache_budget=0, seed=2)
    assert data.cache_mode == "none"
    means = {
        name: np.array([40 + 180 * (k % 2), 40 + 90 * (k % 3), 200 - 150 * (k % 2)]) for k, name in enumerate(written)
    }
    orders = []
    with caplog.at_level(logging.WARNING, logger="cnnzoo"):
        for _ in range(3):
            x, y = batches(data.train)
            assert sorted(y.tolist()) == sorted(data.train_labels)  # every file once per epoch
            for image, label in zip(x, y):
                if image.max() > 0:  # the broken file's blank stand-in has no colour
                    nearest = min(means, key=lambda name: np.abs(image.mean(axis=(0, 1)) - means[name]).sum())
                    assert nearest == data.class_names[label]
            orders.append(tuple(y.tolist()))
    assert len(set(orders)) > 1  # a new order each epoch
    assert [p for p, _ in data.skipped] == [str(root / "red" / "broken.png")]
    assert sum("could not be decoded during training" in r.getMessage() for r in caplog.records) == 1


def test_skipped_files_compare_as_a_sorted_tuple_and_grow():
    skipped = SkippedFiles([("b.png", "empty file (0 bytes)")])
    assert skipped == (("b.png", "empty file (0 bytes)"),) and len(skipped) == 1 and skipped != ()
    assert skipped.add("a.jpg", "failed to decode while training (x)") and not skipped.add("a.jpg", "again")
    assert list(skipped) == [("a.jpg", "failed to decode while training (x)"), ("b.png", "empty file (0 bytes)")]
    assert skipped[0][0] == "a.jpg" and dict(skipped)["b.png"] == "empty file (0 bytes)"
    assert "a.jpg" in repr(skipped) and SkippedFiles() == [] and SkippedFiles() != "x"


def test_shuffled_data_reads_a_file_tensorflow_fails_last_in_its_route(tmp_path, caplog):
    """With `in_order=False` (data shuffled afterwards) a failed file's stand-in comes after the rest of
    its route; labels stay with their images, and a pass left unfinished does not upset the next one."""
    from cnnzoo.data.decoding import decoded_images

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for i in range(3):
        Image.fromarray(photo(16, 16, i)).save(tmp_path / "a" / f"{i}.png")
        Image.fromarray(photo(16, 16, 10 + i)).save(tmp_path / "b" / f"{i}.jpg", quality=95)
    broken_png(tmp_path / "a" / "1.png", tmp_path / "a" / "0.png")
    files = [str(tmp_path / c / f"{i}.{ext}") for c, ext in (("a", "png"), ("b", "jpg")) for i in range(3)]
    labels = [0, 0, 0, 1, 1, 1]
    kinds = routes([read_header(f) for f in files], (16, 16), "bilinear")
    assert len(set(kinds)) == 2 and PILLOW not in kinds  # two TensorFlow routes, merged in file order

    def read(in_order, take=None):
        ds = decoded_images(files, labels, kinds, (16, 16), 3, "bilinear", SkippedFiles(), in_order=in_order)
        assert ds.cardinality().numpy() == 6
        if take is not None:
            for _ in ds.take(take):
                pass
        return [(x.numpy(), int(y)) for x, y in ds]

    with caplog.at_level(logging.WARNING, logger="cnnzoo"):
        in_place = read(True)
        last = read(False, take=2)  # an unfinished pass first: its marks must not hide the failure
    assert [y for _, y in in_place] == labels and (in_place[1][0] == 0).all()
    # a/0, a/2, then a/1's blank stand-in (the end of the PNG route), then the JPEGs in order
    assert [y for _, y in last] == labels and (last[2][0] == 0).all()
    for got, want in zip([last[i][0] for i in (0, 1, 3, 4, 5)], [in_place[i][0] for i in (0, 2, 3, 4, 5)]):
        np.testing.assert_array_equal(got, want)
    logged = [r for r in caplog.records if "could not be decoded during training" in r.getMessage()]
    assert len(logged) == 2  # once for each of the two datasets (each has its own `SkippedFiles`)


def test_read_header_reads_small_files_once_and_large_ones_at_both_ends(tmp_path):
    small, large = tmp_path / "small.jpg", tmp_path / "large.jpg"
    Image.fromarray(photo(40, 50)).save(small, quality=90)
    Image.fromarray(photo(400, 300)).save(large, quality=95)
    assert small.stat().st_size < 16384 < large.stat().st_size
    assert read_header(small) == ("JPEG", 40, 50) and read_header(large) == ("JPEG", 400, 300)
    for path in (small, large):  # cut short: the end-of-image marker is missing, so Pillow decides
        cut = tmp_path / f"cut_{path.name}"
        cut.write_bytes(path.read_bytes()[:-200])
        assert read_header(cut) is None
        padded = tmp_path / f"padded_{path.name}"  # trailing padding after the marker is allowed
        padded.write_bytes(path.read_bytes() + b"\x00" * 8)
        assert read_header(padded) == read_header(path)
