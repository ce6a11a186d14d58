"""Image files damaged by seeded byte flips and truncations: every one is used or skipped with a
reason, never a crash, in `check_image`, `load_image`, `image_folder` and one pass over its datasets."""

import io
import logging
import random
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import cnnzoo
from cnnzoo.data import check_image, image_folder, load_image

SEED = 1234
CLASSES = ("alpha", "beta", "gamma")
PER_CLASS = 100  # 300 files, most of them damaged
FORMATS = [
    ("JPEG", "jpg", "RGB"),
    ("PNG", "png", "RGB"),
    ("PNG", "png", "RGBA"),
    ("PNG", "png", "P"),
    ("PNG", "png", "L"),
    ("GIF", "gif", "P"),
    ("BMP", "bmp", "RGB"),
    ("WEBP", "webp", "RGB"),
    ("WEBP", "webp", "RGBA"),
    ("JPEG", "jpg", "L"),
]


def _encode(fmt, mode, rng):
    from PIL import Image

    side = rng.randint(8, 40), rng.randint(8, 40)
    pixels = np.random.default_rng(rng.randrange(2**32)).integers(0, 256, (side[1], side[0], 3), dtype=np.uint8)
    im = Image.fromarray(pixels)
    im = im.convert("RGBA") if mode == "RGBA" else im.convert(mode) if mode != "P" else im.quantize(16)
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def _damage(data, rng):
    """(kind, damaged bytes). A few files stay intact."""
    data = bytearray(data)
    kind = rng.choice(
        [
            "intact",
            "flip",
            "flip",
            "flip_body",
            "truncate",
            "truncate",
            "cut_middle",
            "empty",
            "garbage_tail",
            "header_only",
        ]
    )
    if kind == "flip":
        for _ in range(rng.randint(1, 12)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif kind == "flip_body":  # the header survives, so the file opens and fails (or not) while decoding
        for _ in range(rng.randint(1, 30)):
            i = rng.randrange(min(len(data) - 1, 64), len(data))
            data[i] = rng.randrange(256)
    elif kind == "truncate":
        data = data[: rng.randrange(1, len(data))]
    elif kind == "cut_middle":  # keeps the head and the last bytes (a JPEG keeps its end marker)
        a = rng.randrange(20, max(21, len(data) // 2))
        data = data[:a] + data[-2:]
    elif kind == "empty":
        data = bytearray()
    elif kind == "garbage_tail":
        data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
    elif kind == "header_only":
        data = data[: rng.randint(8, 40)]
    return kind, bytes(data)


def _write_folder(root, rng):
    kinds = {}
    for c in CLASSES:
        (root / c).mkdir(parents=True)
        # the first two of each class stay intact, so each class keeps images for both splits
        for i in range(PER_CLASS):
            fmt, ext, mode = FORMATS[i % len(FORMATS)]
            data = _encode(fmt, mode, rng)
            kind, data = ("intact", data) if i < 4 else _damage(data, rng)
            path = root / c / f"{i:03d}_{mode.lower()}.{ext}"
            path.write_bytes(data)
            kinds[str(path)] = kind
    return kinds


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzzed") / "images"
    return root, _write_folder(root, random.Random(SEED))


def test_check_image_and_load_image_never_crash(fuzzed):
    root, kinds = fuzzed
    checked = {True: 0, False: 0}
    load_errors = loaded = cheap_pass_but_broken = 0
    for path in kinds:
        reason = check_image(path)
        assert reason is None or (isinstance(reason, str) and reason), (path, reason)
        full = check_image(path, full=True)
        assert full is None or (isinstance(full, str) and full), (path, full)
        assert reason is None or full is not None, f"{path}: the full check passed a file the cheap one refused"
        data = Path(path).read_bytes()  # an upload (`cnnzoo serve`): the same verdict and pixels from the bytes
        assert check_image(data) == reason and check_image(data, full=True) == full, path
        checked[reason is None] += 1
        try:
            array = load_image(path, image_size=(12, 10))
        except cnnzoo.DataError as e:
            assert "Received:" in str(e)
            with pytest.raises(cnnzoo.DataError, match="bytes>"):
                load_image(data, image_size=(12, 10))
            load_errors += 1
            cheap_pass_but_broken += reason is None
            continue
        except Exception as e:  # noqa: BLE001 - the point of the test
            pytest.fail(f"load_image raised {type(e).__name__}: {e} for {path} ({kinds[path]})")
        assert array.dtype == np.uint8 and array.shape == (12, 10, 3), path
        np.testing.assert_array_equal(load_image(data, image_size=(12, 10)), array)
        loaded += 1
        try:
            load_image(path, channels=1)
        except cnnzoo.DataError:
            pass
    print(
        f"image fuzz: {len(kinds)} files; cheap check passes {checked[True]}, refuses {checked[False]}; "
        f"load_image reads {loaded}, refuses {load_errors} ({cheap_pass_but_broken} after a passing cheap check)"
    )
    assert checked[True] >= 40 and checked[False] >= 100  # not vacuous: many of each
    assert loaded >= 40 and load_errors >= 100


def test_image_folder_uses_or_skips_every_file_and_an_epoch_runs(fuzzed, caplog, reliability):
    root, kinds = fuzzed
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = image_folder(root, image_size=(16, 16), batch_size=16, validation_split=0.25, seed=0, cache=False)
    used = set(map(str, data.train_files)) | set(map(str, data.validation_files))
    skipped = {str(p): reason for p, reason in data.skipped}
    assert not used & set(skipped), "a file is both used and skipped"
    assert used | set(skipped) == set(kinds), "a file is neither used nor skipped"
    assert all(isinstance(r, str) and r for r in skipped.values())
    assert len(used) >= 40 and len(skipped) >= 100
    assert any("skipped" in str(w.message) for w in caught)
    for path, reason in skipped.items():  # what image_folder says when listing matches check_image
        assert check_image(path) == reason, path
    # files that pass the cheap check but fail to decode: logged and replaced, the epoch goes on
    broken = {p for p in used if _fails_to_load(p)}
    with caplog.at_level(logging.WARNING, logger="cnnzoo"):
        seen = {}
        for name, ds in (("train", data.train), ("validation", data.validation)):
            n = 0
            for x, _y in ds:
                x = x.numpy()
                assert x.dtype == np.float32 and x.shape[1:] == (16, 16, 3)
                assert np.all((x >= 0) & (x <= 255))
                n += len(x)
            seen[name] = n
    assert seen == {"train": data.num_train, "validation": data.num_validation}
    logged = {
        r.getMessage().split(" could not be decoded")[0]
        for r in caplog.records
        if "could not be decoded" in r.getMessage()
    }
    assert logged == broken
    # and they joined `skipped` (with a reason) when the epoch found them
    after = dict(data.skipped)
    assert {p for p in after if p not in skipped} == broken
    assert all(after[p].startswith("failed to decode while training") for p in broken)
    reliability.record(
        "damaged image files (byte flips, truncation) in an image folder",
        files=len(kinds),
        used=len(used),
        skipped_with_a_reason=len(skipped),
        replaced_while_training=len(broken),
        crashes=0,
    )
    print(
        f"image_folder: {len(used)} used, {len(skipped)} skipped, {len(broken)} replaced while training "
        f"({time.perf_counter() - start:.1f} s)"
    )


def _fails_to_load(path):
    try:
        load_image(path, (16, 16))
    except cnnzoo.DataError:
        return True
    return False


def test_a_file_that_breaks_after_the_check_is_replaced_not_fatal(tmp_path, caplog):
    """The cheap check passes a JPEG whose end marker survives; it is then damaged before the epoch."""
    from PIL import Image

    rng = random.Random(SEED)
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.fromarray(np.full((20, 20, 3), 60 * i, np.uint8)).save(tmp_path / c / f"{i}.jpg", "JPEG")
    data = image_folder(tmp_path, image_size=(8, 8), batch_size=4, validation_split=0, cache=False, shuffle=False)
    victim = Path(data.train_files[0])
    victim.write_bytes(victim.read_bytes()[: rng.randint(30, 60)])  # truncated after the check
    with caplog.at_level(logging.WARNING, logger="cnnzoo"):
        batches = [x.numpy() for x, _ in data.train]
    assert sum(len(b) for b in batches) == 6
    assert np.all(batches[0][0] == 0)  # a blank image stands in for it
    assert any(str(victim) in r.getMessage() for r in caplog.records)
