"""Faults as tests (issue 8, item 6), fine-tuning part: real processes, real files, no mocks.

- `kill -9` during checkpoint writes and the final save, five times at seeded random
  moments: the same call again resumes, finishes, loses at most one epoch, and never
  leaves a half-written file where a reader looks.
- The disk filling up during a save (`RLIMIT_FSIZE` in a subprocess): a clear
  `DiskFullError`, the previous checkpoint and the previous model intact.
- A corrupted or truncated checkpoint or `state.json`: detected, reported, that stage
  (or the run) starts again instead of crashing.

The kill hook lives in the test script, not in the library: it wraps `keras.Model.save`
and `save_weights` (and `os.replace`) in the child process and SIGKILLs the process at
the chosen moment of the chosen save.
"""

import errno
import json
import logging
import os
import random
import shutil
import signal
import subprocess

import numpy as np
import pytest

import cnnzoo
from cnnzoo.errors import DiskFullError
from cnnzoo.finetuning import checkpoints
from cnnzoo.utils.files import PARTIAL, atomic_save, atomic_write_text, remove_partials
from conftest import PYTHON, REPO, write_image_folder

SIZE = 12
ENV = {
    **os.environ,
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "OMP_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "PYTHONUNBUFFERED": "1",
}


def partials(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob(f"*{PARTIAL}*"))


def unreadable_files(out):
    """Files a reader looks at (state, epoch and stage checkpoints, the model) that it could not read."""
    bad = []
    if (out / "state.json").exists():
        try:
            json.loads((out / "state.json").read_text())
        except ValueError as e:
            bad.append(f"state.json: {e}")
    for p in [*out.glob("backup/stage_*/epoch_*.weights.h5"), *out.glob("stage_*.weights.h5")]:
        problem = checkpoints.unreadable(p)
        if problem:
            bad.append(f"{p.name}: {problem}")
    for p in out.glob("[!.]*.keras"):  # not the temporary `.<name>.partial-<pid>.keras`
        try:
            cnnzoo.load(p)
        except Exception as e:  # noqa: BLE001 - any failure to load counts
            bad.append(f"{p.name}: {type(e).__name__}: {e}")
    return bad


# ------------------------------------------------------------------ the helpers, fast


def test_a_write_without_room_raises_disk_full_error_and_replaces_nothing(tmp_path):
    target = tmp_path / "state.json"
    target.write_text('{"old": true}')

    def full(tmp):
        with open(tmp, "w") as f:
            f.write("{")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError, match=r"Could not write .*state\.json.*No space left on device.*intact") as info:
        atomic_save(target, full, advice="Free space. Received: out='x'.")
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    assert info.value.filename == str(target) and str(info.value).endswith("Received: out='x'.")
    assert target.read_text() == '{"old": true}' and partials(tmp_path) == []

    with pytest.raises(DiskFullError, match=r"needs about .*, the disk has .* free"):  # before a byte is written
        atomic_save(target, lambda tmp: pytest.fail("written"), size_hint=_free(tmp_path) + 2**31)
    assert target.read_text() == '{"old": true}'
    with pytest.raises(PermissionError):  # other OSErrors are not disk-full errors
        atomic_save(target, lambda tmp: (_ for _ in ()).throw(PermissionError(errno.EACCES, "denied")))


def _free(path):
    return shutil.disk_usage(path).free


def test_partials_of_a_killed_write_are_removed_when_the_run_starts_again(tmp_path):
    (tmp_path / "backup" / "stage_1").mkdir(parents=True)
    left = [tmp_path / ".m.partial-123.keras", tmp_path / "backup" / "stage_1" / ".epoch_0002.partial-9.weights.h5"]
    for p in left:
        p.write_bytes(b"half")
    keep = tmp_path / "state.json"
    atomic_write_text(keep, "{}")
    assert sorted(remove_partials(tmp_path)) == sorted(left)
    assert partials(tmp_path) == [] and keep.read_text() == "{}"


# ------------------------------------------------------------------ kill -9 during saves

_KILL_SCRIPT = r"""
import os, signal, sys, keras, cnnzoo
out, folder, log_path = sys.argv[1:4]
target = os.environ.get("KILL_FILE", "")  # the first save whose temporary path holds this is killed
phase, fraction = os.environ.get("KILL_PHASE", "write"), float(os.environ.get("KILL_FRACTION", "0.5"))
seen, armed = [0], [False]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def hit(tmp):  # a save's bytes are complete under its temporary name; kill at the chosen moment of it
    if not target or target not in str(tmp) or seen[0]:
        return
    seen[0] += 1
    if phase == "write":  # what a kill in the middle of the write leaves: a prefix of the file
        os.truncate(tmp, int(os.path.getsize(tmp) * fraction))
        die()
    elif phase == "rename":  # written, not yet renamed into place
        die()
    else:  # renamed into place, then killed before what follows (old checkpoints removed, state updated)
        armed[0] = True

def wrap(name):
    original = getattr(keras.Model, name)
    def save(self, filepath, *args, **kwargs):
        original(self, filepath, *args, **kwargs)
        hit(filepath)
    setattr(keras.Model, name, save)

wrap("save"); wrap("save_weights")
real_replace = os.replace
def replace(src, dst, *args, **kwargs):
    real_replace(src, dst, *args, **kwargs)
    if armed[0]:
        die()
os.replace = replace

class Log(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        with open(log_path, "a") as f:
            f.write(f"{os.getpid()} {epoch}\n")

keras.utils.set_random_seed(0)
model = cnnzoo.get("bird_classifier", num_classes=3, input_shape=(12, 12, 3), compile=False,
                   blocks=[{"filters": 4, "batch_norm": True}, {"filters": 8, "batch_norm": True}], dense=[8])
result = cnnzoo.finetune(model, folder, stages=["head:2:1e-2", "all:3:1e-3"], out=out, batch_size=4,
                         callbacks=[Log()], verbose=0, plots=False)
print("DONE", result.resumed, [len(s.history["loss"]) for s in result.stages])
"""
PLANNED = 2 + 3  # epochs
# The saves of one run, in order (the temporary paths they are written at).
SAVES = [
    "backup/stage_1/.epoch_0001",
    "backup/stage_1/.epoch_0002",
    "/.stage_1",
    "backup/stage_2/.epoch_0001",
    "backup/stage_2/.epoch_0002",
    "backup/stage_2/.epoch_0003",
    "/.stage_2",
    "/.bird_classifier",
]


def epochs_kept(out):
    """Epochs a resumed run will not train again: its finished stages', plus the last checkpoint's."""
    try:
        state = json.loads((out / "state.json").read_text())
    except FileNotFoundError:
        return 0
    if state.get("finished"):
        return PLANNED
    kept = sum({1: 2, 2: 3}[k] for k in state["stages_done"])
    pending = [k for k in (1, 2) if k not in state["stages_done"]]
    return kept + (checkpoints.latest_checkpoint(out / "backup" / f"stage_{pending[0]}")[0] if pending else 0)


@pytest.mark.slow
def test_kill_9_during_checkpoint_and_final_saves_resumes_without_half_written_files(tmp_path, reliability):
    """One run killed five times, each time at a seeded random save and moment, each kill followed by the same call.

    Moments: "write" (the file cut at a random byte, as a kill mid-write leaves it), "rename" (written, not yet
    renamed into place), "after" (renamed, killed before the clean-up and state update that follow).
    """
    folder = write_image_folder(tmp_path / "images", classes=("a", "b", "c"), per_class=8, size=(SIZE, SIZE))
    out, log = tmp_path / "run", tmp_path / "epochs.log"
    cmd = [PYTHON, "-c", _KILL_SCRIPT, str(out), str(folder), str(log)]
    rng = random.Random(8)
    picks = sorted(rng.sample(range(len(SAVES) - 1), 3)) + [len(SAVES) - 1] * 2  # 3 checkpoints, the final save x2
    phases = [*rng.sample(["write", "rename", "after"], 3), "write", rng.choice(["rename", "after"])]
    kills = [(SAVES[i], phase, round(rng.uniform(0.05, 0.95), 2)) for i, phase in zip(picks, phases)]
    lost, after_kill_partials, unreadable_seen, begun_before = [], 0, [], 0
    for target, phase, fraction in [*kills, (None, None, None)]:
        env = {**ENV, "KILL_FILE": target or "", "KILL_PHASE": phase or "", "KILL_FRACTION": str(fraction or 0.5)}
        kept_before = epochs_kept(out)
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
        what = f"{target} {phase} {fraction}: {proc.stderr[-3000:]}"
        begun = len(log.read_text().split()) // 2 if log.exists() else 0
        lost.append((begun - begun_before) - (epochs_kept(out) - kept_before))  # epochs trained but not kept
        begun_before = begun
        if target is not None:
            assert proc.returncode == -signal.SIGKILL, what  # killed for real, inside that save
            after_kill_partials += len(partials(out))
            unreadable_seen += unreadable_files(out)  # a reader finds only whole files, even right after a kill
        else:
            assert proc.returncode == 0, what
    assert "DONE True [2, 3]" in proc.stdout, proc.stdout  # resumed, every epoch of both stages logged
    assert unreadable_seen == [], unreadable_seen
    assert max(lost) <= 1 and lost[-1] == 0, (lost, kills)  # at most the interrupted epoch, per kill
    assert partials(out) == [] and unreadable_files(out) == []
    assert sorted(p.name for p in out.iterdir()) == [
        ".cnnzoo.lock",
        "bird_classifier.keras",
        "bird_classifier.keras.sha256",
        "recipe.json",
        "state.json",
        "state.json.sha256",
        "state.previous.json",
        "state.previous.json.sha256",
    ]
    state = json.loads((out / "state.json").read_text())
    assert state["finished"] and [len(state["history"][k]) for k in ("1", "2")] == [2, 3]
    assert cnnzoo.load(out / "bird_classifier.keras").name == "bird_classifier"
    reliability.record(
        "kill -9 during checkpoint and final saves (seeded random save, moment and byte)",
        kills=len(kills),
        resumed=len(kills),
        finished=1,
        max_epochs_lost=max(lost),
        partial_files_after_kills=after_kill_partials,
        partial_files_left=len(partials(out)),
        unreadable_files=len(unreadable_seen),
        saves_hit=", ".join(f"{t.replace('/.', '/').lstrip('/')} ({p})" for t, p, _ in kills),
    )


# ------------------------------------------------------------------ the disk fills up

_DISK_FULL_SCRIPT = r"""
import hashlib, json, os, resource, signal, sys, keras, cnnzoo
from pathlib import Path
from cnnzoo.errors import DiskFullError
out, folder = Path(sys.argv[1]), sys.argv[2]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, not a dead process
unlimited = resource.getrlimit(resource.RLIMIT_FSIZE)
report, begun = {}, []

def limit(size):
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, unlimited[1]))

class FillAt(keras.callbacks.Callback):  # the disk fills at the end of epoch `at`: that epoch's saves fail
    def __init__(self, at, size):
        super().__init__(); self.at, self.size = at, size
    def on_epoch_begin(self, epoch, logs=None):
        begun.append(epoch)
    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at:
            limit(self.size)

fill_on_model_save = [False]
original_save = keras.Model.save
def save(self, *args, **kwargs):  # the disk fills as the final model is written
    if fill_on_model_save[0]:
        limit(16 * 1024)
    return original_save(self, *args, **kwargs)
keras.Model.save = save

def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if Path(path).exists() else None

def call(stages, at=None, size=None, resume=True):
    keras.utils.set_random_seed(0)
    model = cnnzoo.get("bird_classifier", num_classes=3, input_shape=(12, 12, 3), compile=False,
                       blocks=[{"filters": 4, "batch_norm": True}, {"filters": 8, "batch_norm": True}], dense=[8])
    return cnnzoo.finetune(model, folder, stages=stages, out=out, batch_size=4, callbacks=[FillAt(at, size)],
                           verbose=0, plots=False, resume=resume)

first = call(["all:2:1e-2"])  # an earlier run in this directory finished: its model is there
model_path, model_digest = first.model_path, digest(first.model_path)

def attempt(name, **kwargs):
    try:
        call(["all:4:1e-2"], **kwargs)
        report[name] = {"error": None}
    except DiskFullError as e:
        report[name] = {"error": str(e), "oserror": isinstance(e, OSError), "errno": e.errno, "file": e.filename}
    except BaseException as e:
        report[name] = {"error": f"UNEXPECTED {type(e).__name__}: {e}"}
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, unlimited)
        fill_on_model_save[0] = False
    checkpoints = sorted(str(p.relative_to(out)) for p in out.rglob("*.weights.h5"))
    loads = {}
    for p in checkpoints:
        import h5py
        with h5py.File(out / p, "r") as f:
            loads[p] = sum(1 for _ in f.visititems(lambda n, d: None) or []) >= 0
    try:
        state = json.loads((out / "state.json").read_text())
    except Exception as e:
        state = {"unreadable": str(e)}
    report[name].update(checkpoints=checkpoints, checkpoints_load=all(loads.values()),
                        model_intact=digest(model_path) == model_digest,
                        model_loads=cnnzoo.load(model_path).name == "bird_classifier",
                        state_epochs=[r["epoch"] for r in state.get("history", {}).get("1", [])],
                        partials=sorted(str(p) for p in out.rglob("*.partial-*")))

# a longer run in the same directory (resume=False); the disk fills as it logs its 2nd epoch
attempt("state", at=1, size=256, resume=False)
attempt("checkpoint", at=2, size=16 * 1024)  # ... then as it saves the checkpoint of its 3rd epoch
fill_on_model_save[0] = True
attempt("final model")  # ... then as it saves the final model
last = call(["all:4:1e-2"])  # room again: the same call resumes and finishes
report["last"] = {"resumed": last.resumed, "epochs": len(last.stages[0].history["loss"]),
                  "model_new": digest(model_path) != model_digest, "begun": begun,
                  "left": sorted(p.name for p in out.iterdir())}
print("REPORT" + json.dumps(report))
"""


@pytest.mark.slow
def test_disk_full_during_saves_is_a_clear_error_and_keeps_the_previous_checkpoint_and_model(tmp_path, reliability):
    folder = write_image_folder(tmp_path / "images", classes=("a", "b", "c"), per_class=8, size=(SIZE, SIZE))
    out = tmp_path / "run"
    proc = subprocess.run(
        [PYTHON, "-c", _DISK_FULL_SCRIPT, str(out), str(folder)],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]  # no crash (HDF5 segfaults after a failed write)
    report = json.loads(proc.stdout.split("REPORT", 1)[1])
    expected = {
        "state": (".json", ["backup/stage_1/epoch_0001.weights.h5"]),  # state.previous.json is written first
        "checkpoint": (
            "epoch_0003.weights.h5",
            ["backup/stage_1/epoch_0001.weights.h5", "backup/stage_1/epoch_0002.weights.h5"],  # the last two kept
        ),
        "final model": ("bird_classifier.keras", ["stage_1.weights.h5"]),
    }
    for name, (file, kept) in expected.items():
        case = report[name]
        assert case["error"] and case["oserror"] and case["errno"] in (errno.EFBIG, errno.ENOSPC), case
        assert case["file"].endswith(file), case
        assert f"Could not write '{case['file']}'" in case["error"], case
        assert "Free space on that disk" in case["error"] and "another `out`" in case["error"], case
        assert f"Received: out={str(out)!r}" in case["error"], case
        assert case["checkpoints"] == kept and case["checkpoints_load"], case  # the previous checkpoint
        assert case["model_intact"] and case["model_loads"], case  # the model of the earlier run
        assert case["partials"] == [], case
    assert report["state"]["state_epochs"] == [0]  # the state before the failed write, readable
    last = report["last"]
    assert last["resumed"] and last["epochs"] == 4 and last["model_new"], last
    assert last["begun"] == [0, 1, 0, 1, 1, 2, 2, 3], last  # run A; then each failure at an epoch end re-runs it
    assert last["left"] == [
        ".cnnzoo.lock",
        "bird_classifier.keras",
        "bird_classifier.keras.sha256",
        "recipe.json",
        "state.json",
        "state.json.sha256",
        "state.previous.json",
        "state.previous.json.sha256",
    ], last
    reliability.record(
        "disk full (RLIMIT_FSIZE) while saving the run state, a checkpoint, the final model",
        saves_failed=3,
        clear_errors=sum(bool(report[n]["oserror"]) for n in expected),
        crashes=0,
        previous_checkpoint_intact=sum(report[n]["checkpoints_load"] for n in expected),
        previous_model_intact=sum(report[n]["model_intact"] for n in expected),
        partial_files_left=sum(len(report[n]["partials"]) for n in expected),
        resumed_after=int(last["resumed"]),
        max_epochs_lost=1,
    )


# ------------------------------------------------------------------ damaged checkpoints and state


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


class _Epochs:
    """A callback factory: records (stage, epoch) begun; optionally stops at one."""

    def __init__(self, stop_at=None):
        import keras

        recorder = self

        class Cb(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                recorder.stage += 1

            def on_epoch_begin(self, epoch, logs=None):
                if (recorder.stage, epoch) == stop_at:
                    raise _Stop
                recorder.begun.append((recorder.stage, epoch))

        self.stage, self.begun, self.callback = 0, [], Cb()


def _damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(random.Random(0).randbytes(len(data)))
    elif how == "zeroed header":
        path.write_bytes(b"\0" * 512 + data[512:])
    elif how == "missing":
        path.unlink()
    elif how == "not json":
        path.write_text('{"version": 1, "fingerprint": {"model": ')
    elif how == "wrong shape":
        path.write_text(json.dumps({"version": 1, "fingerprint": {}, "stages_done": "1", "history": []}))


CASES = [
    ("epoch", "truncated"),
    ("stage", "garbage"),
    ("stage", "missing"),
    ("state", "not json"),
    ("state", "wrong shape"),
]


@pytest.mark.slow
def test_damaged_checkpoint_or_state_is_reported_and_that_stage_or_run_starts_again(tmp_path, caplog, reliability):
    x, y = _blobs()
    stages = "head:1:1e-2,all:2:1e-3"
    figures = {"detected": 0, "reported": 0, "restarted": 0, "finished": 0, "crashes": 0}
    interrupted = tmp_path / "interrupted"
    first = _Epochs(stop_at=(2, 1))  # stopped in stage 2: stage_1.weights.h5 and backup/stage_2/epoch_0001
    with pytest.raises(_Stop):
        cnnzoo.finetune(
            _tiny(), (x, y), stages=stages, out=interrupted, callbacks=[first.callback], verbose=0, plots=False
        )
    for i, (what, how) in enumerate(CASES):
        out = tmp_path / f"run{i}"
        shutil.copytree(interrupted, out)
        victim = {
            "epoch": out / "backup" / "stage_2" / "epoch_0001.weights.h5",
            "stage": out / "stage_1.weights.h5",
            "state": out / "state.json",
        }[what]
        assert victim.is_file()
        _damage(victim, how)
        again = _Epochs()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="cnnzoo"):
            try:
                result = cnnzoo.finetune(
                    _tiny(), (x, y), stages=stages, out=out, callbacks=[again.callback], verbose=0, plots=False
                )
            except Exception as e:  # noqa: BLE001 - counted, then failed below
                figures["crashes"] += 1
                pytest.fail(f"{what} {how}: {type(e).__name__}: {e}")
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        named = [w for w in warnings if str(victim) in w]
        assert named, (what, how, warnings)  # reported, naming the file
        figures["detected"] += 1
        figures["reported"] += 1
        expected = {
            "epoch": [(2, 0), (2, 1)],  # stage 2 from its first epoch (its only checkpoint); stage 1 kept
            "stage": [(1, 0), (2, 0), (2, 1)],  # stage 1 again, then stage 2 from the start
            "state": [(2, 1)],  # state.previous.json (stage 1 done) and stage 2's checkpoint of epoch 1
        }[what]
        assert [(s + (0 if what == "stage" else 1), e) for s, e in again.begun] == expected, (what, how, again.begun)
        figures["restarted"] += 1
        logged = (
            [1, 1] if what == "state" else [1, 2]
        )  # the previous state lacks the last epoch's log, not its training
        assert [len(s.history["loss"]) for s in result.stages] == logged
        assert result.model_path.is_file() and partials(out) == [] and unreadable_files(out) == []
        if what == "state":
            aside = list(out.glob("state.json.corrupt-*"))
            assert len(aside) == 1 and aside[0].name in named[0], named  # kept aside for the user, and said so
            assert result.resumed  # from state.previous.json
        figures["finished"] += 1
    reliability.record(
        "corrupted or truncated checkpoint or run state (epoch, stage, state.json)", cases=len(CASES), **figures
    )


def test_a_finished_run_whose_model_is_damaged_trains_again(tmp_path, caplog):
    x, y = _blobs()
    first = cnnzoo.finetune(_tiny(), (x, y), stages="all:1", out=tmp_path / "run", verbose=0, plots=False)
    _damage(first.model_path, "truncated")
    with caplog.at_level(logging.WARNING, logger="cnnzoo"):
        again = cnnzoo.finetune(_tiny(), (x, y), stages="all:1", out=tmp_path / "run", verbose=0, plots=False)
    said = [r.getMessage() for r in caplog.records if str(first.model_path) in r.getMessage()]
    assert any("unreadable" in m or "damaged" in m for m in said), said  # truncated: its SHA-256 tells first
    assert not again.resumed and cnnzoo.load(again.model_path).name == "bird_classifier"
