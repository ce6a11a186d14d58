"""The result of `cnnzoo.tune`: trial records, the sorted table, the score plot."""

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from cnnzoo.utils.files import atomic_write_json
from cnnzoo.utils.renames import renamed_arguments
from cnnzoo.utils.text import plural

__all__ = ["TrialRecord", "TuneResult", "record_of", "collect", "plot_scores", "read_runs", "write_run", "RUNS_DIR"]

RUNS_DIR = "cnnzoo_runs"  # <project>/cnnzoo_runs/<trial>.<tuner>.<pid>.json: one small record per training of a trial


def write_run(path, record):
    """Writes one run record (a JSON dict) atomically."""
    atomic_write_json(Path(path), record)


def read_runs(project_dir):
    """All run records of a project: dicts with trial_id, tuner_id, pid, status, seconds, epochs."""
    runs = []
    for path in sorted((Path(project_dir) / RUNS_DIR).glob("*.json")):
        try:
            runs.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):  # a record being replaced right now
            continue
    return runs


_TUNER_KEYS = ("tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round", "tuner/trial_id")


@dataclass(frozen=True)
class TrialRecord:
    """One trial of a search.

    Attributes:
        trial_id: keras-tuner's trial id ("00", "01", ...).
        status: "COMPLETED", "FAILED", "INVALID" or "RUNNING".
        hyperparameters: dict of the trial's active searched values (only the
            layers it has: no `units_3` in a trial with 2 dense layers).
        score: the objective's best value in the trial, or None.
        epochs: epochs trained in the trial (early stopping may cut them short).
        seconds: wall time of the trial's training, build included.
        best_epoch: the epoch (0-based) that gave `score`.
        tuner_id: the tuner process that ran it (distributed search: the worker).
        continues: for Hyperband trials that resume another one, its trial id.
        message: why a failed trial failed.
        metrics: every metric at the best epoch, e.g. {"val_loss": 0.08, "accuracy": 0.97}.
    """

    trial_id: str
    status: str
    hyperparameters: dict
    score: float = None
    epochs: int = None
    seconds: float = None
    best_epoch: int = None
    tuner_id: str = None
    continues: str = None
    message: str = None
    metrics: dict = field(default_factory=dict)

    def to_dict(self):
        return dataclasses.asdict(self)

    def line(self, objective="score"):
        """One line for a progress display: id, score (named `objective`), epochs, seconds, hyperparameters.

        Example:

        >>> print(record.line("val_accuracy"))  # doctest: +SKIP
        trial 01: val_accuracy=0.9375  epochs=2  1.3s  conv_blocks=2 filters_1=32 learning_rate=0.001
        """
        score = "failed" if self.score is None else f"{objective}={self.score:.4f}"
        values = " ".join(f"{k}={_fmt(v)}" for k, v in self.hyperparameters.items())
        return f"trial {self.trial_id}: {score}  epochs={self.epochs}  {self.seconds or 0:.1f}s  {values}"


def record_of(trial, runs=()):
    """A `TrialRecord` from a keras-tuner `Trial` and its cnnzoo run records."""
    values = dict(trial.hyperparameters.values)
    searched = {k: v for k, v in values.items() if k not in _TUNER_KEYS}
    done = [r for r in runs if r.get("status") == "completed"]
    run = done[-1] if done else (runs[-1] if runs else {})
    score = trial.score
    if score is not None and (isinstance(score, float) and math.isnan(score)):
        score = None
    message = trial.message.strip().splitlines()[-1] if trial.message else None
    metrics = {}
    for name in trial.metrics.metrics:
        observations = trial.metrics.get_history(name)
        if observations:
            value = observations[-1].value
            value = value[0] if isinstance(value, (list, tuple)) else value
            metrics[name] = float(value)
    return TrialRecord(
        trial_id=trial.trial_id,
        status=trial.status,
        hyperparameters=searched,
        score=float(score) if score is not None else None,
        epochs=run.get("epochs"),
        seconds=round(run["seconds"], 3) if "seconds" in run else None,
        best_epoch=int(trial.best_step) if score is not None else None,
        tuner_id=run.get("tuner_id"),
        continues=values.get("tuner/trial_id"),
        message=message,
        metrics=metrics,
    )


def collect(project_dir):
    """Reads every trial of a project directory (works in any process sharing it)."""
    from cnnzoo import _compat

    trial_module = _compat.kt_module("engine.trial")

    project_dir = Path(project_dir)
    runs = read_runs(project_dir)
    records = []
    for path in sorted(project_dir.glob("trial_*/trial.json")):
        trial = trial_module.Trial.load(str(path))
        records.append(record_of(trial, [r for r in runs if r["trial_id"] == trial.trial_id]))
    return records


@dataclass
class TuneResult:
    """What `cnnzoo.tune` returns.

    Attributes:
        name: the zoo entry searched.
        tuner: "hyperband", "random" or "bayesian".
        objective: the metric searched on, e.g. "val_accuracy".
        direction: "max" or "min".
        directory: the keras-tuner project directory (resume from it).
        trials: list of `TrialRecord`, in trial order.
        best_trial: the best completed `TrialRecord`, or None.
        best_hyperparameters: its `keras_tuner.HyperParameters`, or None.
        best_spec: the `ModelSpec` it describes (named like the entry), or None.
        best_model: the best trial's model, rebuilt from its hyperparameters
            and loaded from its checkpoint, compiled; None when not loaded.
        seconds: wall time of this call's search.
        hypermodel: the `CnnzooHyperModel` that was searched.
    """

    name: str
    tuner: str
    objective: str
    direction: str
    directory: Path
    trials: list
    best_trial: TrialRecord = None
    best_hyperparameters: object = None
    best_spec: object = None
    best_model: object = None
    seconds: float = 0.0
    hypermodel: object = field(default=None, repr=False)

    def __repr__(self):
        """A few lines: the search, its best score and hyperparameters, the trials, where the files are.

        Example:

        >>> result  # doctest: +SKIP
        TuneResult(digits_cnn: random search, 20 trials (20 completed), 312 s
          best val_accuracy 0.9861 in trial 07 (4 epochs)
          best hyperparameters: conv_blocks=2 filters_1=32 filters_2=64 dense_layers=1 ... learning_rate=0.00123
          files: /root/.cnnzoo/tuning/digits_cnn
          .table(): every trial; .best_model: the winner, compiled; cnnzoo.register_best(result, NAME): its config)
        """
        counts = {}
        for t in self.trials:
            counts[t.status.lower()] = counts.get(t.status.lower(), 0) + 1
        statuses = ", ".join(f"{n} {status}" for status, n in counts.items())
        trials = f"{len(self.trials)} trial{'s' if len(self.trials) != 1 else ''}" + (
            f" ({statuses})" if counts else ""
        )
        best = self.best_trial
        if best is None:
            lines = ["  no completed trial yet"]
        else:
            values = " ".join(f"{k}={_fmt(v)}" for k, v in best.hyperparameters.items())
            lines = [
                f"  best {self.objective} {best.score:.4f} in trial {best.trial_id} ({plural(best.epochs, 'epoch')})",
                f"  best hyperparameters: {values}",
            ]
        model = "the winner, compiled" if self.best_model is not None else "None (load_best=False or no checkpoint)"
        return "\n".join(
            [
                f"TuneResult({self.name}: {self.tuner} search, {trials}, {self.seconds:.0f} s",
                *lines,
                f"  files: {self.directory}",
                f"  .table(): every trial; .best_model: {model}; cnnzoo.register_best(result, NAME): its config)",
            ]
        )

    def ranked(self):
        """Completed trials best first, then the others in trial order.

        Ties on the objective (common with accuracy on a small validation set) go to the lower
        `val_loss` at the best epoch, then to the earlier trial.
        """
        done = [t for t in self.trials if t.status == "COMPLETED" and t.score is not None]
        sign = -1 if self.direction == "max" else 1
        tiebreak = "val_loss" if self.objective != "val_loss" else "loss"
        done.sort(key=lambda t: (sign * t.score, t.metrics.get(tiebreak, math.inf)))
        return done + [t for t in self.trials if t not in done]

    def searched_names(self):
        """Hyperparameter names seen in any trial, in declaration order."""
        names = self.hypermodel.hp_names() if self.hypermodel is not None else []
        names = [n for n in names if any(n in t.hyperparameters for t in self.trials)]
        for t in self.trials:
            names += [k for k in t.hyperparameters if k not in names]
        return names

    def table(self):
        """The trials as a text table sorted by score (inactive layers show as `-`).

        Example:

        >>> print(result.table())  # doctest: +SKIP
        rank trial  val_accuracy  epochs  seconds  conv_blocks  filters_1 ...
        """
        names = self.searched_names()
        header = ["rank", "trial", self.objective, "epochs", "seconds", "status"] + names
        rows = []
        for rank, t in enumerate(self.ranked(), 1):
            rows.append(
                [
                    str(rank) if t.score is not None else "-",
                    t.trial_id,
                    f"{t.score:.4f}" if t.score is not None else "-",
                    "-" if t.epochs is None else str(t.epochs),
                    "-" if t.seconds is None else f"{t.seconds:.1f}",
                    t.status.lower(),
                ]
                + [_fmt(t.hyperparameters[n]) if n in t.hyperparameters else "-" for n in names]
            )
        widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
        return "\n".join(
            "  ".join(c.rjust(w) if i != 5 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
            for r in [header] + rows
        )

    def to_dict(self):
        """A JSON-ready dict: trials (ranked), best trial, directory."""
        return {
            "name": self.name,
            "tuner": self.tuner,
            "objective": self.objective,
            "direction": self.direction,
            "directory": str(self.directory),
            "seconds": round(self.seconds, 3),
            "best": self.best_trial.to_dict() if self.best_trial else None,
            "trials": [t.to_dict() for t in self.ranked()],
        }

    @renamed_arguments(path="out")
    def plot(self, out):
        """Writes a PNG of the score against each searched value to the file `out` (was `path`); returns its path."""
        return plot_scores(self, out)


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


@renamed_arguments(path="out")
def plot_scores(result, out):
    """One panel per searched hyperparameter: trial score against its value.

    Args:
        result: a `TuneResult`.
        out: the PNG file to write (was `path`).

    Returns:
        The `Path` written.
    """
    import matplotlib.ticker

    from cnnzoo.utils.plotting import figure, save_png

    done = [t for t in result.trials if t.score is not None]
    names = [n for n in result.searched_names() if any(n in t.hyperparameters for t in done)] or ["(none)"]
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig = figure((3.4 * cols, 2.8 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    best = result.best_trial
    for ax, name in zip(axes.flat, names):
        points = [
            (t.hyperparameters[name], t.score, t is best or (best and t.trial_id == best.trial_id))
            for t in done
            if name in t.hyperparameters
        ]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v, _, _ in points)
        if numeric:
            xs = [v for v, _, _ in points]
        else:
            labels = sorted({str(v) for v, _, _ in points})
            xs = [labels.index(str(v)) for v, _, _ in points]
            ax.set_xticks(range(len(labels)), labels)
        ax.scatter(xs, [s for _, s, _ in points], c=["tab:red" if b else "tab:blue" for _, _, b in points], s=24)
        if numeric and name.startswith("learning_rate") and xs and min(xs) > 0:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(name)
        ax.set_ylabel(result.objective)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.suptitle(f"{result.name}: {result.tuner} search, {len(done)} scored trials (best in red)")
    fig.tight_layout()
    return save_png(fig, out, dpi=90)
