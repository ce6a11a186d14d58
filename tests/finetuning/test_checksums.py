"""Checksummed run files (issue 19, item 2): a flipped byte is caught by its SHA-256 sidecar, named, and the run
resumes from the last good file. Real fine-tuning runs of a tiny model, interrupted, a byte flipped, resumed.

- the newest epoch checkpoint damaged: the stage resumes from the one before it (two are kept);
- the feature cache damaged: it is removed, computed again and written again;
- `state.json` damaged: the run resumes from `state.previous.json`.
"""

import logging
import random
import shutil

import numpy as np
import pytest

import cnnzoo
from cnnzoo.finetuning import checkpoints, features
from cnnzoo.utils import integrity

SIZE = 12
STAGES = "head:1:1e-2,all:3:1e-3"


def _tiny():
    return cnnzoo.get(
        "bird_classifier",
        num_classes=3,
        input_shape=(SIZE, SIZE, 3),
        compile=False,
        blocks=[{"filters": 4, "batch_norm": True}, {"filters": 8, "batch_norm": True}],
        dense=[8],
    )


def _blobs(n=24, classes=3):
    rng = np.random.default_rng(0)
    y = np.arange(n) % classes
    return np.clip(rng.normal(0, 20, (n, SIZE, SIZE, 3)) + 40 + 70 * y[:, None, None, None], 0, 255), y


class _Stop(Exception):
    pass


def _epochs(stop_at=None):
    """A callback that records the (stage, epoch) pairs begun, numbering stages from 1 per call; stops at one."""
    import keras

    class Epochs(keras.callbacks.Callback):
        stage, begun = 0, []

        def on_train_begin(self, logs=None):
            Epochs.stage += 1

        def on_epoch_begin(self, epoch, logs=None):
            if (Epochs.stage, epoch) == stop_at:
                raise _Stop
            Epochs.begun = [*Epochs.begun, (Epochs.stage, epoch)]

    return Epochs()


def flip(path, seed=0):
    """Flips one bit of `path` at a seeded random offset; returns the offset."""
    data = bytearray(path.read_bytes())
    rng = random.Random(seed)
    offset = rng.randrange(len(data))
    data[offset] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    return offset


def _run(out, callback, stages=STAGES, **kwargs):
    import keras

    keras.utils.set_random_seed(0)  # the same initial weights each call: a resume continues the same network
    return cnnzoo.finetune(
        _tiny(), _blobs(), stages=stages, out=out, callbacks=[callback], verbose=0, plots=False, **kwargs
    )


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A run stopped in stage 2 after two epochs: stage_1.weights.h5, epoch_0001 and epoch_0002 of stage 2."""
    out = tmp_path_factory.mktemp("checksums") / "interrupted"
    with pytest.raises(_Stop):
        _run(out, _epochs(stop_at=(2, 2)))
    return out


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_run_files_carry_sha256_sidecars_and_two_epoch_checkpoints(interrupted):
    kept = sorted(p.name for p in (interrupted / "backup" / "stage_2").iterdir())
    assert kept == [
        "epoch_0001.weights.h5",
        "epoch_0001.weights.h5.sha256",
        "epoch_0002.weights.h5",
        "epoch_0002.weights.h5.sha256",
    ]
    for name in ("state.json", "state.previous.json", "stage_1.weights.h5", *(f"backup/stage_2/{k}" for k in kept)):
        if not name.endswith(".sha256"):
            assert integrity.verify(interrupted / name, required=True), name


def test_a_damaged_newest_checkpoint_resumes_from_the_one_before_it(interrupted, tmp_path, caplog, reliability):
    out = shutil.copytree(interrupted, tmp_path / "run")
    victim = out / "backup" / "stage_2" / "epoch_0002.weights.h5"
    offset = flip(victim, seed=1)
    again = _epochs()
    with caplog.at_level(logging.WARNING, logger="cnnzoo"):
        result = _run(out, again)
    named = [w for w in _warnings(caplog) if str(victim) in w]
    assert named and "damaged" in named[0] and "resuming from epoch_0001.weights.h5" in named[0], named
    assert again.begun == [(1, 1), (1, 2)]  # stage 2 (the first trained here) from epoch 1: one epoch lost
    assert result.resumed and [len(s.history["loss"]) for s in result.stages] == [1, 3]
    assert result.model_path.is_file() and integrity.is_intact(result.model_path)
    reliability.record(
        "byte flipped in the newest epoch checkpoint, then resumed (real run)",
        offset=offset,
        detected=1,
        resumed_from="the previous epoch's checkpoint",
        epochs_lost=1,
    )


def test_a_damaged_run_state_resumes_from_the_previous_state(interrupted, tmp_path, caplog, reliability):
    out = shutil.copytree(interrupted, tmp_path / "run")
    victim = out / "state.json"
    flip(victim, seed=2)
    again = _epochs()
    with caplog.at_level(logging.WARNING, logger="cnnzoo"):
        result = _run(out, again)
    named = [w for w in _warnings(caplog) if str(victim) in w]
    assert named and "damaged" in named[0] and "resuming from state.previous.json" in named[0], named
    assert len(list(out.glob("state.json.corrupt-*"))) == 1  # kept aside for the user
    assert again.begun == [(1, 2)]  # state.previous.json: stage 1 done; stage 2 resumes after its epoch_0002
    assert result.resumed and result.model_path.is_file()
    assert integrity.verify(out / "state.json", required=True)
    reliability.record(
        "byte flipped in state.json, then resumed (real run)",
        detected=1,
        resumed_from="state.previous.json and the newest checkpoint",
        epochs_lost=0,
        epoch_logs_lost=1,
    )


def test_a_damaged_feature_cache_is_computed_again(tmp_path, caplog, reliability):
    out = tmp_path / "run"
    kwargs = dict(stages="head:3:1e-2", cache_features=True, augment=False)
    with pytest.raises(_Stop):
        _run(out, _epochs(stop_at=(1, 1)), **kwargs)
    cache = out / "backup" / "stage_1" / features.CACHE_FILE
    assert integrity.verify(cache, required=True)
    before = _arrays(cache)
    flip(cache, seed=3)
    again = _epochs(stop_at=(1, 2))
    with caplog.at_level(logging.WARNING, logger="cnnzoo"), pytest.raises(_Stop):
        _run(out, again, **kwargs)
    named = [w for w in _warnings(caplog) if str(cache) in w]
    assert named and "computed again" in named[0] and "damaged" in named[0], named
    assert integrity.verify(cache, required=True)  # written again, with its sidecar
    after = _arrays(cache)
    assert sorted(after) == sorted(before) == ["fx", "fy", "key", "vx", "vy"] and after["key"] == before["key"]
    assert all(np.allclose(after[k], before[k], atol=1e-5) for k in ("fx", "fy", "vx", "vy"))  # the same features
    assert again.begun == [(1, 1)] and checkpoints.latest_checkpoint(cache.parent)[0] == 2
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cnnzoo"):
        result = _run(out, _epochs(), **kwargs)  # intact now: read back, not computed
    assert any("read back from" in r.getMessage() for r in caplog.records)
    assert result.stages[0].feature_cache and not (out / "backup").exists()
    reliability.record(
        "byte flipped in a stage's feature cache, then resumed (real run)", detected=1, rebuilt=1, lost=0
    )


def _arrays(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}
