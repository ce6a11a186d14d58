"""Training settings that differ per Keras backend: compilation, steps per call, batches, distribution.

- `jit_compile()`: what a fine-tuning stage passes to `model.compile`.
  TensorFlow: False (XLA measured slower on CPU for these models,
  docs/benchmarks.md); JAX: True (a JAX train step runs jit-compiled, 1.5x
  faster than uncompiled, issue 16); PyTorch: False (eager; `torch.compile`
  is not used for training).
- `steps_per_execution_limit()`: the most batches one compiled call may take
  (PyTorch: 1, Keras refuses more; else None, no limit).
- `host_batch(x)`: a batch from a tf.data pipeline as `train_on_batch` takes it
  (TensorFlow: as is; JAX and PyTorch: NumPy).
- `check_strategy(strategy)`: what `finetune(strategy=)` takes. TensorFlow: a
  `tf.distribute` strategy; JAX: a `keras.distribution.Distribution`
  (`DataParallel`); PyTorch: none. Anything else is a `BackendError` naming
  the alternative.
- `check_distributed_search()`: keras-tuner's chief/worker search (its
  `KERASTUNER_*` variables) runs on TensorFlow only (keras-tuner's
  distribution layer is TensorFlow's gRPC).
- `shardable(train, validation, images, batch_size)`: the tf.data batches a
  `fit` takes, cut so a data-parallel distribution can split each one over its
  devices. PyTorch: as they are. TensorFlow: under a MultiWorkerMirroredStrategy
  the validation batches are read whole by every worker, filled up with images
  weighted 0 (else as they are: `tf.distribute` splits uneven batches). JAX
  under a `keras.distribution` (`DataParallel`) over N devices: every batch
  must divide by N, so a training batch that does not is left out (as
  `drop_remainder` would) and a validation batch is filled up to a multiple of
  N with copies of its last image weighted 0, so every image counts once.
"""

from cnnzoo.backend import dispatch
from cnnzoo.errors import BackendError

__all__ = [
    "jit_compile",
    "steps_per_execution_limit",
    "host_batch",
    "check_strategy",
    "check_distributed_search",
    "shardable",
    "batch_shards",
]


def jit_compile():
    """`jit_compile` for a training stage's `compile` on this backend (see the module docstring)."""
    return dispatch("training", tensorflow=lambda: False, jax=lambda: True, torch=lambda: False)()


def steps_per_execution_limit():
    """The most batches per compiled training call on this backend, or None for no limit."""
    return dispatch("training", tensorflow=lambda: None, jax=lambda: None, torch=lambda: 1)()


def host_batch(x):
    """`x` (a tensor from a tf.data pipeline, or a tuple of them) as this backend's `train_on_batch` takes it."""
    return dispatch("training", tensorflow=_as_is, jax=_numpy, torch=_numpy)(x)


def check_strategy(strategy):
    """Raises `BackendError` unless `strategy` is None or runs on this backend (see the module docstring)."""
    if strategy is not None:
        dispatch("training", tensorflow=_as_is, jax=_strategy_jax, torch=_no_strategy_torch)(strategy)
    return strategy


def batch_shards():
    """How many parts a data-parallel distribution splits each batch into on this backend (1: none)."""
    return dispatch("training", tensorflow=lambda: 1, jax=_jax_batch_shards, torch=lambda: 1)()


def shardable(train, validation, images, batch_size):
    """`(train, validation)` tf.data batches as this backend's distribution can split them (module docstring).

    `images` is the number of training images and `batch_size` their batch size (so the training batches
    kept are known without reading the data, and Keras sees how many there are).
    """
    return dispatch("training", tensorflow=_tf_shardable, jax=_jax_shardable, torch=_unchanged)(
        train, validation, images, batch_size
    )


def _unchanged(train, validation, images, batch_size):
    return train, validation


def _tf_shardable(train, validation, images, batch_size):
    """Under a MultiWorkerMirroredStrategy every worker reads the whole validation set in whole batches.

    (Each worker's training files are an equal share already: `cnnzoo.data.memory.shard_files`.) A validation
    set sharded by tf.data gives the workers different numbers of batches, or splits a last, smaller batch
    unevenly: one worker then leaves the all-reduce (a crash with 27 images in batches of 4, issue 19).
    Unsharded and filled up with images weighted 0, every worker takes the same steps and each image counts once.
    """
    import tensorflow as tf

    if validation is None or not isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return train, validation
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return train, _filled(validation, batch_size).with_options(options)


def _jax_shardable(train, validation, images, batch_size):
    shards = _jax_batch_shards()
    if shards == 1:
        return train, validation
    if batch_size % shards or images < batch_size:
        fit = max(shards, batch_size // shards * shards)
        raise BackendError(
            f"`batch_size` must be a multiple of the {shards} devices the keras.distribution splits each batch "
            f"over, and at most the {images} training images. Received: batch_size={batch_size}. Use "
            f"batch_size={fit}{' with more images' if images < fit else ''}."
        )
    if images % batch_size % shards:  # the last, smaller batch cannot be split: left out, as drop_remainder does
        train = train.take(images // batch_size)
    return train, _filled(validation, shards) if validation is not None else None


def _filled(dataset, multiple):
    """`dataset`'s `(x, y)` batches filled up to a multiple of `multiple` with copies of their last image,
    weighted 0 (a third element, the sample weights, 1 for the real images)."""
    import tensorflow as tf

    def filled(x, y, *weight):
        n = tf.shape(x)[0]
        extra = (multiple - n % multiple) % multiple
        weight = tf.cast(weight[0], tf.float32) if weight else tf.ones([n], tf.float32)

        def grow(t, value=None):
            tail = tf.repeat(t[-1:], extra, axis=0) if value is None else tf.fill([extra], value)
            return tf.concat([t, tail], axis=0)

        return grow(x), grow(y), grow(weight, 0.0)

    return dataset.map(filled)


def _jax_batch_shards():
    import keras

    distribution = keras.distribution.distribution()
    mesh = getattr(distribution, "device_mesh", None)
    name = getattr(distribution, "batch_dim_name", None)
    if mesh is None or name not in mesh.axis_names:
        return 1
    return int(mesh.shape[list(mesh.axis_names).index(name)])


def check_distributed_search():
    """Raises `BackendError` where keras-tuner's distributed (chief/worker) search cannot run."""
    dispatch("training", tensorflow=_as_is, jax=_no_distributed_search, torch=_no_distributed_search)(None)


def _no_distributed_search(_):
    from cnnzoo.backend import name

    raise BackendError(
        "A distributed search (the KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT "
        f"variables are set) runs on the TensorFlow backend only. Received: KERAS_BACKEND={name()!r}. Run the "
        "chief and the workers with KERAS_BACKEND=tensorflow, or unset those variables to search in one process."
    )


def _as_is(x):
    return x


def _numpy(x):
    import numpy as np

    if isinstance(x, (tuple, list)):
        return type(x)(_numpy(v) for v in x)
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def _strategy_jax(strategy):
    import keras

    kinds = tuple(
        getattr(keras.distribution, n) for n in ("DataParallel", "ModelParallel") if hasattr(keras.distribution, n)
    )
    if isinstance(strategy, kinds):  # Keras exports no common base class
        return strategy
    raise BackendError(
        "`strategy` takes a tf.distribute strategy on the TensorFlow backend and a keras.distribution "
        f"(DataParallel) on JAX. Received: strategy={type(strategy).__name__} with KERAS_BACKEND='jax'. Pass "
        "strategy=keras.distribution.DataParallel() (or set it with keras.distribution.set_distribution), or "
        "set KERAS_BACKEND=tensorflow for a tf.distribute strategy."
    )


def _no_strategy_torch(strategy):
    raise BackendError(
        "`strategy` takes a tf.distribute strategy, which runs on the TensorFlow backend only. "
        f"Received: strategy={type(strategy).__name__} with KERAS_BACKEND='torch'. Keras has no multi-device "
        "training for PyTorch that cnnzoo drives; set KERAS_BACKEND=tensorflow (or jax with "
        "strategy=keras.distribution.DataParallel())."
    )
