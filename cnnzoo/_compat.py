"""Every use of Keras and keras-tuner internals, in one place.

Everywhere else cnnzoo uses public Keras and keras-tuner APIs. What they do not
offer is done here; each item names the upstream issue or the missing API, and
`tests/test_compat.py` fails loudly (nothing here silently falls back) when an
installed Keras or keras-tuner stops providing what an item relies on. The
versions these were written and tested against are pinned in pyproject.toml
(`keras>=3.3,<3.16`, `keras-tuner>=1.4.7,<1.5`); `check()` lists anything missing.

Keras (TensorFlow backend):
- `multi_worker_build_fix`: keras-team/keras#20585, Keras 3 `fit` under
  MultiWorkerMirroredStrategy (`Model._maybe_symbolic_build`,
  `Model._symbolic_build`, `keras.src.backend.tensorflow.trainer.reduce_per_replica`).
- `symbolic_build`: creates a compiled model's optimizer and metric variables
  before `fit` traces its first step (`Model._symbolic_build`); Keras otherwise
  creates them while tracing (keras-team/keras#19005), which makes the step
  trace twice and leaves graphs behind after each keras-tuner trial.
- `first_call`: the tensors a layer was first called on in a Functional graph
  (`Layer._inbound_nodes`); Keras 3 has no public node API (keras-team/keras#20267,
  keras-team/keras#19278).
- `flatten_layers`: every sub-layer of a layer, nested models and blocks included
  (`Layer._flatten_layers`); `Model.layers` is not recursive.
- `keras_seed_state`, `restore_keras_seed_state`: the global seed and `SeedGenerator`
  that `keras.utils.set_random_seed` replaces (`keras.src.backend.common.global_state`);
  Keras has no public getter, and cnnzoo restores the caller's state after a run.

keras-tuner 1.4 (its distributed chief/worker and resume machinery has no public API):
- `kt_module(name)`: modules under `keras_tuner.src` (`engine.trial`,
  `engine.tuner_utils`, `distribute.utils`, `distribute.oracle_chief`, `protos`).
- `requeue_trial`, `is_duplicate`: an oracle's retry queue (`Oracle._retry_queue`)
  and its check for values already proposed (`Oracle._duplicate`).
- `checkpoint_path`, `copied_callbacks`, `tensorboard_dir`, `build_and_fit`,
  `is_worker_tuner`: private methods of `keras_tuner.Tuner`.
- `TUNER_HOOKS`: the private methods that `cnnzoo.tuning.engine`'s oracles and
  tuners override; each must still exist upstream.
"""

import importlib
import inspect

__all__ = [
    "multi_worker_build_fix",
    "symbolic_build",
    "first_call",
    "flatten_layers",
    "keras_seed_state",
    "restore_keras_seed_state",
    "kt_module",
    "is_duplicate",
    "requeue_trial",
    "checkpoint_path",
    "copied_callbacks",
    "tensorboard_dir",
    "build_and_fit",
    "is_worker_tuner",
    "TUNER_HOOKS",
    "check",
]

# (class path, method name): the keras-tuner private hooks cnnzoo's subclasses override.
TUNER_HOOKS = (
    ("keras_tuner.Oracle", "_random_values"),
    ("keras_tuner.Oracle", "_duplicate"),
    ("keras_tuner.Oracle", "_retry_queue"),
    ("keras_tuner.Tuner", "_activate_all_conditions"),
    ("keras_tuner.Tuner", "_try_build"),
    ("keras_tuner.Tuner", "_build_hypermodel"),
    ("keras_tuner.Tuner", "_get_checkpoint_fname"),
    ("keras_tuner.Tuner", "_deepcopy_callbacks"),
    ("keras_tuner.Tuner", "_configure_tensorboard_dir"),
    ("keras_tuner.Tuner", "_build_and_fit_model"),
    ("keras_tuner.Tuner", "_is_worker"),
)
_KT_MODULES = ("engine.trial", "engine.tuner_utils", "distribute.utils", "distribute.oracle_chief", "protos")
_KERAS_MODEL_METHODS = ("_symbolic_build", "_maybe_symbolic_build", "_flatten_layers")


# ------------------------------------------------------------------ Keras


def symbolic_build(model, data_batch):
    """Creates a compiled model's optimizer and metric variables from one batch's shapes (no training)."""
    model._symbolic_build(data_batch=data_batch)
    return model


def first_call(layer):
    """`(input_tensors, output_tensors)` of a layer's first call in a Functional graph."""
    node = layer._inbound_nodes[0]
    return list(node.input_tensors), list(node.output_tensors)


def flatten_layers(layer):
    """`layer` and every sub-layer inside it, recursively (nested models, blocks, wrappers)."""
    return list(layer._flatten_layers(include_self=True, recursive=True))


def multi_worker_build_fix(model):
    """Lets Keras 3 `fit`/`evaluate` run under MultiWorkerMirroredStrategy; returns `model`.

    Keras 3 (3.15 included; keras-team/keras#20585) fails two ways with more
    than one worker, both in code that only the multi-worker path reaches:

    1. It builds a model by `strategy.reduce("MEAN", batch)` on the first
       distributed batch, but a batch is an `(images, labels)` tuple and the
       strategy reduces one value, not a tuple ("Attempt to convert a value
       (PerReplica:...) with an unsupported type"). The reduce only reads the
       batch's shapes and dtypes: this model's `_maybe_symbolic_build` reads
       them from the worker's first local replica instead.
    2. Each train/test step reduces its scalar logs (loss, accuracy) with
       `strategy.reduce("MEAN", v, axis=0)`, and a scalar has no axis 0
       ("Invalid reduction dimension 0 for input with 0 dimensions"). Keras'
       `reduce_per_replica` is wrapped once so that, for this strategy only,
       scalars are averaged across replicas (`axis=None`); every other value
       and strategy goes through Keras unchanged.

    Other strategies are left alone.
    """
    import tensorflow as tf

    strategy = getattr(model, "distribute_strategy", None)  # TensorFlow-backend models only
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return model
    _patch_scalar_reduce()

    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def _maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(local, next(it))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = _maybe_symbolic_build
    return model


def _patch_scalar_reduce():
    import tensorflow as tf
    from keras import tree

    trainer = importlib.import_module("keras.src.backend.tensorflow.trainer")

    original = trainer.reduce_per_replica
    if getattr(original, "_cnnzoo_scalar_fix", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return original(values, strategy, reduction)

        def one(v):
            parts = strategy.experimental_local_results(v) if v is not None else ()
            if parts and all(tf.is_tensor(t) and t.shape.rank == 0 for t in parts):
                return strategy.reduce("MEAN", v, axis=None)
            return original(v, strategy, reduction)

        return tree.map_structure(one, values)

    reduce_per_replica._cnnzoo_scalar_fix = True
    trainer.reduce_per_replica = reduce_per_replica


_SEED_ATTRIBUTES = ("global_random_seed", "global_seed_generator")


def keras_seed_state():
    """The Keras global seed and seed generator, as `keras.utils.set_random_seed` leaves them."""
    global_state = importlib.import_module("keras.src.backend.common.global_state")
    return {name: global_state.get_global_attribute(name) for name in _SEED_ATTRIBUTES}


def restore_keras_seed_state(state):
    """Puts back what `keras_seed_state` returned."""
    global_state = importlib.import_module("keras.src.backend.common.global_state")
    for name, value in state.items():
        global_state.set_global_attribute(name, value)


# ------------------------------------------------------------------ keras-tuner


def kt_module(name):
    """A module under `keras_tuner.src`, e.g. `kt_module("engine.trial")`."""
    if name not in _KT_MODULES:
        raise ValueError(f"`name` must be one of {_KT_MODULES}. Received: name={name!r}.")
    return importlib.import_module(f"keras_tuner.src.{name}")


def is_duplicate(oracle, values):
    """True when the oracle has already proposed these hyperparameter values."""
    return oracle._duplicate(values)


def requeue_trial(oracle, trial_id):
    """Puts `trial_id` back on the oracle's retry queue: the next tuner that asks runs it again."""
    oracle._retry_queue.append(trial_id)


def checkpoint_path(tuner, trial_id):
    """Where keras-tuner keeps a trial's best weights (`<trial dir>/checkpoint.weights.h5`)."""
    return tuner._get_checkpoint_fname(trial_id)


def copied_callbacks(tuner, callbacks):
    """Deep copies of the user's callbacks for one execution of a trial."""
    return tuner._deepcopy_callbacks(callbacks)


def tensorboard_dir(tuner, callbacks, trial, execution):
    """Points any TensorBoard callback at the trial's own log directory."""
    tuner._configure_tensorboard_dir(callbacks, trial, execution)


def build_and_fit(tuner, trial, *args, **kwargs):
    """Builds a trial's model and fits it (keras-tuner's own step, with its callbacks)."""
    return tuner._build_and_fit_model(trial, *args, **kwargs)


def is_worker_tuner(tuner):
    """True for a tuner running as a worker of a distributed search."""
    return tuner._is_worker()


# ------------------------------------------------------------------ the check


def check():
    """Lists what this module relies on and the installed Keras / keras-tuner lack.

    Returns:
        A list of strings, empty when everything is there.

    Example:

    >>> check()
    []
    """
    import keras
    import keras_tuner

    missing = []
    for name in _KERAS_MODEL_METHODS:
        if not callable(getattr(keras.Model, name, None)):
            missing.append(f"keras.Model.{name}")
    inputs, dense = keras.Input((2,)), keras.layers.Dense(1)
    outputs = dense(inputs)
    try:
        if first_call(dense) != ([inputs], [outputs]):
            missing.append("keras.layers.Layer._inbound_nodes (other contents)")
    except (AttributeError, IndexError, TypeError):
        missing.append("keras.layers.Layer._inbound_nodes")
    import keras.src.backend.common.global_state as global_state
    import keras.src.random.seed_generator as seed_generator
    import keras.src.utils.rng_utils as rng_utils

    if (seed_generator.GLOBAL_SEED_GENERATOR, rng_utils.GLOBAL_RANDOM_SEED) != tuple(reversed(_SEED_ATTRIBUTES)):
        missing.append(f"keras global seed attributes {_SEED_ATTRIBUTES}")
    if not callable(getattr(global_state, "get_global_attribute", None)):
        missing.append("keras.src.backend.common.global_state.get_global_attribute")
    try:
        trainer = importlib.import_module("keras.src.backend.tensorflow.trainer")
        if not callable(getattr(trainer, "reduce_per_replica", None)):
            missing.append("keras.src.backend.tensorflow.trainer.reduce_per_replica")
    except ImportError:
        missing.append("keras.src.backend.tensorflow.trainer")
    for name in _KT_MODULES:
        try:
            importlib.import_module(f"keras_tuner.src.{name}")
        except ImportError:
            missing.append(f"keras_tuner.src.{name}")
    for cls_path, attr in TUNER_HOOKS:
        cls = getattr(keras_tuner, cls_path.split(".")[1])
        if attr == "_retry_queue":
            source = inspect.getsource(cls.__init__)
            if "self._retry_queue" not in source:
                missing.append(f"{cls_path}.{attr}")
        elif not callable(getattr(cls, attr, None)):
            missing.append(f"{cls_path}.{attr}")
    return missing
