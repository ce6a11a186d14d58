"""The `state.json` of a fine-tuning run (`RunState`), checked by its SHA-256 sidecar and kept one save back.

`state.json` records what the run is (its fingerprint), which stages finished
and every epoch's log. Each save writes `state.json.sha256` with it and keeps
the save before as `state.previous.json` (with its own sidecar): a
`state.json` that does not match its sidecar, or does not parse, is reported
by name, kept aside as `state.json.corrupt-<time>`, and the run resumes from
`state.previous.json` (one epoch log back; the epoch checkpoints say where
training stands). Only when both are unusable does the run start over.
"""

import json
import logging
import shutil
import time
from pathlib import Path

from cnnzoo.errors import BackendError, ConfigError, IntegrityError
from cnnzoo.finetuning.checkpoints import _advice, unreadable
from cnnzoo.utils import integrity
from cnnzoo.utils.files import remove_partials

__all__ = ["RunState", "STATE_VERSION", "PREVIOUS"]

log = logging.getLogger("cnnzoo.finetuning")

STATE_VERSION = 1
PREVIOUS = "state.previous.json"


class RunState:
    """The `state.json` of a run: its fingerprint, finished stages and epoch logs."""

    def __init__(self, run_dir, fingerprint, writer=True):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "state.json"
        self.previous = self.run_dir / PREVIOUS
        self._saved = None  # the text of the last good state read or written: the next save keeps it as PREVIOUS
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
        unreadable `state.json` (damaged: not its SHA-256; truncated, not JSON,
        not a run state) is moved aside as `state.json.corrupt-<time>` with a
        warning naming it, and the run resumes from `state.previous.json`; when
        that is unusable too, the run starts over: without a state, its
        checkpoints cannot be matched to this call.
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
        old, problem = _read(self.path)
        if problem:
            previous, earlier = _read(self.previous)
            then = f"resuming from {PREVIOUS}" if earlier is None else "the run starts over"
            aside = self.path.with_name(f"state.json.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            if self.writer:
                self.path.replace(aside)
                integrity.sidecar_path(self.path).unlink(missing_ok=True)
            log.warning("run state %s is unreadable (%s): kept aside as %s; %s", self.path, problem, aside.name, then)
            if earlier is not None:
                if self.writer:
                    self.clear()
                return False
            old, self._saved = previous, None  # state.json is written again from it at the next save
        if old.get("fingerprint") != self.data["fingerprint"]:
            diff = _diff(old.get("fingerprint") or {}, self.data["fingerprint"])
            raise ConfigError(
                f"`out` already holds a different fine-tuning run ({diff}); it would resume from "
                f"the wrong checkpoints. Pass resume=False (`cnnzoo finetune --restart`) to start over "
                f"there (its checkpoints are deleted), or choose another `out`. Received: out={str(self.run_dir)!r}."
            )
        self.data = old
        if problem:
            self.save()  # state.json again, from state.previous.json
        else:
            self._saved = self.path.read_text(encoding="utf-8")
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
        for path in (self.path, self.previous):
            integrity.remove_with_sidecar(path)
        self._saved = None
        self.remove_checkpoints()

    def remove_checkpoints(self):
        """Removes the epoch and stage checkpoints (a finished run needs them no more)."""
        shutil.rmtree(self.run_dir / "backup", ignore_errors=True)
        for p in self.run_dir.glob("stage_*.weights.h5*"):  # and their sidecars
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
                for p in [*self.run_dir.glob("stage_*.weights.h5*"), *self.run_dir.glob("backup/stage_*")]:
                    if int(p.name.split("_")[1].split(".")[0]) >= k:
                        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
                self.save()
            return k
        return None

    def save(self):
        """Writes `state.json` and its sidecar; the state saved before is kept as `state.previous.json`."""
        if not self.writer:
            return
        text = json.dumps(self.data, indent=1, default=_json_default)
        advice = _advice(self.run_dir)
        if self._saved is not None and self._saved != text:
            integrity.atomic_save_checked(self.previous, _text_writer(self._saved), advice=advice)
        integrity.atomic_save_checked(self.path, _text_writer(text), advice=advice)
        self._saved = text

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


def _read(path):
    """`(state, None)` of a good state file, or `(None, what is wrong with it)`."""
    if not path.is_file():
        return None, "missing"
    try:
        integrity.verify(path, "run state")
        old = json.loads(path.read_text(encoding="utf-8"))
        problem = _state_problem(old)
    except IntegrityError:
        return None, f"damaged: its SHA-256 does not match {integrity.sidecar_path(path).name}"
    except (OSError, ValueError) as e:
        problem = f"{type(e).__name__}: {e}"
    return (None, problem) if problem else (old, None)


def _text_writer(text):
    return lambda tmp: Path(tmp).write_text(text, encoding="utf-8")


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
