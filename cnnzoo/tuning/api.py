"""Hyperparameter search over a zoo entry's `[search]` table with keras-tuner.

`hypermodel(name)` turns the table into a keras-tuner `HyperModel` (see
`cnnzoo.tuning.space` for the names, defaults and rules); `tune(model, data)`
runs a resumable, optionally distributed search and returns a `TuneResult`;
`register_best(result, "my_net")` (from `cnnzoo.tuning.best`) writes the
winner as a zoo config beside the search and registers it in this process.

Importing this module imports neither TensorFlow nor keras-tuner (the `cnnzoo
tune` parser reads `tune`'s defaults from its signature); `tune` imports them.

Example:

>>> result = cnnzoo.tune("digits_cnn", cnnzoo.data.digits(), tuner="random", max_trials=10, max_epochs=5)
>>> print(result.table())
>>> cnnzoo.register_best(result, "my_digits_net")
>>> model = cnnzoo.get("my_digits_net")
"""

import importlib
import logging
import time
from pathlib import Path

from cnnzoo.data import DataOptions, sizing
from cnnzoo.data import pipeline as data_pipeline
from cnnzoo.errors import ConfigError
from cnnzoo.tuning import best
from cnnzoo.tuning.best import register_best
from cnnzoo.tuning.records import TrialRecord, TuneResult, collect
from cnnzoo.utils.checks import check_int
from cnnzoo.utils.locks import RunLock
from cnnzoo.utils.renames import renamed_arguments
from cnnzoo.utils.seeding import seeded
from cnnzoo.utils.text import plural
from cnnzoo.zoo import registry

__all__ = [  # noqa: F822 (`hypermodel` and `CnnzooHyperModel` come from `__getattr__`)
    "hypermodel",
    "tune",
    "register_best",
    "CnnzooHyperModel",
    "TuneResult",
    "TrialRecord",
    "TUNERS",
]

log = logging.getLogger("cnnzoo.tuning")

TUNERS = ("hyperband", "random", "bayesian")
OBJECTIVES = ("val_accuracy", "val_loss", "accuracy", "loss")  # what builders.compile_model reports
VERBOSE = ("auto", 0, 1, 2)  # Keras's values; a callable is taken too (see `tune`)


def __getattr__(name):
    # `hypermodel` and `CnnzooHyperModel` live in `space`, which imports keras-tuner: loaded on first use
    if name in ("hypermodel", "CnnzooHyperModel"):
        return getattr(importlib.import_module("cnnzoo.tuning.space"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------ tune


@renamed_arguments(name="model", directory="out", progress="verbose")
def tune(
    model,
    data,
    tuner="hyperband",
    max_trials=10,
    max_epochs=10,
    out=None,
    objective="val_accuracy",
    overwrite=False,
    *,
    project_name=None,
    num_classes=None,
    input_shape=None,
    search=None,
    batch_size=DataOptions.batch_size,
    validation_split=DataOptions.validation_split,
    early_stopping=3,
    factor=3,
    seed=0,
    executions_per_trial=1,
    max_consecutive_failed_trials=3,
    heartbeat_timeout=60.0,
    verbose="auto",
    callbacks=(),
    load_best=True,
    dtype=None,
    **fixed,
):
    """Searches a zoo entry's `[search]` space with keras-tuner.

    Trial 0 is the zoo entry itself (all defaults); each trial trains with
    early stopping and the Keras session is cleared between trials. A second
    call with the same `out` and `overwrite=False` resumes: finished trials
    are kept, an interrupted one runs again, and `max_trials` may grow. With
    keras-tuner's `KERASTUNER_TUNER_ID`, `KERASTUNER_ORACLE_IP` and
    `KERASTUNER_ORACLE_PORT` set, the same call runs as the chief or a worker
    of a distributed search sharing `out` (see docs/tuning.md).

    Args:
        model: a zoo model name (see `cnnzoo.list_models()`) whose entry has a
            config: the search runs over that entry's `[search]` table (its
            layer counts, widths and training values), so a built
            `keras.Model` or a `.keras` file, which has no such table, is not
            taken. Was `name`.
        data: anything `cnnzoo.data.prepare` accepts (as `cnnzoo.finetune`
            does): an image-folder path, an `ImageFolder`, (x, y) arrays (split
            per class by `validation_split` and `seed`), a `cnnzoo.data.Arrays`
            record such as `cnnzoo.data.digits()` (its training part),
            (x, y, x_val, y_val), or (train_ds, val_ds) batched tf.data
            datasets. Arrays are resized to `input_shape`.
        tuner: "hyperband", "random" or "bayesian".
        max_trials: int, the most trials to run (for Hyperband a cap on its
            brackets; None runs one full Hyperband iteration).
        max_epochs: int, epochs per trial (Hyperband: for the longest trials).
        out: the directory the search project lives in (`out/project_name`);
            default `$CNNZOO_HOME/tuning`. One search per project at a time: a
            second process is refused with `RunLockedError` (the chief and
            workers of a distributed search share it). Was `directory`.
        objective: the metric to optimise: "val_accuracy" (default), "val_loss",
            "accuracy" or "loss".
        overwrite: bool; start afresh instead of resuming.
        project_name: default the model name.
        num_classes: default from the data (class names, else largest label
            + 1), else the entry's.
        input_shape: default the shape the data fixes (an `ImageFolder`'s, a
            dataset's), else the entry's.
        search: dict overriding the entry's `[search]` table key by key.
        batch_size: int, for arrays and image directories (default
            `cnnzoo.data.DataOptions.batch_size`).
        validation_split: float in (0, 1), the held-out share of each class
            of (x, y) arrays and image directories (default
            `cnnzoo.data.DataOptions.validation_split`).
        early_stopping: int patience in epochs on the objective; 0 disables.
        factor: Hyperband's reduction factor.
        seed: int (default 0), for the oracle's proposals, the split, the
            shuffling and the weights (`keras.utils.set_random_seed`): the same
            call repeats its search. None draws the oracle's seed and the
            weights afresh each call (the split still uses 0). The caller's
            random state is restored afterwards.
        executions_per_trial: int, trainings averaged per trial.
        max_consecutive_failed_trials: int, failures in a row that end the search.
        heartbeat_timeout: seconds without a heartbeat after which a
            distributed worker counts as dead and its trial moves on.
        verbose: what this process reports, with Keras's values: "auto"
            (default), 1 or 2: a line on stdout when the search starts (what
            it runs, where, how many trials are there already) and one after
            each trial it ran (`TrialRecord.line`: trial id, score, epochs,
            seconds, hyperparameters), as `cnnzoo tune` prints (a search has
            no progress bar, so 1, 2 and "auto" are the same); 0 nothing; or
            a callable receiving each `TrialRecord` instead (what the former
            `progress` keyword took; its None is 0). Trials train silently
            either way.
        callbacks: Keras callbacks added to every trial's `fit` (after the
            early stopping).
        load_best: bool; rebuild the best model and load its weights.
        dtype: precision policy of every trial and of `best_model`: None
            (float32), `"mixed_bfloat16"` or `"mixed_float16"` (see `cnnzoo.get`).
        **fixed: pinned hyperparameters and config overrides, as in
            `cnnzoo.hypermodel`.

    The keywords `name`, `directory` and `progress` (the former names of
    `model`, `out` and `verbose`) still work until cnnzoo 0.3, with a
    `DeprecationWarning`.

    Returns:
        A `TuneResult`: `trials` (hyperparameters, score, epochs, seconds),
        `table()`, `best_hyperparameters`, `best_spec`, `best_model`.

    Example:

    >>> digits = cnnzoo.data.digits()
    >>> result = cnnzoo.tune("digits_cnn", digits, tuner="random", max_trials=8, max_epochs=4)
    tune digits_cnn: random search, up to 8 trials of at most 4 epochs each, in ~/.cnnzoo/tuning/digits_cnn
    trial 00: val_accuracy=0.9757  epochs=4  6.1s  conv_blocks=2 filters_1=32 ...
    ...
    >>> result  # the best score and hyperparameters, the trials, where the files are
    >>> result.best_model.evaluate(digits.x_test, digits.y_test)
    """
    from cnnzoo.tuning.engine import TunerOptions

    _check_arguments(tuner, max_trials, max_epochs, batch_size, early_stopping, executions_per_trial, objective, dtype)
    on_trial = _on_trial(verbose, objective)
    entry = registry.spec(model)  # unknown names fail before any data work
    inputs, input_shape = _inputs(data, input_shape, entry, validation_split, seed, batch_size, fixed)
    hm = _hypermodel_for(model, entry, inputs, num_classes, input_shape, search, dtype, fixed)
    options = TunerOptions(
        kind=tuner,
        objective=objective,
        max_trials=max_trials,
        max_epochs=max_epochs,
        directory=Path(out) if out is not None else registry.home() / "tuning",
        project_name=project_name or model,
        overwrite=overwrite,
        seed=seed,
        factor=factor,
        executions_per_trial=executions_per_trial,
        max_consecutive_failed_trials=max_consecutive_failed_trials,
        heartbeat_timeout=heartbeat_timeout,
    )
    announce = on_trial is not None and not callable(verbose)  # the start line goes with the printed trial lines
    with seeded(seed), _lock(options):
        return _search(model, hm, inputs, options, on_trial, list(callbacks), early_stopping, load_best, announce)


def _check_arguments(tuner, max_trials, max_epochs, batch_size, early_stopping, executions_per_trial, objective, dtype):
    """Raises `ConfigError` for a bad search argument, before any data work."""
    from cnnzoo.zoo.precision import check_dtype  # imports Keras

    if tuner not in TUNERS:
        raise ConfigError(f"`tuner` must be one of {', '.join(TUNERS)}. Received: tuner={tuner!r}.")
    check_int(max_trials, "max_trials", allow_none=tuner == "hyperband")
    check_int(max_epochs, "max_epochs")
    check_int(batch_size, "batch_size")
    check_int(early_stopping, "early_stopping", lo=0)
    check_int(executions_per_trial, "executions_per_trial")
    if objective not in OBJECTIVES:
        raise ConfigError(
            f"`objective` must be a metric the zoo models report: {', '.join(OBJECTIVES)}. "
            f"Received: objective={objective!r}."
        )
    check_dtype(dtype)


def _inputs(data, input_shape, entry, validation_split, seed, batch_size, fixed):
    """`(inputs, input_shape)`: the data's train and validation pipelines, and the input they are sized to."""
    input_shape = sizing.fitted_input_shape(data, entry, input_shape)  # from the images, within what fits
    inputs = data_pipeline.prepare(
        data,
        input_shape,
        validation_split=validation_split,
        seed=seed,
        batch_size=batch_size,
        class_names=fixed.get("class_names"),
    )
    return inputs, input_shape


def _lock(options):
    """The lock of the search's project: one search at a time, the processes of a distributed one together."""
    from cnnzoo.tuning import distributed

    return RunLock(
        options.directory,
        f"search of `{options.project_name}`",
        argument="out",
        shared=distributed.is_chief() or distributed.is_worker(),
        name=f".{options.project_name}.cnnzoo.lock",
    )


def _on_trial(verbose, objective):
    """The per-trial callback `verbose` asks for: None (0), a line on stdout (1, 2, "auto"), or `verbose` itself."""
    if callable(verbose):
        return verbose
    if verbose is not None and (isinstance(verbose, bool) or verbose not in VERBOSE):
        raise ConfigError(
            f"`verbose` must be 0, 1, 2, 'auto' (Keras's values) or a callable receiving a TrialRecord. "
            f"Received: verbose={verbose!r}."
        )
    if verbose is None or verbose == 0:  # None: the former `progress=None`
        return None
    return lambda record: print(record.line(objective), flush=True)


def _hypermodel_for(model, entry, inputs, num_classes, input_shape, search, dtype, fixed):
    """The `CnnzooHyperModel` of the entry, with the classes the data settles (adds them to `fixed`)."""
    from cnnzoo.tuning.space import CnnzooHyperModel

    num_classes, names = data_pipeline.settle_classes(inputs, num_classes, fixed.get("class_names"), entry.num_classes)
    if inputs.class_names and "class_names" not in fixed:
        fixed["class_names"] = list(names)
    return CnnzooHyperModel(
        model, num_classes=num_classes, input_shape=input_shape, search=search, dtype=dtype, **fixed
    )


def _search(name, hm, inputs, options, on_trial, callbacks, early_stopping, load_best, announce=False):
    """Runs (or serves, as the chief) the search in a locked, seeded block; returns the `TuneResult`."""
    import dataclasses

    import keras

    from cnnzoo.backend import training as training_backend
    from cnnzoo.tuning import distributed, engine

    if distributed.is_chief() or distributed.is_worker():
        training_backend.check_distributed_search()  # keras-tuner's chief/worker mode: TensorFlow only
    if distributed.is_worker():
        options = dataclasses.replace(options, overwrite=False)  # only the chief may wipe the shared directory
    kt_tuner = engine.make_tuner(hm, options, on_trial=on_trial)
    direction = kt_tuner.oracle.objective.direction
    if announce:
        print(_start_line(name, options, kt_tuner), flush=True)
    if early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor=options.objective, patience=early_stopping, mode=direction)
        )
    start = time.perf_counter()
    if distributed.is_chief():
        kt_tuner.oracle.verbose = 0  # keras-tuner's per-trial printout; progress is reported by the workers
        distributed.serve_chief(kt_tuner)
    else:
        # the datasets shuffle themselves; Keras warns when fit's shuffle=True meets one
        kt_tuner.search(
            inputs.train,
            validation_data=inputs.validation,
            shuffle=False,
            epochs=options.max_epochs,
            callbacks=callbacks,
            verbose=0,
        )
    seconds = time.perf_counter() - start
    project_dir = Path(kt_tuner.project_dir)
    result = TuneResult(
        name=name,
        tuner=options.kind,
        objective=options.objective,
        direction=direction,
        directory=project_dir,
        trials=collect(project_dir),
        seconds=seconds,
        hypermodel=hm,
    )
    return best.with_best(result, project_dir, hm, load_best)


def _start_line(name, options, kt_tuner):
    """What a search is about to run, and where: the first progress line."""
    trials = "one Hyperband iteration" if options.max_trials is None else f"up to {plural(options.max_trials, 'trial')}"
    try:
        there = len(kt_tuner.oracle.trials)
    except AttributeError:  # a distributed worker's oracle is the chief's, behind gRPC: it does not say
        there = 0
    if not there:
        resuming = ""
    elif options.max_trials is not None and there >= options.max_trials:
        resuming = f"; all {plural(there, 'trial')} done already (a larger max_trials runs more)"
    else:
        resuming = f"; {plural(there, 'trial')} there already, resuming"
    return (
        f"tune {name}: {options.kind} search, {trials} of at most {plural(options.max_epochs, 'epoch')} each, "
        f"in {kt_tuner.project_dir}{resuming}"
    )
