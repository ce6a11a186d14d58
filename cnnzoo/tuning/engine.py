"""keras-tuner machinery behind `cnnzoo.tune`: oracles, tuners, run records.

What cnnzoo adds to keras-tuner's own classes, and why:
- The oracles propose the entry's defaults first (trial 0 is the zoo model),
  and resample random values whose model would not fit the input.
- The tuners declare the space without building Keras models while keras-tuner
  discovers conditional scopes, time each trial into a small JSON run record
  (`<project>/cnnzoo_runs/`), clear the Keras session after each trial, and
  continue Hyperband trials by loading weights into an uncompiled model (no
  optimizer-variable warnings).
- Distributed search (keras-tuner's chief/worker mode): the oracles move the
  trial of a worker whose heartbeat stopped to the next worker that asks, and
  keep idle workers waiting while others are busy (see `tuning_distributed`).
"""

import contextlib
import gc
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import keras_tuner as kt

from cnnzoo import _compat
from cnnzoo.tuning import distributed, records
from cnnzoo.tuning.records import RUNS_DIR, read_runs

dist_utils = _compat.kt_module("distribute.utils")
kt_tuner_utils = _compat.kt_module("engine.tuner_utils")
trial_module = _compat.kt_module("engine.trial")

__all__ = ["make_tuner", "TunerOptions"]

log = logging.getLogger("cnnzoo.tuning")

_RESAMPLE = 50  # random draws tried before an infeasible proposal is let through


# --------------------------------------------------------------------- oracles


class _OracleMixin:
    """Defaults first, feasible proposals, heartbeat-based recovery of dead workers."""

    def __init__(self, *args, hypermodel=None, heartbeats=None, heartbeat_timeout=60.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.cnnzoo_hypermodel = hypermodel
        self.cnnzoo_heartbeats = heartbeats
        self.cnnzoo_heartbeat_timeout = heartbeat_timeout
        self._cnnzoo_waiting = set()

    def _default_values(self):
        hps = kt.HyperParameters()
        for hp in self.hyperparameters.space:
            hps.merge([hp])
            if hps.is_active(hp):
                hps.values[hp.name] = hp.default
        return hps.values

    def _random_values(self):
        defaults = self._default_values()
        if defaults and not _compat.is_duplicate(self, defaults):
            return defaults
        values = None
        for _ in range(_RESAMPLE):
            values = super()._random_values()
            if values is None or self.cnnzoo_hypermodel is None or self.cnnzoo_hypermodel.feasible(values):
                return values
        return values

    def _heartbeat_age(self, tuner_id):
        if self.cnnzoo_heartbeats is None:
            return None
        try:
            return time.time() - (Path(self.cnnzoo_heartbeats) / tuner_id).stat().st_mtime
        except OSError:
            return None  # a tuner that never beat (not started by cnnzoo): never presumed dead

    def _reclaim(self, asking):
        """Frees the trials of workers whose heartbeat is older than the timeout."""
        for tuner_id in sorted(set(self.tuner_ids) | set(self.ongoing_trials)):
            if tuner_id == asking:
                continue
            age = self._heartbeat_age(tuner_id)
            if age is None or age < self.cnnzoo_heartbeat_timeout:
                continue
            trial = self.ongoing_trials.pop(tuner_id, None)
            if trial is not None:
                _compat.requeue_trial(self, trial.trial_id)
                log.warning(
                    "worker %s has not beaten for %.0f s: its trial %s goes to the next worker",
                    tuner_id,
                    age,
                    trial.trial_id,
                )
            self.tuner_ids.discard(tuner_id)
            self._cnnzoo_waiting.discard(tuner_id)

    @kt.synchronized
    def create_trial(self, tuner_id):
        self._cnnzoo_waiting.discard(tuner_id)
        self._reclaim(tuner_id)
        trial = super().create_trial(tuner_id)
        if trial.status == trial_module.TrialStatus.STOPPED:
            busy = [t for t in self.ongoing_trials if t != tuner_id]
            busy += [t for t in self.tuner_ids if t != tuner_id and t not in self._cnnzoo_waiting]
            if busy:  # stay available: a busy worker may die and leave its trial to this one
                self.tuner_ids.add(tuner_id)
                self._cnnzoo_waiting.add(tuner_id)
                return trial_module.Trial(self.get_space(), status=trial_module.TrialStatus.IDLE)
        return trial


class _RandomOracle(_OracleMixin, kt.oracles.RandomSearchOracle):
    pass


class _BayesianOracle(_OracleMixin, kt.oracles.BayesianOptimizationOracle):
    def populate_space(self, trial_id):
        # After its random start, the Gaussian process proposes values of its own: one whose model
        # would not fit the input is replaced by a feasible random draw instead of failing a trial.
        response = super().populate_space(trial_id)
        values = response.get("values")
        hm = self.cnnzoo_hypermodel
        if response.get("status") == trial_module.TrialStatus.RUNNING and values and hm and not hm.feasible(values):
            fallback = self._random_values()
            if fallback:
                response = {"status": trial_module.TrialStatus.RUNNING, "values": fallback}
        return response


class _HyperbandOracle(_OracleMixin, kt.oracles.HyperbandOracle):
    pass


# ---------------------------------------------------------------------- tuners


class _TunerMixin:
    def __init__(self, *args, on_trial=None, heartbeat_timeout=60.0, **kwargs):
        self.cnnzoo_on_trial = on_trial
        self.cnnzoo_heartbeat_timeout = heartbeat_timeout
        self._cnnzoo_heartbeat = None
        self._cnnzoo_frozen = False
        # kt.Tuner.__init__ directly: kt.Hyperband.__init__ would make an oracle of its own
        kt.Tuner.__init__(self, *args, **kwargs)
        if _compat.is_worker_tuner(self):
            self.oracle = distributed.PatientClient(self.oracle)

    def _activate_all_conditions(self):
        # keras-tuner builds a Keras model once per conditional scope to discover the space;
        # declaring the hyperparameters is enough (and never fails on a model too deep for the input).
        never, once = [], []
        hp = self.oracle.get_space()
        while True:
            self.hypermodel.declare_hyperparameters(hp)
            self.oracle.update_space(hp)
            for conditions in hp.active_scopes:
                if conditions not in once:
                    once.append(conditions)
                if conditions in never:
                    never.remove(conditions)
            for conditions in hp.inactive_scopes:
                if conditions not in once and conditions not in never:
                    never.append(conditions)
            if not never:
                break
            hp = self.oracle.get_space()
            for condition in never[0]:
                hp.values[condition.name] = condition.values[0]
            hp.ensure_active_values()

    def _record_path(self, trial_id):
        return Path(self.project_dir) / RUNS_DIR / f"{trial_id}.{self.tuner_id}.{os.getpid()}.json"

    def run_trial(self, trial, *args, **kwargs):
        path = self._record_path(trial.trial_id)
        record = {
            "trial_id": trial.trial_id,
            "tuner_id": self.tuner_id,
            "pid": os.getpid(),
            "status": "running",
            "started": time.time(),
        }
        records.write_run(path, record)
        start = time.perf_counter()
        try:
            histories = self._fit_trial(trial, *args, **kwargs)
        except BaseException as e:
            records.write_run(
                path,
                {
                    **record,
                    "status": "failed",
                    "seconds": time.perf_counter() - start,
                    "message": f"{type(e).__name__}: {e}"[:1000],
                },
            )
            raise
        epochs = sum(len(getattr(h, "epoch", ())) for h in histories)
        records.write_run(
            path,
            {
                **record,
                "status": "completed",
                "seconds": time.perf_counter() - start,
                "epochs": epochs,
                "finished": time.time(),
            },
        )
        return histories

    def _fit_trial(self, trial, *args, **kwargs):
        """keras-tuner's `Tuner.run_trial` (and Hyperband's epochs), with the best epoch kept in memory
        and written once per training instead of at every improving epoch."""
        hp = trial.hyperparameters
        if "tuner/epochs" in hp.values:
            kwargs["epochs"] = hp.values["tuner/epochs"]
            kwargs["initial_epoch"] = hp.values["tuner/initial_epoch"]
        best = _BestEpoch(self.oracle.objective, _compat.checkpoint_path(self, trial.trial_id))
        original_callbacks = kwargs.pop("callbacks", [])
        histories = []
        for execution in range(self.executions_per_trial):
            fit_kwargs = dict(kwargs)
            callbacks = _compat.copied_callbacks(self, original_callbacks)
            _compat.tensorboard_dir(self, callbacks, trial, execution)
            callbacks += [kt_tuner_utils.TunerCallback(self, trial), best]
            fit_kwargs["callbacks"] = callbacks
            histories.append(_compat.build_and_fit(self, trial, *args, **fit_kwargs))
        return histories

    def _try_build(self, hp):
        # keras-tuner clears the session (two garbage collections) before each build; cnnzoo clears it once,
        # at the end of each trial (on_trial_end), which frees the trial's memory as early.
        model = self._build_hypermodel(hp)
        if not isinstance(model, keras.Model):
            raise kt.errors.FatalTypeError(f"The hypermodel must return a keras.Model. Received: {type(model)}.")
        if self.max_model_size and model.count_params() > self.max_model_size:
            raise kt.errors.FailedTrialError(f"Oversized model: {model.count_params()} parameters. Skip model.")
        return model

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        keras.backend.clear_session()  # with its garbage collection: this trial's models and graphs go now
        if self.cnnzoo_on_trial is not None:
            ended = self.oracle.get_trial(trial.trial_id)
            runs = [r for r in read_runs(self.project_dir) if r["trial_id"] == trial.trial_id]
            self.cnnzoo_on_trial(records.record_of(ended, runs))

    def search(self, *args, **kwargs):
        # keras-tuner calls on_search_end only when the search loop ends normally; a trial or callback
        # that raises through it would leave gc frozen and the heartbeat beating (the chief would then
        # never hand this worker's unfinished trial to another), so undo both here whatever happens.
        try:
            return super().search(*args, **kwargs)
        finally:
            self._cnnzoo_restore()

    def on_search_begin(self):
        super().on_search_begin()
        # The garbage collection after each trial would walk every object of TensorFlow and Keras
        # (0.25 s a trial on 2 cores); objects alive now stay alive through the search, so freeze them.
        # A caller who froze objects already keeps their freeze: cnnzoo then neither adds nor undoes one.
        self._cnnzoo_frozen = gc.get_freeze_count() == 0
        if self._cnnzoo_frozen:
            gc.collect()
            gc.freeze()
        if dist_utils.has_chief_oracle():
            interval = max(0.2, self.cnnzoo_heartbeat_timeout / 6)
            self._cnnzoo_heartbeat = distributed.Heartbeat(
                Path(self.project_dir) / distributed.HEARTBEATS_DIR, self.tuner_id, interval
            ).start()

    def on_search_end(self):
        self._cnnzoo_restore()
        super().on_search_end()

    def _cnnzoo_restore(self):
        """Unfreezes what on_search_begin froze and stops the heartbeat; safe to call twice."""
        if getattr(self, "_cnnzoo_frozen", False):
            gc.unfreeze()
            self._cnnzoo_frozen = False
        if self._cnnzoo_heartbeat is not None:
            self._cnnzoo_heartbeat.stop()
            self._cnnzoo_heartbeat = None


class _BestEpoch(keras.callbacks.Callback):
    """Keeps the weights of the best epoch (by the objective) and writes them when training ends.

    keras-tuner's `SaveBestEpoch` writes a file at every improving epoch; across executions of a
    trial this keeps the best one as well.
    """

    def __init__(self, objective, filepath):
        super().__init__()
        self.objective = objective
        self.filepath = filepath
        self.best_value = float("-inf") if objective.direction == "max" else float("inf")
        self._weights = None

    def on_epoch_end(self, epoch, logs=None):
        if not self.objective.has_value(logs):
            self._weights = self.model.get_weights()
            return
        value = self.objective.get_value(logs)
        if self.objective.better_than(value, self.best_value):
            self.best_value = value
            self._weights = self.model.get_weights()

    def on_train_end(self, logs=None):
        if self._weights is None:
            return  # no epoch of this execution beat an earlier execution: keep its file
        final = self.model.get_weights()
        self.model.set_weights(self._weights)
        self.model.save_weights(self.filepath)
        self.model.set_weights(final)
        self._weights = None


class _Tuner(_TunerMixin, kt.Tuner):
    pass


class _Hyperband(_TunerMixin, kt.Hyperband):
    def _build_hypermodel(self, hp):
        if "tuner/trial_id" not in hp.values:
            return kt.Tuner._build_hypermodel(self, hp)
        from cnnzoo.tuning import space as tuning_space
        from cnnzoo.zoo import builders

        # Continue a trial: load its weights into an uncompiled model, then compile (no optimizer warning).
        model = self.hypermodel.build(hp, compile=False)
        model.load_weights(_compat.checkpoint_path(self, hp.values["tuner/trial_id"]))
        spec = self.hypermodel.spec_for(hp.values)
        builders.compile_model(model, spec.train)
        return tuning_space.prebuild(model, spec)


@dataclass(frozen=True)
class TunerOptions:
    """How `make_tuner` sets up a search besides the hypermodel: `cnnzoo.tune`'s arguments of the same
    names (`kind` is its `tuner`, `directory` its `out`; `seed=None` lets keras-tuner draw the oracle's)."""

    kind: str
    objective: str
    max_trials: object
    max_epochs: int
    directory: object
    project_name: str
    overwrite: bool = False
    seed: object = 0
    factor: int = 3
    executions_per_trial: int = 1
    max_consecutive_failed_trials: int = 3
    heartbeat_timeout: float = 60.0


def make_tuner(hypermodel, options, on_trial=None):
    """A cnnzoo keras-tuner tuner of a `CnnzooHyperModel`, set up by `options` (a `TunerOptions`);
    `on_trial`, if given, receives a `TrialRecord` after each trial this process ran."""
    o = options
    project_dir = Path(o.directory) / o.project_name
    common = dict(
        objective=o.objective,
        seed=o.seed,
        hypermodel=hypermodel,
        heartbeats=project_dir / distributed.HEARTBEATS_DIR,
        heartbeat_timeout=o.heartbeat_timeout,
        max_consecutive_failed_trials=o.max_consecutive_failed_trials,
    )
    if o.kind == "hyperband":
        # With max_trials, run Hyperband iterations until that many trials (one iteration of a small
        # max_epochs may hold only 2 trials); without, run one full iteration.
        oracle = _HyperbandOracle(
            max_epochs=o.max_epochs, factor=o.factor, hyperband_iterations=None if o.max_trials else 1, **common
        )
        oracle.max_trials = o.max_trials  # keras-tuner's Oracle honours it; HyperbandOracle does not take it
        tuner_cls = _Hyperband
    elif o.kind == "random":
        oracle, tuner_cls = _RandomOracle(max_trials=o.max_trials, **common), _Tuner
    else:
        oracle, tuner_cls = _BayesianOracle(max_trials=o.max_trials, **common), _Tuner
    with _logged_stdout():
        return tuner_cls(
            oracle=oracle,
            hypermodel=hypermodel,
            directory=str(o.directory),
            project_name=o.project_name,
            overwrite=o.overwrite,
            executions_per_trial=o.executions_per_trial,
            on_trial=on_trial,
            heartbeat_timeout=o.heartbeat_timeout,
        )


class _LogWriter:
    def write(self, text):
        if text.strip():
            log.info("keras-tuner: %s", text.strip())

    def flush(self):
        pass


def _logged_stdout():
    """keras-tuner prints ("Reloading Tuner from ..."); send that to the log instead."""
    return contextlib.redirect_stdout(_LogWriter())
