"""Transfer learning: `finetune(model, data)`.

The recipe (see docs/finetune.md): give the model a head for the data's
classes, then run stages -- the head on a frozen backbone, then the top
units, then everything -- each with its own epochs and learning rate,
recompiling between stages. Frozen stages without augmentation train the
head on backbone features computed once. Every epoch is checkpointed in the
run directory, so the same call after a crash resumes where it stopped, and
the final model is written atomically.

How a run trains is one `Recipe` (`cnnzoo.finetuning.recipe`): `finetune`'s
keywords are its fields. What every stage of a run shares travels as one `RunContext`
(`cnnzoo.finetuning.training`, which trains the stages and finishes the run).
Parts, all in `cnnzoo.finetuning`: `stages` (stages as data), `freezing`
(units, `trainable`, BatchNorm policy, head replacement), `features` (the
feature cache), `checkpoints` (epoch checkpoints), `run_state` (state.json), `results` (what
it returns, `evaluate`), `plots`. The data comes from `cnnzoo.data.prepare`.
"""

import contextlib
import logging
from pathlib import Path

from cnnzoo import backend
from cnnzoo.backend import training as training_backend
from cnnzoo.data import pipeline as data_pipeline
from cnnzoo.data.memory import worker_shard
from cnnzoo.errors import BackendError
from cnnzoo.finetuning import freezing, run_state
from cnnzoo.finetuning.models import resolve_model
from cnnzoo.finetuning.recipe import RECIPE_FILE, Recipe, recipe_keywords
from cnnzoo.finetuning.results import FinetuneResult, StageResult, evaluate
from cnnzoo.finetuning.stages import Stage
from cnnzoo.finetuning.training import RunContext, already_finished, finish, run_stages, strategy_scope
from cnnzoo.utils.locks import RunLock
from cnnzoo.utils.renames import renamed_arguments
from cnnzoo.utils.seeding import seeded
from cnnzoo.zoo.precision import dtype_of

__all__ = ["finetune", "FinetuneResult", "StageResult", "Stage", "Recipe", "evaluate"]

log = logging.getLogger("cnnzoo.finetuning")

AUTO_STEPS_PER_EXECUTION = 8  # measured: benchmarks/bench_precision.py, docs/benchmarks.md


@renamed_arguments(model_or_name="model")
@recipe_keywords
def finetune(
    model,
    data,
    num_classes=None,
    stages=Recipe.stages,
    *,
    out=None,
    epochs=Recipe.epochs,
    input_shape=None,
    weights=None,
    pretrained=None,
    class_names=None,
    batch_size=Recipe.batch_size,
    validation_split=Recipe.validation_split,
    augment=Recipe.augment,
    cache_features=Recipe.cache_features,
    freeze_batchnorm=Recipe.freeze_batchnorm,
    strategy=None,
    callbacks=(),
    seed=Recipe.seed,
    resume=True,
    plots=True,
    verbose="auto",
    dtype=Recipe.dtype,
    steps_per_execution=Recipe.steps_per_execution,
    learning_rate=Recipe.learning_rate,
    label_smoothing=Recipe.label_smoothing,
    mixup=Recipe.mixup,
    cutmix=Recipe.cutmix,
    ema=Recipe.ema,
    recipe=None,
):
    """Fine-tunes a zoo model on your data in stages, resumably.

    Args:
        model: a zoo name (`"bird_classifier"`), a zoo `keras.Model` (one
            ending in `ClassifierHead`), the path of one saved as `.keras`, or a
            preset: a directory `cnnzoo.save_preset` or keras-hub's `save_to_preset`
            (image classifier or backbone) wrote, or an `hf://owner/repo[@revision]`
            handle (docs/data_and_weights.md, "Presets").
            (`model_or_name=`, its old name, works until cnnzoo 0.3.)
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
        strategy: on TensorFlow a `tf.distribute` strategy (MirroredStrategy,
            MultiWorkerMirroredStrategy...), on JAX a `keras.distribution`
            (`DataParallel()` over the local devices; one set globally with
            `keras.distribution.set_distribution` is used too); models are
            built and trained in its scope. Only the chief writes files.
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
        recipe: optional `cnnzoo.Recipe`, dict or path of a `recipe.json`
            (every run writes the recipe it ran to `<out>/recipe.json`). The
            keywords above that are recipe fields (`stages`, `epochs`,
            `learning_rate`, `batch_size`, `validation_split`, `augment`,
            `cache_features`, `freeze_batchnorm`, `seed`, `dtype`,
            `steps_per_execution`, `label_smoothing`, `mixup`, `cutmix`,
            `ema`) override the recipe's when given as well.

    Returns:
        A `FinetuneResult`.

    Example:

    >>> result = cnnzoo.finetune("bird_classifier", "photos/birds", input_shape=(128, 128, 3),
    ...                          stages=["all:10:1e-3"], out="runs/birds")
    >>> result.best_val_accuracy, result.model_path  # doctest: +SKIP
    (0.93, PosixPath('runs/birds/bird_classifier.keras'))
    >>> again = cnnzoo.finetune("bird_classifier", "photos/birds", recipe="runs/birds/recipe.json",
    ...                         out="runs/birds-again")  # the same run, repeated from its recipe
    """
    # long: the signature, one keyword a line as ruff writes it, is 33 of the lines; the body is 40.
    # The keywords that are `Recipe` fields arrive merged into `recipe` (`recipe_keywords`): read them there.
    training_backend.check_strategy(strategy)  # tf.distribute: TensorFlow only
    per_call = _steps_per_execution(recipe.steps_per_execution, callbacks, strategy)
    writer = _is_chief(strategy)
    with seeded(recipe.seed), contextlib.ExitStack() as held:
        with strategy_scope(strategy):
            model, pretrained = resolve_model(model, data, input_shape, weights, pretrained, strategy, recipe.dtype)
            run_dir = Path(out) if out is not None else Path("runs") / "finetune" / model.name
            inputs = _prepare(data, model, recipe, class_names, run_dir, strategy)
            head_classes = freezing.anatomy(model).head.num_classes
            num_classes, names = data_pipeline.settle_classes(inputs, num_classes, class_names, head_classes)
            model, replaced = freezing.replace_head(model, num_classes, names)
            parts = freezing.anatomy(model)
            recipe = _resolved(recipe, parts, inputs.num_train, pretrained)
            if writer:  # one process per run directory; the kernel frees the lock however this one ends
                held.enter_context(RunLock(run_dir, "fine-tuning run", argument="out"))
            state = run_state.RunState(run_dir, _fingerprint(parts.model, names, inputs, recipe), writer=writer)
            run = RunContext(parts, inputs, state, recipe, tuple(names), list(callbacks), verbose, per_call, strategy)
            resumed = state.load_or_start(resume)
            if resumed and not state.data.get("finished"):
                state.verify_stages()  # an unreadable stage checkpoint: that stage runs again
            if resumed and state.data.get("finished"):
                done = already_finished(run)
                if done is not None:
                    return done
                resumed = False  # its saved model is gone: the run starts over, it continues nothing
            if writer:
                recipe.to_json(run_dir / RECIPE_FILE)  # what this run trains with: repeat it with `recipe=`
            log.info(
                "fine-tuning %s on %d images (%d classes) in %s: %s%s%s",
                model.name,
                inputs.num_train,
                num_classes,
                run_dir,
                ", ".join(map(str, recipe.stages)),
                " (new head)" if replaced else "",
                " (resuming)" if resumed else "",
            )
            results = run_stages(run)
        # Outside the strategy's scope: saving makes Keras create a throw-away optimizer, whose variable would
        # be a collective op under MultiWorkerMirroredStrategy that only the chief (the writer) runs.
        return finish(run, results, resumed, plots)


def _prepare(data, model, recipe, class_names, run_dir, strategy):
    """The data's pipelines at the model's input size, with the recipe's data options."""
    shape = tuple(model.inputs[0].shape[1:])
    return data_pipeline.prepare(
        data,
        None if None in shape else shape,
        **recipe.data.as_dict(),
        seed=recipe.seed,
        class_names=class_names,
        cache_dir=run_dir / "cache",  # beyond the cache budget; own files only
        shard=worker_shard(strategy),
    )


def _resolved(recipe, parts, num_train, pretrained):
    """`recipe` with what it left to the run decided: the stages, the BatchNorm policy, the precision."""
    plan = recipe.plan(num_train, len(parts.units), pretrained)
    freeze = pretrained if recipe.freeze_batchnorm is None else recipe.freeze_batchnorm
    return recipe.replace(
        stages=plan, epochs=None, learning_rate=None, freeze_batchnorm=bool(freeze), dtype=dtype_of(parts.model)
    )


def _fingerprint(model, names, inputs, recipe):
    """What a resumed run must share with the run it continues: the model, the data and the recipe."""
    return {
        "model": model.name,
        "input_shape": list(model.inputs[0].shape[1:]),
        "classes": list(names),
        "data": inputs.source,
        "num_train": inputs.num_train,
        "augmented": inputs.augmented,
        **recipe.fingerprint(),
    }


def _steps_per_execution(value, callbacks, strategy):
    """`steps_per_execution="auto"` resolved: 8, or 1 with per-batch callbacks or a strategy, at most what the
    backend allows."""
    import keras

    limit = training_backend.steps_per_execution_limit()  # PyTorch: 1
    if value != "auto":
        if limit is not None and value > limit:
            raise BackendError(
                f"`steps_per_execution` must be at most {limit} on the Keras backend {backend.name()!r}. "
                f"Received: steps_per_execution={value}. Leave it 'auto' (it picks what the backend allows)."
            )
        return value  # an int >= 1, checked by `Recipe`
    base = keras.callbacks.Callback
    hooks = ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end")
    per_batch = any(getattr(type(c), h, None) is not getattr(base, h) for c in callbacks for h in hooks)
    chosen = 1 if per_batch or strategy is not None else AUTO_STEPS_PER_EXECUTION
    return chosen if limit is None else min(chosen, limit)


def _is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    task_type = getattr(resolver, "task_type", None)
    if not task_type:
        return True
    if task_type == "chief":
        return True
    has_chief = "chief" in (resolver.cluster_spec().as_dict() or {})
    return task_type == "worker" and resolver.task_id == 0 and not has_chief
