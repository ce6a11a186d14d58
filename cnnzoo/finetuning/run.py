"""Transfer learning: `finetune(model_or_name, data)`.

The recipe (see docs/finetune.md): give the model a head for the data's
classes, then run stages -- the head on a frozen backbone, then the top
units, then everything -- each with its own epochs and learning rate,
recompiling between stages. Frozen stages without augmentation train the
head on backbone features computed once. Every epoch is checkpointed in the
run directory, so the same call after a crash resumes where it stopped, and
the final model is written atomically.

Parts, all in `cnnzoo.finetuning`: `stages` (stages as data), `freezing` (units,
`trainable`, BatchNorm policy, head replacement), `features` (the feature
cache), `checkpoints` (run state, epoch checkpoints), `results` (what it
returns, `evaluate`), `plots`. The data comes from `cnnzoo.data.prepare`.
"""

import contextlib
import logging
import shutil
import time
from pathlib import Path

from cnnzoo import _compat
from cnnzoo.data import pipeline as data_pipeline
from cnnzoo.data.memory import worker_shard
from cnnzoo.errors import ConfigError
from cnnzoo.finetuning import batchnorm, checkpoints, features, freezing, lr_finder, schedules
from cnnzoo.finetuning import stages as stages_lib
from cnnzoo.finetuning.models import resolve_model
from cnnzoo.finetuning.regularize import Regularisation
from cnnzoo.finetuning.results import FinetuneResult, StageResult, evaluate
from cnnzoo.finetuning.stages import Stage
from cnnzoo.utils.locks import RunLock
from cnnzoo.utils.seeding import seeded
from cnnzoo.zoo.builders import compile_model
from cnnzoo.zoo.precision import check_dtype, dtype_of

__all__ = ["finetune", "FinetuneResult", "StageResult", "Stage", "evaluate"]

log = logging.getLogger("cnnzoo.finetuning")

AUTO_STEPS_PER_EXECUTION = 8  # measured: benchmarks/bench_precision.py, docs/benchmarks.md


def finetune(
    model_or_name,
    data,
    num_classes=None,
    stages="auto",
    *,
    out=None,
    epochs=None,
    input_shape=None,
    weights=None,
    pretrained=None,
    class_names=None,
    batch_size=32,
    validation_split=0.2,
    augment="auto",
    cache_features="auto",
    freeze_batchnorm=None,
    strategy=None,
    callbacks=(),
    seed=0,
    resume=True,
    plots=True,
    verbose="auto",
    dtype=None,
    steps_per_execution="auto",
    learning_rate=None,
    label_smoothing=0.1,
    mixup=0.0,
    cutmix=0.0,
    ema=False,
):
    """Fine-tunes a zoo model on your data in stages, resumably.

    Args:
        model_or_name: a zoo name (`"bird_classifier"`), a zoo `keras.Model`
            (one ending in `ClassifierHead`), or the path of one saved as `.keras`.
        data: anything `cnnzoo.data.prepare` accepts (as `cnnzoo.tune` does): an
            image-folder path (`<dir>/<class>/<image>`, read at the model's input
            size), a `cnnzoo.data.ImageFolder`, `(x, y)` arrays (0-255 images,
            integer labels; resized to the model's input), a `cnnzoo.data.Arrays`
            record such as `cnnzoo.data.digits()` (its training part),
            `(x, y, x_val, y_val)`, or a `(train_ds, val_ds)` pair of batched
            tf.data datasets. Validation images are required.
        num_classes: int; default the data's class count. A head with another
            count is replaced by a new, randomly initialised one.
        stages: `"auto"` (see `stages.auto_stages`), or a list of `Stage`, dicts
            (`{"unfreeze": 2, "epochs": 3, "learning_rate": 1e-4}`) or strings
            (`"head:5:1e-3,top2:3:1e-4,all:2:1e-5"`).
        out: run directory; default `runs/finetune/<model name>`. Rerunning the
            same call with the same `out` resumes an interrupted run.
        epochs: optional int replacing the epoch count of every stage.
        learning_rate: optional rate replacing every stage's (as `epochs` does):
            a number, a `(lo, hi)` per-unit range, or `"auto"` (each stage runs
            `cnnzoo.find_lr`'s sweep before it trains and uses its suggestion;
            see `cnnzoo.finetuning.stages.Stage`).
        input_shape: (height, width, channels) when building by name; default
            the shape the data fixes (an `ImageFolder`'s, a dataset's), else
            the zoo entry's. Arrays are resized to the model's input.
        weights: weights for a model built by name (`"imagenet"`, a file...).
        pretrained: whether the backbone holds learned weights. Default: what
            the model records (`cnnzoo.get` without weights: False; with
            weights, or a model `finetune` saved: True; a model trained with
            `fit` since: True; a model that does not say: True). From scratch,
            `"auto"` trains everything in one stage with BatchNorm learning.
        class_names: labels for array or dataset data (folders give their own).
        batch_size, validation_split, augment: for folder paths and arrays, as in
            `cnnzoo.data.prepare` (the split is per class and seeded;
            `validation_split` must be > 0 unless the data brings validation images).
            `augment` defaults to `"auto"`: random shifts and zoom picked from the
            number of training images, never flips (docs/finetune.md); False
            trains on the images as they are.
        cache_features: `"auto"` (cache in frozen stages when the data is not
            augmented and the features fit in 2 GiB), True or False.
        freeze_batchnorm: keep every BatchNormalization below the head in
            inference mode in all stages; default `pretrained`.
        strategy: a `tf.distribute` strategy (MirroredStrategy,
            MultiWorkerMirroredStrategy...); models are built and trained in
            its scope. Only the chief writes files.
        callbacks: Keras callbacks added to every stage's `fit`.
        seed: int, for weights, split and shuffling (`keras.utils.set_random_seed`
            during the run; the caller's Python, NumPy, TensorFlow and Keras
            random state is restored afterwards).
        resume: bool; False starts the run in `out` over.
        plots: bool; write `learning_curve.png`, `confusion_matrix.png` and
            `gradcam.png` (Grad-CAM of a few validation images, right and wrong).
        verbose: Keras `fit` verbosity (`"auto"` shows progress bars).
        dtype: precision policy: None keeps the model's own (float32 for a name),
            `"mixed_bfloat16"` or `"mixed_float16"` (see `cnnzoo.get`). A given
            model or file under another policy is rebuilt under this one with
            its weights (float32 either way, so a float32 checkpoint fine-tunes
            in mixed precision and back); the saved model keeps the policy.
        steps_per_execution: batches per compiled training call; `"auto"`: 8
            (small models spend most of a step in per-call overhead), 1 when a
            callback has per-batch hooks or a `strategy` is given. Per-epoch
            callbacks, checkpoints and resuming are unaffected.
        label_smoothing: float in [0, 1), default 0.1: training targets keep
            `1 - label_smoothing` on their class and spread the rest evenly
            (validation is unsmoothed; 0 turns it off).
        mixup, cutmix: alpha of MixUp / CutMix on training batches (0: off;
            0.2 and 1.0 are usual; both: one of the two per batch). Mixed
            batches train through the network (no feature cache).
        ema: False, True or a momentum in (0, 1): validate and save an
            exponential moving average of the weights (`use_ema` on the
            optimizer). See docs/finetune.md, "Regularisation".

    Returns:
        A `FinetuneResult`.

    Example:

    >>> result = cnnzoo.finetune("bird_classifier", "photos/birds", input_shape=(128, 128, 3),
    ...                          stages=["all:10:1e-3"], out="runs/birds")
    >>> result.best_val_accuracy, result.model_path  # doctest: +SKIP
    (0.93, PosixPath('runs/birds/bird_classifier.keras'))
    """
    plan = None if _is_auto(stages) else stages_lib.as_stages(stages)
    learning_rate = None if learning_rate is None else stages_lib.check_rate(learning_rate)
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ConfigError(f"`epochs` must be None or an integer >= 1. Received: epochs={epochs!r}.")
    if cache_features not in (True, False, "auto"):
        raise ConfigError(
            f"`cache_features` must be True, False or 'auto'. Received: cache_features={cache_features!r}."
        )
    policy = check_dtype(dtype)
    regularisation = Regularisation(label_smoothing, mixup, cutmix, ema)
    per_call = _steps_per_execution(steps_per_execution, callbacks, strategy)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    writer = _is_chief(strategy)
    with seeded(seed), contextlib.ExitStack() as held:
        with scope:
            model, pretrained = resolve_model(model_or_name, data, input_shape, weights, pretrained, strategy, policy)
            model_shape = tuple(model.inputs[0].shape[1:])
            inputs = data_pipeline.prepare(
                data,
                None if None in model_shape else model_shape,
                batch_size=batch_size,
                validation_split=validation_split,
                seed=seed,
                augment=augment,
                class_names=class_names,
                cache_dir=Path(out or Path("runs", "finetune", model.name)) / "cache",
                shard=worker_shard(strategy),
            )  # beyond the cache budget; own files only
            head_classes = freezing.anatomy(model).head.num_classes
            num_classes, names = data_pipeline.settle_classes(inputs, num_classes, class_names, head_classes)
            model, replaced = freezing.replace_head(model, num_classes, names)
            parts = freezing.anatomy(model)
            freeze_bn = pretrained if freeze_batchnorm is None else bool(freeze_batchnorm)
            if plan is None:
                plan = stages_lib.auto_stages(inputs.num_train, len(parts.units), pretrained, epochs)
            plan = stages_lib.override(plan, epochs, learning_rate)
            run_dir = Path(out) if out is not None else Path("runs") / "finetune" / model.name
            if writer:  # one process per run directory; the kernel frees the lock however this one ends
                held.enter_context(RunLock(run_dir, "fine-tuning run", argument="out"))
            fingerprint = {
                "model": model.name,
                "input_shape": list(model.inputs[0].shape[1:]),
                "classes": list(names),
                "data": inputs.source,
                "stages": [str(s) + f":{s.schedule}:{s.optimizer}" for s in plan],
                "num_train": inputs.num_train,
                "batch_size": inputs.batch_size,
                "seed": seed,
                "freeze_batchnorm": freeze_bn,
                "augmented": inputs.augmented,
                "cache_features": cache_features,
            }
            if dtype_of(model) != "float32":  # float32 runs keep the fingerprint they had before `dtype`
                fingerprint["dtype"] = dtype_of(model)
            fingerprint.update(regularisation.fingerprint())  # likewise: only the options that are on
            state = checkpoints.RunState(run_dir, fingerprint, writer=writer)
            resumed = state.load_or_start(resume)
            if resumed and not state.data.get("finished"):
                state.verify_stages()  # an unreadable stage checkpoint: that stage runs again
            if resumed and state.data.get("finished"):
                done = _already_finished(state, plan, parts, inputs, names)
                if done is not None:
                    return done
                resumed = False  # its saved model is gone: the run starts over, it continues nothing
            log.info(
                "fine-tuning %s on %d images (%d classes) in %s: %s%s%s",
                model.name,
                inputs.num_train,
                num_classes,
                run_dir,
                ", ".join(map(str, plan)),
                " (new head)" if replaced else "",
                " (resuming)" if resumed else "",
            )
            pending = None  # weights of the last stage a previous call finished
            results = []
            for k, stage in enumerate(plan, 1):
                if state.stage_done(k):
                    pending = run_dir / f"stage_{k}.weights.h5"
                    results.append(_stage_result(state, k, stage, parts, []))
                    continue
                if pending is not None:
                    model.load_weights(pending)
                    pending = None
                results.append(
                    _run_stage(
                        k,
                        stage,
                        parts,
                        inputs,
                        state,
                        run_dir,
                        freeze_bn,
                        cache_features,
                        list(callbacks),
                        seed,
                        verbose,
                        writer,
                        per_call,
                        regularisation,
                    )
                )
            if pending is not None:
                model.load_weights(pending)
        # Outside the strategy's scope: saving makes Keras create a throw-away optimizer, whose variable would
        # be a collective op under MultiWorkerMirroredStrategy that only the chief (the writer) runs.
        return _finish(model, plan, results, inputs, names, state, run_dir, plots, writer, resumed, strategy)


def _already_finished(state, plan, parts, inputs, names):
    """The result of a run that finished before, its saved model loaded; None when that model is gone."""
    from cnnzoo.zoo.builders import load

    path = Path(state.data.get("model_path") or "")
    model = None
    if path.is_file():
        try:
            model = load(path)
        except Exception as e:  # truncated or corrupt since it was written
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
        "run %s already finished; returning its saved model %s (pass resume=False to train again)", state.run_dir, path
    )
    results = tuple(_stage_result(state, k, s, parts, []) for k, s in enumerate(plan, 1))
    best = [v for r in results for v in r.history.get("val_accuracy", [])]
    plots = {
        name: state.run_dir / f"{name}.png"
        for name in ("learning_curve", "confusion_matrix", "gradcam")
        if (state.run_dir / f"{name}.png").is_file()
    }
    return FinetuneResult(
        model=model,
        model_path=path,
        run_dir=state.run_dir,
        stages=results,
        best_val_accuracy=max(best) if best else None,
        val_accuracy=state.data.get("val_accuracy"),
        class_names=tuple(names),
        skipped=inputs.skipped,
        plots=plots,
        resumed=True,
    )


def _is_auto(stages):
    return isinstance(stages, str) and stages == "auto"


def _steps_per_execution(value, callbacks, strategy):
    """`steps_per_execution="auto"` resolved: 8, or 1 with per-batch callbacks or a strategy."""
    import keras

    if value == "auto":
        base = keras.callbacks.Callback
        hooks = ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end")
        per_batch = any(getattr(type(c), h, None) is not getattr(base, h) for c in callbacks for h in hooks)
        return 1 if per_batch or strategy is not None else AUTO_STEPS_PER_EXECUTION
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"`steps_per_execution` must be 'auto' or an integer >= 1. Received: steps_per_execution={value!r}."
        )
    return value


def _is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    task_type = getattr(resolver, "task_type", None)
    if not task_type:
        return True
    if task_type == "chief":
        return True
    has_chief = "chief" in (resolver.cluster_spec().as_dict() or {})
    return task_type == "worker" and resolver.task_id == 0 and not has_chief


def _run_stage(
    k,
    stage,
    parts,
    inputs,
    state,
    run_dir,
    freeze_bn,
    cache_features,
    callbacks,
    seed,
    verbose,
    writer,
    per_call=1,
    reg=Regularisation(),  # noqa: B008  (frozen; replaced by the run context below)
):
    trained = freezing.apply_stage(parts, stage, freeze_bn)
    below_frozen = not any(layer.trainable_weights for layer in (parts.chain or parts.model.layers[:-1]))
    feature_shape = tuple(parts.head.input.shape[1:])
    use_cache = below_frozen and features.feature_cache_ok(inputs, feature_shape, cache_features, reg.mixed)
    backup = run_dir / "backup" / f"stage_{k}"
    done, checkpoint = checkpoints.latest_checkpoint(backup)
    state.trim(k, done)
    start = time.perf_counter()
    if use_cache:
        fit_model, train, validation = features.cached_head_model(parts, inputs, seed)
    else:
        fit_model, train, validation = freezing.stage_model(parts), inputs.train, inputs.validation
    _compat.multi_worker_build_fix(fit_model)
    rate = lr_finder.stage_rate(k, stage, fit_model, parts, train, state, seed)  # "auto": found once, kept
    train = reg.training_batches(train, parts.head.num_classes, seed)  # one-hot (mixed) targets; validation as is
    extra = reg.compile_args(stage.epochs * inputs.steps_per_epoch)  # loss, metric, EMA
    schedules.compile_stage(
        fit_model, stage, parts, inputs.steps_per_epoch, rate=rate, steps_per_execution=per_call, **extra
    )
    if checkpoint is not None and checkpoints.restore(fit_model, checkpoint):
        log.info("stage %d (%s): resuming after epoch %d from %s", k, stage.name, done, checkpoint)
    elif checkpoint is not None:  # unreadable (reported, removed): the stage starts over, with a fresh optimizer
        done = 0
        state.trim(k, 0)
        schedules.compile_stage(
            fit_model, stage, parts, inputs.steps_per_epoch, rate=rate, steps_per_execution=per_call, **extra
        )
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
        saver = checkpoints.epoch_checkpoint(backup, state, k, writer=writer)
        steps = (stage.epochs - done) * inputs.steps_per_epoch  # too few for BatchNorm's momentum: lowered
        with batchnorm.converging_batchnorm(fit_model, steps, f"{k}/{stage.name}") as changed:
            precise = batchnorm.before_validation(fit_model, changed, plain)  # after the EMA swap: listed after it
            fit_model.fit(
                train,
                validation_data=validation,
                epochs=stage.epochs,
                initial_epoch=done,
                callbacks=[*reg.callbacks(), *precise, *callbacks, saver],
                shuffle=False,
                verbose=verbose,
            )  # datasets shuffle
    reg.finalize(fit_model)  # the averaged weights (fit does it too, but not a resume with no epoch left)
    batchnorm.precise_statistics(
        fit_model, plain, stage.epochs * inputs.steps_per_epoch, f"{k}/{stage.name}"
    )  # after fit or a crash past its last epoch: before saving
    seconds = time.perf_counter() - start
    if writer:
        checkpoints.atomic_save_weights(parts.model, run_dir / f"stage_{k}.weights.h5", run_dir)
        state.finish_stage(k, seconds, use_cache)
        shutil.rmtree(backup, ignore_errors=True)
    return _stage_result(state, k, stage, parts, trained, seconds, use_cache)


def _stage_result(state, k, stage, parts, trained, seconds=None, use_cache=None):
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


def _finish(model, plan, results, inputs, names, state, run_dir, plots, writer, resumed, strategy):
    from cnnzoo.finetuning import plots as report
    from cnnzoo.finetuning.explained import gradcam_examples

    val_accuracy, cm = (None, None)
    if inputs.validation is not None:
        val_accuracy, cm = evaluate(model, inputs.validation, len(names))
    best = [v for s in results for v in s.history.get("val_accuracy", [])]
    notes = batchnorm.chance_warnings(results, val_accuracy, len(names), model)  # near chance: said, not hidden
    batchnorm.warn(notes)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():  # every worker, in step
        compile_model(model, optimizer=plan[-1].optimizer, learning_rate=schedules.final_rate(plan, state))
    path = run_dir / f"{model.name}.keras"
    written = {}
    freezing.anatomy(model).head.pretrained = True  # saved with it: fine-tuned further, it is pretrained
    if writer:
        checkpoints.atomic_save_model(model, path, run_dir)
        if plots:
            written["learning_curve"] = report.learning_curve(results, run_dir / "learning_curve.png")
            if cm is not None:
                written["confusion_matrix"] = report.confusion_matrix_plot(cm, names, run_dir / "confusion_matrix.png")
                written.update(gradcam_examples(model, inputs.validation, names, run_dir / "gradcam.png"))
        state.data.update(finished=True, model_path=str(path), val_accuracy=val_accuracy)
        state.save()
        for p in run_dir.glob("stage_*.weights.h5"):
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
        skipped=inputs.skipped,
        plots=written,
        confusion_matrix=cm,
        resumed=resumed,
        warnings=notes,
    )
