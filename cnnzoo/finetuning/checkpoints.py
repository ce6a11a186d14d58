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
"""

import json
import re
import shutil
import tempfile
from pathlib import Path

from cnnzoo.errors import ConfigError
from cnnzoo.utils.files import atomic_save, atomic_write_text

__all__ = ["RunState", "atomic_save_model", "atomic_save_weights", "latest_checkpoint", "epoch_checkpoint"]

STATE_VERSION = 1
_EPOCH_RE = re.compile(r"^epoch_(\d+)\.weights\.h5$")


def atomic_save_model(model, path):
    """Saves a `.keras` model so that `path` is never half-written."""
    return atomic_save(path, model.save)


def atomic_save_weights(model, path):
    """Saves `.weights.h5` (weights and optimizer state) so that `path` is never half-written."""
    return atomic_save(path, model.save_weights)


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
        self.data = {"version": STATE_VERSION, "fingerprint": fingerprint, "stages_done": [],
                     "history": {}, "seconds": {}, "feature_cache": {}, "finished": False, "model_path": None}

    def load_or_start(self, resume=True):
        """Reads an earlier state of the same run; returns True when it resumes one."""
        if not self.path.is_file():
            return False
        if not resume:
            if self.writer:
                self.clear()
            return False
        try:
            old = json.loads(self.path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"`out` holds an unreadable run state {str(self.path)!r} ({e}). Pass resume=False "
                              f"to start the run over, or another `out`. Received: out={str(self.run_dir)!r}.") from e
        if old.get("fingerprint") != self.data["fingerprint"]:
            diff = _diff(old.get("fingerprint") or {}, self.data["fingerprint"])
            raise ConfigError(f"`out` already holds a different fine-tuning run ({diff}); it would resume from "
                              f"the wrong checkpoints. Pass resume=False to start over there (its checkpoints "
                              f"are deleted), or choose another `out`. Received: out={str(self.run_dir)!r}.")
        self.data = old
        return True

    def clear(self):
        for name in ("state.json",):
            (self.run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(self.run_dir / "backup", ignore_errors=True)
        for p in self.run_dir.glob("stage_*.weights.h5"):
            p.unlink()

    def save(self):
        if self.writer:
            atomic_write_text(self.path, json.dumps(self.data, indent=1, default=_json_default))

    # -- stages and epochs
    def stage_done(self, k):
        return k in self.data["stages_done"]

    def epochs(self, k):
        """The logged epochs of stage `k` (a list of dicts, in order)."""
        return self.data["history"].get(str(k), [])

    def log_epoch(self, k, epoch, logs):
        records = [r for r in self.epochs(k) if r["epoch"] < epoch]
        records.append({"epoch": epoch, **{key: float(v) for key, v in (logs or {}).items()}})
        self.data["history"][str(k)] = records
        self.save()

    def trim(self, k, epochs_done):
        """Forgets logs of epochs a crash interrupted before their checkpoint."""
        self.data["history"][str(k)] = [r for r in self.epochs(k) if r["epoch"] < epochs_done]

    def finish_stage(self, k, seconds, feature_cache):
        self.data["stages_done"].append(k)
        self.data["seconds"][str(k)] = self.data["seconds"].get(str(k), 0.0) + seconds
        self.data["feature_cache"][str(k)] = feature_cache
        self.save()


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
            atomic_save_weights(self.model, path)
            for p in self.directory.glob("epoch_*.weights.h5"):
                if p != path:
                    p.unlink(missing_ok=True)

        def on_train_end(self, logs=None):
            if not writer:
                shutil.rmtree(self.directory, ignore_errors=True)

    return EpochCheckpoint()
