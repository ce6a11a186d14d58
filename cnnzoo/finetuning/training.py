"""The stages of one fine-tuning run: train each (resuming), checkpoint, then finish.

`RunContext` holds what every stage of a run shares (the model's parts, the
data, the run state, the resolved `Recipe`...), so the functions here take
it and the stage rather than long lists. `cnnzoo.finetuning.run.finetune`
sets a run up and calls `run_stages` and `finish`; `already_finished`
returns a run that finished before.
"""

import contextlib
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from cnnzoo import _compat
from cnnzoo.backend import training as training_backend
from cnnzoo.explain.interpretation import interpret
from cnnzoo.finetuning import batchnorm, checkpoints, features, freezing, lr_finder, schedules
from cnnzoo.finetuning.explained import PICTURES
from cnnzoo.finetuning.recipe import Recipe
from cnnzoo.finetuning.results import FinetuneResult, StageResult
from cnnzoo.utils import console, integrity
from cnnzoo.zoo.builders import compile_model

__all__ = ["RunContext", "run_stages", "run_stage", "finish", "already_finished", "strategy_scope"]

log = logging.getLogger("cnnzoo.finetuning")


def strategy_scope(strategy):
    """`strategy.scope()`, or a context that does nothing without a strategy."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


@dataclass
class RunContext:
    """What every stage of one fine-tuning run shares.

    Attributes:
        parts: the model's `freezing.anatomy` (its backbone units and head).
        inputs: the `cnnzoo.data.Inputs` it trains and validates on.
        state: its `run_state.RunState` (the run directory, what is done).
        recipe: the resolved `Recipe`: explicit stages, BatchNorm policy and dtype.
        names: the class names.
        callbacks: the caller's Keras callbacks, added to every stage's `fit`.
        verbose: Keras `fit` verbosity.
        steps_per_execution: int, batches per compiled training call.
        strategy: a `tf.distribute` strategy, or None.
    """

    parts: object
    inputs: object
    state: object
    recipe: Recipe
    names: tuple
    callbacks: list
    verbose: object
    steps_per_execution: int
    strategy: object = None

    @property
    def run_dir(self):
        return self.state.run_dir

    @property
    def writer(self):
        """Whether this process writes the run's files (the chief, under a multi-worker strategy)."""
        return self.state.writer


def run_stages(run):
    """Trains the stages a previous call did not finish; returns a `StageResult` for each stage."""
    pending = None  # weights of the last stage a previous call finished
    results = []
    for k, stage in enumerate(run.recipe.stages, 1):
        if run.state.stage_done(k):
            pending = run.run_dir / f"stage_{k}.weights.h5"
            results.append(_stage_result(run.state, k, stage, []))
            continue
        if pending is not None:
            checkpoints.load_stage_weights(run.parts.model, pending, run.state)
            pending = None
        results.append(run_stage(run, k, stage))
    if pending is not None:
        checkpoints.load_stage_weights(run.parts.model, pending, run.state)
    return results


def run_stage(run, k, stage):
    """Trains stage `k` (resuming after its last checkpointed epoch), saves its weights, returns its result."""
    parts, inputs, state, reg = run.parts, run.inputs, run.state, run.recipe.regularisation
    trained = freezing.apply_stage(parts, stage, run.recipe.freeze_batchnorm)
    below_frozen = not any(layer.trainable_weights for layer in (parts.chain or parts.model.layers[:-1]))
    feature_shape = tuple(parts.head.input.shape[1:])
    use_cache = below_frozen and features.feature_cache_ok(inputs, feature_shape, run.recipe.cache_features, reg.mixed)
    backup = run.run_dir / "backup" / f"stage_{k}"
    had_checkpoint = checkpoints.latest_checkpoint(backup)[1] is not None
    start = time.perf_counter()
    if use_cache:
        cache = backup / features.CACHE_FILE if run.writer else None  # kept for a resume of this stage
        fit_model, train, validation = features.cached_head_model(parts, inputs, run.recipe.seed, cache)
    else:
        fit_model, train, validation = freezing.stage_model(parts), inputs.train, inputs.validation
    _compat.multi_worker_build_fix(fit_model)
    rate = lr_finder.stage_rate(k, stage, fit_model, parts, train, state, run.recipe.seed)  # "auto": found once
    train = reg.training_batches(train, parts.head.num_classes, run.recipe.seed)  # one-hot (mixed) targets
    extra = dict(rate=rate, steps_per_execution=run.steps_per_execution)
    extra.update(reg.compile_args(stage.epochs * inputs.steps_per_epoch))  # loss, metric, EMA
    schedules.compile_stage(fit_model, stage, parts, inputs.steps_per_epoch, **extra)
    done, checkpoint = checkpoints.resume(fit_model, backup, state)  # the newest good one; damaged: reported
    state.trim(k, done)
    if checkpoint is not None:
        log.info("stage %d (%s): resuming after epoch %d from %s", k, stage.name, done, checkpoint)
    elif had_checkpoint:  # none readable (reported, removed): the stage starts over, with a fresh optimizer
        schedules.compile_stage(fit_model, stage, parts, inputs.steps_per_epoch, **extra)
    log.info(
        "stage %d/%s: %s, units %s, %s",
        k,
        stage.name,
        stage,
        trained or "none",
        "cached features" if use_cache else "through the network",
    )
    plain = inputs.plain_train if inputs.plain_train is not None else inputs.train  # for BatchNorm statistics
    if done < stage.epochs:
        _fit(run, k, stage, fit_model, (train, validation, plain), done)
    reg.finalize(fit_model)  # the averaged weights (fit does it too, but not a resume with no epoch left)
    batchnorm.precise_statistics(
        fit_model, plain, stage.epochs * inputs.steps_per_epoch, f"{k}/{stage.name}"
    )  # after fit or a crash past its last epoch: before saving
    seconds = time.perf_counter() - start
    if run.writer:
        checkpoints.atomic_save_weights(parts.model, run.run_dir / f"stage_{k}.weights.h5", run.run_dir)
        state.finish_stage(k, seconds, use_cache)
        shutil.rmtree(backup, ignore_errors=True)
    return _stage_result(state, k, stage, trained, seconds, use_cache)


def _fit(run, k, stage, fit_model, data, done):
    """`fit` for the epochs of stage `k` after `done`, checkpointing each; `data` is (train, validation, plain)."""
    train, validation, plain = data
    inputs = run.inputs  # JAX DataParallel: batches split evenly over the devices
    train, validation = training_backend.shardable(train, validation, inputs.num_train, inputs.batch_size)
    saver = checkpoints.epoch_checkpoint(run.run_dir / "backup" / f"stage_{k}", run.state, k, writer=run.writer)
    steps = (stage.epochs - done) * run.inputs.steps_per_epoch  # too few for BatchNorm's momentum: lowered
    with batchnorm.converging_batchnorm(fit_model, steps, f"{k}/{stage.name}") as changed:
        precise = batchnorm.before_validation(fit_model, changed, plain)  # after the EMA swap: listed after it
        fit_model.fit(
            train,
            validation_data=validation,
            epochs=stage.epochs,
            initial_epoch=done,
            callbacks=[*run.recipe.regularisation.callbacks(), *precise, *run.callbacks, saver],
            shuffle=False,
            verbose=console.keras_verbose(run.verbose),  # "auto": bars on a terminal, a line per epoch in a file
        )  # datasets shuffle


def _stage_result(state, k, stage, trained, seconds=None, use_cache=None):
    history = {}
    for record in state.epochs(k):
        for key, value in record.items():
            if key != "epoch" and key != "learning_rate":
                history.setdefault(key, []).append(value)
    if seconds is None:
        seconds = state.data["seconds"].get(str(k), 0.0)
        use_cache = state.data["feature_cache"].get(str(k), False)
        trained = []
    return StageResult(k, stage, history, tuple(trained), bool(use_cache), float(seconds))


def finish(run, results, resumed, plots):
    """Evaluates, saves the model (and the plots), marks the run finished; returns the `FinetuneResult`."""
    model, names, state, run_dir = run.parts.model, run.names, run.state, run.run_dir
    val_accuracy, cm, interpretation = None, None, None
    if run.inputs.validation is not None:
        interpretation = interpret(model, run.inputs)  # its validation images
        val_accuracy, cm = interpretation.accuracy, interpretation.confusion_matrix
    best = [v for s in results for v in s.history.get("val_accuracy", [])]
    notes = batchnorm.chance_warnings(results, val_accuracy, len(names), model)  # near chance: said, not hidden
    batchnorm.warn(notes)
    plan = run.recipe.stages
    with strategy_scope(run.strategy):  # every worker, in step
        compile_model(model, optimizer=plan[-1].optimizer, learning_rate=schedules.final_rate(plan, state))
    path = run_dir / f"{model.name}.keras"
    written = {}
    freezing.anatomy(model).head.pretrained = True  # saved with it: fine-tuned further, it is pretrained
    if run.writer:
        checkpoints.atomic_save_model(model, path, run_dir)
        if plots:
            written = _plots(run, results, interpretation)
        state.data.update(finished=True, model_path=str(path), val_accuracy=val_accuracy)
        state.save()
        for p in run_dir.glob("stage_*.weights.h5*"):  # and their sidecars
            p.unlink(missing_ok=True)
        shutil.rmtree(run_dir / "backup", ignore_errors=True)
    log.info(
        "fine-tuned %s: validation accuracy %s, saved %s",
        model.name,
        "n/a" if val_accuracy is None else f"{val_accuracy:.2%}",
        path,
    )
    return FinetuneResult(
        model=model,
        model_path=path,
        run_dir=run_dir,
        stages=tuple(results),
        best_val_accuracy=max(best) if best else None,
        val_accuracy=val_accuracy,
        class_names=tuple(names),
        skipped=run.inputs.skipped,
        plots=written,
        confusion_matrix=cm,
        resumed=resumed,
        warnings=notes,
        interpretation=interpretation,
    )


def _plots(run, results, interpretation):
    """The learning curve, and with validation images the confusion matrix, the top losses and Grad-CAM examples."""
    from cnnzoo.finetuning import plots as report
    from cnnzoo.finetuning.explained import validation_pictures

    run_dir = run.run_dir
    effects = report.train_only_effects(run.recipe, run.inputs.augmented, run.parts.model, len(run.names))
    written = {"learning_curve": report.learning_curve(results, run_dir / "learning_curve.png", effects)}
    if interpretation is not None:
        written.update(validation_pictures(interpretation, run_dir))
    return written


def already_finished(run):
    """The result of a run that finished before, its saved model loaded; None when that model is gone."""
    from cnnzoo.zoo.builders import load

    state = run.state
    path = Path(state.data.get("model_path") or "")
    model = None
    damaged = path.is_file() and not integrity.is_intact(path, "model")
    if damaged:
        log.warning(
            "run %s finished before but its model %s is damaged (its SHA-256 does not match %s): training again",
            state.run_dir,
            path,
            integrity.sidecar_path(path).name,
        )
    elif path.is_file():
        try:
            model = load(path)
        except Exception as e:  # truncated or corrupt since it was written (or written on another backend: refused)
            state.check_backend(path, e)
            log.warning(
                "run %s finished before but its model %s is unreadable (%s: %s): training again",
                state.run_dir,
                path,
                type(e).__name__,
                str(e).splitlines()[0][:200] if str(e) else "",
            )
    else:
        log.warning("run %s finished before but its model %s is gone: training again", state.run_dir, path)
    if model is None:
        if state.writer:
            state.clear()
        state.data.update(stages_done=[], history={}, seconds={}, feature_cache={}, finished=False)
        return None
    if state.writer:
        state.remove_checkpoints()  # left when a kill came between the final state and the clean-up
    log.info(
        "run %s already finished; returning its saved model %s (pass resume=False to train again)",
        state.run_dir,
        path,
    )
    results = tuple(_stage_result(state, k, s, []) for k, s in enumerate(run.recipe.stages, 1))
    best = [v for r in results for v in r.history.get("val_accuracy", [])]
    interpretation = interpret(model, run.inputs) if run.inputs.validation is not None else None
    plots = {name: state.run_dir / f"{name}.png" for name in PICTURES if (state.run_dir / f"{name}.png").is_file()}
    return FinetuneResult(
        model=model,
        model_path=path,
        run_dir=state.run_dir,
        stages=results,
        best_val_accuracy=max(best) if best else None,
        val_accuracy=state.data.get("val_accuracy"),
        class_names=run.names,
        skipped=run.inputs.skipped,
        plots=plots,
        resumed=True,
        confusion_matrix=None if interpretation is None else interpretation.confusion_matrix,
        interpretation=interpretation,
    )
