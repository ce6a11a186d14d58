"""Crash-safe fine-tuning runs: a run directory, its state file, epoch checkpoints.

Layout of a run directory (`finetune(..., out=DIR)`):

    DIR/state.json                 what the run is, which stages finished, epoch logs
    DIR/backup/stage_K/epoch_0003.weights.h5   last finished epoch of stage K
    DIR/stage_K.weights.h5         the weights when stage K finished
    DIR/<model>.keras              the final model
    DIR/learning_curve.png, DIR/confusion_matrix.png

Every file is written through `cnnzoo.utils.files.atomic_save` (a temporary
name in the same directory, then `os.replace`): a crash (even `kill -9`) leaves
either the old file or the new one, never half of one. An
epoch checkpoint is one file whose name carries the epoch, so weights,
optimizer state and epoch number are committed together -- unlike
`keras.callbacks.BackupAndRestore`, which writes its weights and its
`training_metadata.json` one after the other in place, so a kill during its
save can leave a truncated file that stops the resume.

Faults (tests/finetuning/test_faults.py): temporary files a killed process left
are removed when the run starts again; a save that runs out of space raises
`DiskFullError` naming the file, and leaves the previous checkpoint and model
as they were; an unreadable checkpoint (truncated, corrupt, missing) is
reported and its stage runs again; an unreadable `state.json` is kept aside as
`state.json.corrupt-<time>`, reported, and the run starts over.

Backends: `state.json` records the Keras backend that wrote the run's newest
files (`backend`) and each backend that trained it (`backends`). A run
interrupted on one backend resumes on another: weights, the optimizer's
iteration count, moments and EMA averages load unchanged (the files are the
same HDF5 on TensorFlow, JAX and PyTorch). A file of the run that does not
load on this backend (an error, or an optimizer state Keras would skip) is
refused with a `BackendError` naming both backends, and nothing in the run
directory is changed; written on this backend, it is handled as unreadable.
"""

import json
import logging
import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path

from cnnzoo.errors import BackendError, ConfigError
from cnnzoo.utils.files import atomic_save, atomic_write_text, remove_partials

__all__ = [
    "RunState",
    "atomic_save_model",
    "atomic_save_weights",
    "latest_checkpoint",
    "epoch_checkpoint",
    "restore",
    "load_stage_weights",
    "unreadable",
]

log = logging.getLogger("cnnzoo.finetuning")

STATE_VERSION = 1
_EPOCH_RE = re.compile(r"^epoch_(\d+)\.weights\.h5$")


def atomic_save_model(model, path, run_dir=None):
    """Saves a `.keras` model so that `path` is never half-written (`DiskFullError` when there is no room)."""
    return atomic_save(path, model.save, advice=_advice(run_dir or Path(path).parent))


def atomic_save_weights(model, path, run_dir=None):
    """Saves `.weights.h5` (weights and optimizer state) so that `path` is never half-written.

    The room is checked first (`DiskFullError`): HDF5 crashes the process after a failed write.
    """
    return atomic_save(
        path, model.save_weights, size_hint=_weights_bytes(model), advice=_advice(run_dir or Path(path).parent)
    )


def _weights_bytes(model):
    """An upper bound of a `.weights.h5` file's size: the arrays plus HDF5's overhead (~1.6 KiB per array)."""
    import numpy as np

    optimizer = getattr(model, "optimizer", None)
    variables = list(model.weights) + (list(optimizer.variables) if optimizer is not None else [])
    data = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)
    return data + 2048 * len(variables) + 16384


def _advice(run_dir):
    return (
        f"Free space on that disk and call again (the run resumes from its last checkpoint), or pass another "
        f"`out` on a disk with room. Received: out={str(run_dir)!r}."
    )


def unreadable(path):
    """Why a `.weights.h5` file cannot be used (missing, truncated, corrupt), or None when every array in it reads."""
    import h5py

    path = Path(path)
    if not path.is_file():
        return "missing"
    try:
        with h5py.File(path, "r") as f:
            f.visititems(lambda name, item: item[()] if isinstance(item, h5py.Dataset) else None)
    except Exception as e:  # h5py raises OSError, KeyError, RuntimeError... for damaged files
        return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}".rstrip(": ")
    return None


def restore(model, path, state=None):
    """Loads an epoch checkpoint (weights and optimizer state) into `model`; False when it is unreadable.

    An unreadable checkpoint is reported (a warning naming it) and removed, and
    `model` keeps the weights it had; recompile it for a fresh optimizer. A
    checkpoint whose optimizer state Keras would skip (another optimizer, other
    variables) is unreadable too: resuming with a fresh optimizer would restart
    its schedule and moments silently. When `state` (the `RunState`) says
    another backend wrote the run, a checkpoint that does not fit raises
    `BackendError` instead, and stays.
    """
    problem = unreadable(path)
    if problem is None:
        before = model.get_weights()
        try:
            model.optimizer.build(model.trainable_variables)
            _load_all(model, path)
            return True
        except Exception as e:  # readable HDF5 that does not fit the model
            model.set_weights(before)
            if state is not None:
                state.check_backend(path, e)
            problem = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    log.warning("checkpoint %s is unreadable (%s): removed; its stage starts again from its first epoch", path, problem)
    Path(path).unlink(missing_ok=True)
    return False


def _load_all(model, path):
    """`model.load_weights(path)`, raising `ValueError` where Keras would skip the optimizer's state with a warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(path)
    for w in caught:
        if "Skipping variable loading for optimizer" in str(w.message):
            raise ValueError(str(w.message))
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def load_stage_weights(model, path, state):
    """Loads a finished stage's `stage_K.weights.h5` into `model`; `BackendError` when another backend wrote the
    run and the file does not load here (`RunState.check_backend`)."""
    try:
        model.load_weights(path)
    except Exception as e:
        state.check_backend(path, e)
        raise


def latest_checkpoint(directory):
    """Returns `(epochs_done, path)` of the newest epoch checkpoint in `directory`, or `(0, None)`."""
    best = (0, None)
    directory = Path(directory)
    if directory.is_dir():
        for p in directory.iterdir():
            m = _EPOCH_RE.match(p.name)
            if m and int(m.group(1)) > best[0]:
                best = (int(m.group(1)), p)
    return best


class RunState:
    """The `state.json` of a run: its fingerprint, finished stages and epoch logs."""

    def __init__(self, run_dir, fingerprint, writer=True):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "state.json"
        self.writer = writer
        self.written_on = _backend()  # the backend of the run's files: this one, or the resumed state's
        self.data = {
            "version": STATE_VERSION,
            "fingerprint": fingerprint,
            "backend": self.written_on,
            "backends": [self.written_on],
            "stages_done": [],
            "history": {},
            "seconds": {},
            "feature_cache": {},
            "finished": False,
            "model_path": None,
        }

    def load_or_start(self, resume=True):
        """Reads an earlier state of the same run; returns True when it resumes one.

        Temporary files of writes a killed process left are removed first. An
        unreadable `state.json` (truncated, not JSON, not a run state) is moved
        aside as `state.json.corrupt-<time>` with a warning, and the run starts
        over: without it, its checkpoints cannot be matched to this call.
        """
        if self.writer:
            for p in remove_partials(self.run_dir):
                log.info("removed %s, left by an interrupted write", p)
        if not self.path.is_file():
            return False
        if not resume:
            if self.writer:
                self.clear()
            return False
        try:
            old = json.loads(self.path.read_text())
            problem = _state_problem(old)
        except (OSError, ValueError) as e:
            problem = f"{type(e).__name__}: {e}"
        if problem:
            aside = self.path.with_name(f"state.json.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            if self.writer:
                self.path.replace(aside)
                self.clear()
            log.warning(
                "run state %s is unreadable (%s): kept aside as %s; the run starts over", self.path, problem, aside.name
            )
            return False
        if old.get("fingerprint") != self.data["fingerprint"]:
            diff = _diff(old.get("fingerprint") or {}, self.data["fingerprint"])
            raise ConfigError(
                f"`out` already holds a different fine-tuning run ({diff}); it would resume from "
                f"the wrong checkpoints. Pass resume=False (`cnnzoo finetune --restart`) to start over "
                f"there (its checkpoints are deleted), or choose another `out`. Received: out={str(self.run_dir)!r}."
            )
        self.data = old
        self.written_on = old.get("backend")  # None: a state from before cnnzoo recorded it
        here = _backend()
        if self.written_on is not None and self.written_on != here:
            log.info(
                "run %s was written on the Keras backend %r and resumes on %r: its weights and optimizer state "
                "carry over; random draws (augmentation, dropout, MixUp) come from %r's generator from here on",
                self.run_dir,
                self.written_on,
                here,
                here,
            )
        return True

    def check_backend(self, path, error):
        """Raises `BackendError` when another backend wrote this run and its file `path` did not load (`error`)."""
        here = _backend()
        if self.written_on is None or self.written_on == here:
            return
        reason = f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"
        raise BackendError(
            f"`out` holds a fine-tuning run written on the Keras backend {self.written_on!r}, and its file "
            f"{str(path)!r} does not load on {here!r} ({reason}). Resume it with "
            f"KERAS_BACKEND={self.written_on}, or start a fresh run in a new `out`; nothing in this one was "
            f"changed. Received: out={str(self.run_dir)!r}, KERAS_BACKEND={here!r}."
        ) from error

    def clear(self):
        for name in ("state.json",):
            (self.run_dir / name).unlink(missing_ok=True)
        self.remove_checkpoints()

    def remove_checkpoints(self):
        """Removes the epoch and stage checkpoints (a finished run needs them no more)."""
        shutil.rmtree(self.run_dir / "backup", ignore_errors=True)
        for p in self.run_dir.glob("stage_*.weights.h5"):
            p.unlink(missing_ok=True)

    def verify_stages(self):
        """Checks the weights of every finished stage; the first unreadable one runs again, with all after it.

        Returns the stage that runs again, or None.
        """
        for k in sorted(self.data["stages_done"]):
            path = self.run_dir / f"stage_{k}.weights.h5"
            problem = unreadable(path)
            if problem is None:
                continue
            log.warning(
                "stage %d's weights %s are unreadable (%s): stage %d and those after it run again", k, path, problem, k
            )
            self.data["stages_done"] = [j for j in self.data["stages_done"] if j < k]
            for key in ("history", "seconds", "feature_cache"):
                self.data[key] = {j: v for j, v in self.data[key].items() if int(j) < k}
            if self.writer:
                for p in [*self.run_dir.glob("stage_*.weights.h5"), *self.run_dir.glob("backup/stage_*")]:
                    if int(p.name.split("_")[1].split(".")[0]) >= k:
                        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
                self.save()
            return k
        return None

    def save(self):
        if self.writer:
            atomic_write_text(
                self.path, json.dumps(self.data, indent=1, default=_json_default), advice=_advice(self.run_dir)
            )

    # -- stages and epochs
    def stage_done(self, k):
        return k in self.data["stages_done"]

    def epochs(self, k):
        """The logged epochs of stage `k` (a list of dicts, in order)."""
        return self.data["history"].get(str(k), [])

    def _trained_here(self):
        """Records that this backend writes the run's files from now on."""
        here = _backend()
        if self.data.get("backend") != here:
            self.data["backend"] = here
            self.data["backends"] = [*self.data.get("backends", []), here]
        self.written_on = here

    def log_epoch(self, k, epoch, logs):
        self._trained_here()
        records = [r for r in self.epochs(k) if r["epoch"] < epoch]
        records.append({"epoch": epoch, **{key: float(v) for key, v in (logs or {}).items()}})
        self.data["history"][str(k)] = records
        self.save()

    def trim(self, k, epochs_done):
        """Forgets logs of epochs a crash interrupted before their checkpoint."""
        self.data["history"][str(k)] = [r for r in self.epochs(k) if r["epoch"] < epochs_done]

    def finish_stage(self, k, seconds, feature_cache):
        self._trained_here()
        self.data["stages_done"].append(k)
        self.data["seconds"][str(k)] = self.data["seconds"].get(str(k), 0.0) + seconds
        self.data["feature_cache"][str(k)] = feature_cache
        self.save()


def _backend():
    from cnnzoo.backend import name

    return name()


def _state_problem(old):
    """What makes a parsed `state.json` unusable, or None."""
    if not isinstance(old, dict):
        return f"not a JSON object but {type(old).__name__}"
    for key, kind in (
        ("fingerprint", dict),
        ("stages_done", list),
        ("history", dict),
        ("seconds", dict),
        ("feature_cache", dict),
    ):
        if not isinstance(old.get(key), kind):
            return f"`{key}` is missing or not a {kind.__name__}"
    if not all(isinstance(k, int) and not isinstance(k, bool) for k in old["stages_done"]):
        return "`stages_done` holds something other than stage numbers"
    for k, records in old["history"].items():
        if (
            not str(k).isdigit()
            or not isinstance(records, list)
            or not all(isinstance(r, dict) and isinstance(r.get("epoch"), int) for r in records)
        ):
            return f"`history` of stage {k!r} is not a list of epoch records"
    for key in ("seconds", "feature_cache"):
        if not all(str(k).isdigit() for k in old[key]):
            return f"`{key}` has keys other than stage numbers"
    return None


def _diff(old, new):
    keys = sorted(set(old) | set(new))
    parts = [f"{k}: {old.get(k)!r} then, {new.get(k)!r} now" for k in keys if old.get(k) != new.get(k)]
    return "; ".join(parts[:4]) or "a different state format"


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def epoch_checkpoint(directory, state, stage_index, writer=True):
    """A Keras callback that commits each finished epoch: its log, then its weights.

    The log comes first: a crash between the two re-runs that epoch (its log
    is then overwritten), never loses it. Older checkpoints are removed once
    the new one is in place. Non-writer workers (multi-worker training) save
    to a throw-away directory so that collective ops stay in step.
    """
    import keras

    class EpochCheckpoint(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.directory = Path(directory) if writer else Path(tempfile.mkdtemp(prefix="cnnzoo-worker-"))

        def on_epoch_end(self, epoch, logs=None):
            state.log_epoch(stage_index, epoch, logs)
            path = self.directory / f"epoch_{epoch + 1:04d}.weights.h5"
            atomic_save_weights(self.model, path, run_dir=self.directory.parent.parent if writer else None)
            for p in self.directory.glob("epoch_*.weights.h5"):
                if p != path:
                    p.unlink(missing_ok=True)

        def on_train_end(self, logs=None):
            if not writer:
                shutil.rmtree(self.directory, ignore_errors=True)

    return EpochCheckpoint()
