"""Crash-safe fine-tuning runs: a run directory, epoch checkpoints, files checked before use.

Layout of a run directory (`finetune(..., out=DIR)`):

    DIR/state.json                 what the run is, which stages finished, epoch logs (`run_state.RunState`)
    DIR/state.previous.json        the state one save back, for a damaged `state.json`
    DIR/backup/stage_K/epoch_0003.weights.h5   the last two finished epochs of stage K
    DIR/backup/stage_K/features.npz            stage K's feature cache (`features.cached_head_model`)
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

Checksums: HDF5 keeps none of its arrays, so a flipped byte loads silently.
Each checkpoint, stage file, feature cache, state file and the final model
has a SHA-256 sidecar (`<file>.sha256`, `sha256sum` format,
`cnnzoo.utils.integrity`), written as the file is and checked before it is
read: a file that does not match is reported by name and never loaded. The
two newest epoch checkpoints of a stage are kept, so a damaged newest one
falls back to the one before it (one epoch lost).

Faults (tests/finetuning/test_faults.py, test_checksums.py): temporary files a
killed process left are removed when the run starts again; a save that runs
out of space raises `DiskFullError` naming the file, and leaves the previous
checkpoint and model as they were; an unreadable or damaged checkpoint
(truncated, corrupt, missing, another checksum) is reported and removed, and
its stage resumes from the newest good one, or runs again when there is none;
a damaged `state.json` falls back to `state.previous.json`.

Backends: `state.json` records the Keras backend that wrote the run's newest
files (`backend`) and each backend that trained it (`backends`). A run
interrupted on one backend resumes on another: weights, the optimizer's
iteration count, moments and EMA averages load unchanged (the files are the
same HDF5 on TensorFlow, JAX and PyTorch). A file of the run that does not
load on this backend (an error, or an optimizer state Keras would skip) is
refused with a `BackendError` naming both backends, and nothing in the run
directory is changed; written on this backend, it is handled as unreadable.
"""

import logging
import re
import shutil
import tempfile
import warnings
from pathlib import Path

from cnnzoo.errors import IntegrityError
from cnnzoo.utils import integrity

__all__ = [
    "atomic_save_model",
    "atomic_save_weights",
    "latest_checkpoint",
    "epoch_checkpoint",
    "restore",
    "resume",
    "load_stage_weights",
    "unreadable",
    "KEEP_EPOCHS",
]

log = logging.getLogger("cnnzoo.finetuning")

KEEP_EPOCHS = 2  # epoch checkpoints kept per stage: a damaged newest one falls back to the one before
_EPOCH_RE = re.compile(r"^epoch_(\d+)\.weights\.h5$")


def atomic_save_model(model, path, run_dir=None):
    """Saves a `.keras` model (and its sidecar) so that `path` is never half-written (`DiskFullError`: no room)."""
    return integrity.atomic_save_checked(path, model.save, advice=_advice(run_dir or Path(path).parent))


def atomic_save_weights(model, path, run_dir=None):
    """Saves `.weights.h5` (weights and optimizer state) and its sidecar so that `path` is never half-written.

    The room is checked first (`DiskFullError`): HDF5 crashes the process after a failed write.
    """
    return integrity.atomic_save_checked(
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
    """Why a `.weights.h5` file cannot be used (missing, damaged, truncated, corrupt), or None when it can.

    A file whose bytes differ from its SHA-256 sidecar is damaged, and is not opened.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        return "missing"
    try:
        integrity.verify(path, "checkpoint")
    except IntegrityError:
        return f"damaged: its SHA-256 does not match {integrity.sidecar_path(path).name}"
    try:
        with h5py.File(path, "r") as f:
            f.visititems(lambda name, item: item[()] if isinstance(item, h5py.Dataset) else None)
    except Exception as e:  # h5py raises OSError, KeyError, RuntimeError... for damaged files
        return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}".rstrip(": ")
    return None


def restore(model, path, state=None, fallback=None):
    """Loads an epoch checkpoint (weights and optimizer state) into `model`; False when it is unreadable.

    An unreadable checkpoint is reported (a warning naming it) and removed, and
    `model` keeps the weights it had; recompile it for a fresh optimizer. A
    checkpoint whose optimizer state Keras would skip (another optimizer, other
    variables) is unreadable too: resuming with a fresh optimizer would restart
    its schedule and moments silently. When `state` (the `RunState`) says
    another backend wrote the run, a checkpoint that does not fit raises
    `BackendError` instead, and stays. `fallback` is the checkpoint tried next, for the warning.
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
    then = f"resuming from {fallback.name}" if fallback else "its stage starts again from its first epoch"
    log.warning("checkpoint %s is unreadable (%s): removed; %s", path, problem, then)
    integrity.remove_with_sidecar(path)
    return False


def resume(model, directory, state=None):
    """Loads the newest good epoch checkpoint of `directory` into `model`; returns `(epochs_done, path)`.

    A damaged or unreadable one is reported by name, removed, and the one before it tried
    (`KEEP_EPOCHS` are kept); `(0, None)` when none is left, and `model` keeps its weights.

    Example:

    >>> resume(model, "runs/x/backup/stage_2", state)  # doctest: +SKIP
    (3, PosixPath('runs/x/backup/stage_2/epoch_0003.weights.h5'))
    """
    found = _epoch_files(directory)
    for i, (epochs, path) in enumerate(found):
        fallback = found[i + 1][1] if i + 1 < len(found) else None
        if restore(model, path, state, fallback):
            return epochs, path
    return 0, None


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
    integrity.verify(path, "stage weights", fix="delete it and call again: that stage runs again")
    try:
        model.load_weights(path)
    except Exception as e:
        state.check_backend(path, e)
        raise


def latest_checkpoint(directory):
    """Returns `(epochs_done, path)` of the newest epoch checkpoint in `directory`, or `(0, None)`."""
    found = _epoch_files(directory)
    return found[0] if found else (0, None)


def _epoch_files(directory):
    """`(epochs_done, path)` of the epoch checkpoints in `directory`, newest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _EPOCH_RE.match(p.name))]
    return sorted(found, reverse=True)


def epoch_checkpoint(directory, state, stage_index, writer=True):
    """A Keras callback that commits each finished epoch: its log, then its weights.

    The log comes first: a crash between the two re-runs that epoch (its log
    is then overwritten), never loses it. Once the new one is in place, all
    but the `KEEP_EPOCHS` newest are removed (with their sidecars). Non-writer workers (multi-worker training) save
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
            for _, old in _epoch_files(self.directory)[KEEP_EPOCHS:]:
                integrity.remove_with_sidecar(old)

        def on_train_end(self, logs=None):
            if not writer:
                shutil.rmtree(self.directory, ignore_errors=True)

    return EpochCheckpoint()
