"""`make reliability`'s byte-flip scenarios (issue 19, item 2): 50 seeded single-bit flips at random offsets in each
kind of file cnnzoo writes and later trusts, each caught by its SHA-256 sidecar before anything is read from it.

Each kind is written once, for real, by the code that writes it in a run (`atomic_save_weights` of a trained,
compiled model; `RunState.save`; the feature cache's writer; `cnnzoo.export`; `cnnzoo.save_preset`), then each flip
damages a fresh copy and the code that reads it in a run gets it:

- epoch checkpoint (the newest of two): `checkpoints.resume` loads the previous epoch's checkpoint into the model;
- run state: `RunState.load_or_start` resumes from `state.previous.json`;
- feature cache: refused (reported, removed) and written again, as `cached_head_model` does;
- export (ONNX) and preset weights: `open_runtime` and `cnnzoo.load` raise `IntegrityError` naming the file.

A full run resumed after a flip, one per kind of run file, is in tests/finetuning/test_checksums.py. The figure
"silent without sha256" counts flips that the format's own reader (HDF5, JSON, NumPy's zip, ONNX Runtime) accepts
when the sidecar is removed: what went undetected before the sidecars.
"""

import logging
import random
import shutil

import numpy as np
import pytest

import cnnzoo
from cnnzoo.errors import IntegrityError
from cnnzoo.finetuning import checkpoints, features, run_state
from cnnzoo.utils import integrity

FLIPS = 50
SIZE = 12


def _flip(path, rng):
    data = bytearray(path.read_bytes())
    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))


def _copy(src, dst):
    """`src` (a file or directory) and its sidecars, copied to `dst`."""
    if src.is_dir():
        return shutil.copytree(src, dst)
    shutil.copy(src, dst)
    shutil.copy(integrity.sidecar_path(src), integrity.sidecar_path(dst))
    return dst


def _silent(path, read):
    """Whether `read(path)` accepts the damaged file once its sidecar is gone (the format's own checks only)."""
    integrity.sidecar_path(path).unlink(missing_ok=True)
    try:
        return read(path)
    except Exception:  # noqa: BLE001 - any error is a detection by the format itself
        return False


def _model():
    return cnnzoo.get(
        "bird_classifier",
        num_classes=3,
        input_shape=(SIZE, SIZE, 3),
        compile=True,
        blocks=[{"filters": 4, "batch_norm": True}],
        dense=[8],
        class_names=["a", "b", "c"],
    )


@pytest.fixture(scope="module")
def trained():
    import keras

    keras.utils.set_random_seed(0)
    model = _model()
    x = np.random.default_rng(0).uniform(0, 255, (12, SIZE, SIZE, 3)).astype("float32")
    model.fit(x, np.arange(12) % 3, epochs=1, batch_size=4, verbose=0)  # optimizer state too
    return model


def _record(reliability, kind, figures):
    assert figures["detected"] == FLIPS and figures["lost"] == 0, (kind, figures)
    reliability.record(f"{FLIPS} seeded byte flips in {kind}", flips=FLIPS, **figures)


@pytest.mark.slow
def test_byte_flips_in_epoch_checkpoints_fall_back_to_the_previous_one(trained, tmp_path, caplog, reliability):
    written = tmp_path / "written"
    for epoch in (1, 2):
        checkpoints.atomic_save_weights(trained, written / f"epoch_{epoch:04d}.weights.h5")
    weights = [w.copy() for w in trained.get_weights()]
    rng, figures = random.Random(19), dict(detected=0, resumed=0, lost=0, silent_without_sha256=0)
    with caplog.at_level(logging.WARNING, logger="cnnzoo"):
        for i in range(FLIPS):
            backup = shutil.copytree(written, tmp_path / f"flip{i}")
            victim = backup / "epoch_0002.weights.h5"
            _flip(victim, rng)
            silent_copy = shutil.copy(victim, tmp_path / f"silent{i}.weights.h5")  # no sidecar: HDF5 alone
            caplog.clear()
            done, path = checkpoints.resume(trained, backup)
            named = any(str(victim) in r.getMessage() and "damaged" in r.getMessage() for r in caplog.records)
            figures["detected"] += named and not victim.exists()  # reported by name, removed
            figures["resumed"] += done == 1 and path == backup / "epoch_0001.weights.h5"
            figures["lost"] += done != 1
            figures["silent_without_sha256"] += checkpoints.unreadable(silent_copy) is None  # every array reads
    assert all(np.array_equal(a, b) for a, b in zip(trained.get_weights(), weights))  # epoch 1 == what was saved
    _record(reliability, "epoch checkpoints (.weights.h5), the newest of two", figures)


@pytest.mark.slow
def test_byte_flips_in_the_run_state_fall_back_to_the_previous_state(tmp_path, caplog, reliability):
    written = tmp_path / "written"
    state = run_state.RunState(written, {"model": "tiny"})
    state.load_or_start()
    for epoch in range(3):
        state.log_epoch(1, epoch, {"loss": 1.0 / (epoch + 1)})
    previous = state.previous.read_text()
    rng, figures = random.Random(20), dict(detected=0, resumed=0, lost=0, silent_without_sha256=0)
    for i in range(FLIPS):
        run = shutil.copytree(written, tmp_path / f"flip{i}")
        _flip(run / "state.json", rng)
        damaged = run / "state.json"
        silent_copy = _copy(damaged, tmp_path / f"silent{i}.json")
        caplog.clear()
        again = run_state.RunState(run, {"model": "tiny"})
        with caplog.at_level(logging.WARNING, logger="cnnzoo"):
            resumed = again.load_or_start()
        figures["detected"] += any(str(damaged) in r.getMessage() for r in caplog.records)
        good = resumed and [r["epoch"] for r in again.epochs(1)] == [0, 1] and damaged.read_text() == previous
        figures["resumed"] += good
        figures["lost"] += not good
        figures["silent_without_sha256"] += _silent(silent_copy, lambda p: run_state._read(p)[1] is None)
    _record(reliability, "run state (state.json, state.previous.json beside it)", figures)


@pytest.mark.slow
def test_byte_flips_in_a_feature_cache_are_refused_and_it_is_written_again(tmp_path, caplog, reliability):
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=(24, 8)).astype("float32"), np.arange(24) % 3] * 2
    written = tmp_path / "features.npz"
    features._write(written, "k" * 64, *arrays)
    rng, figures = random.Random(21), dict(detected=0, rebuilt=0, lost=0, silent_without_sha256=0)

    def loads(p):
        with np.load(p, allow_pickle=False) as f:
            return all(f[k].size >= 0 for k in f.files)

    for i in range(FLIPS):
        cache = _copy(written, tmp_path / f"flip{i}.npz")
        _flip(cache, rng)
        silent_copy = _copy(cache, tmp_path / f"silent{i}.npz")
        with caplog.at_level(logging.WARNING, logger="cnnzoo"):
            caplog.clear()
            refused = features._read(cache, "k" * 64) is None
        figures["detected"] += refused and any(str(cache) in r.getMessage() for r in caplog.records)
        features._write(cache, "k" * 64, *arrays)  # what `cached_head_model` does next: computes and keeps them
        stored = features._read(cache, "k" * 64)
        figures["rebuilt"] += stored is not None and np.array_equal(stored[0], arrays[0])
        figures["lost"] += not refused
        figures["silent_without_sha256"] += _silent(silent_copy, loads)
    _record(reliability, "feature caches (features.npz)", figures)


@pytest.mark.slow
def test_byte_flips_in_an_export_and_a_presets_weights_raise_integrity_errors(trained, tmp_path, reliability):
    from cnnzoo.deploy.runtimes import open_runtime

    exported = cnnzoo.export(trained, tmp_path / "tiny.onnx", verify_with=None).path
    preset = cnnzoo.save_preset(trained, tmp_path / "preset")
    for kind, written, victim_name, load, fix in (
        ("exported models (ONNX)", exported, None, open_runtime, "cnnzoo.export"),
        ("preset weights (model.weights.h5)", preset, "model.weights.h5", cnnzoo.load, "cnnzoo.save_preset"),
    ):
        rng, figures = random.Random(kind), dict(detected=0, refused=0, lost=0, silent_without_sha256=0)
        for i in range(FLIPS):
            copy = _copy(written, tmp_path / f"{written.stem}{i}{written.suffix}")
            victim = copy / victim_name if victim_name else copy
            _flip(victim, rng)
            try:
                load(copy)
                figures["lost"] += 1  # loaded from a damaged file
            except IntegrityError as e:
                figures["detected"] += str(victim) in str(e)
                figures["refused"] += fix in str(e)
            figures["silent_without_sha256"] += _silent(victim, lambda p, load=load, copy=copy: bool(load(copy)))
        assert figures["refused"] == FLIPS, figures
        _record(reliability, kind, figures)
