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
- `check_strategy(strategy)`: `tf.distribute` strategies run on TensorFlow
  only; elsewhere a `BackendError` names the Keras alternative.
- `check_distributed_search()`: keras-tuner's chief/worker search (its
  `KERASTUNER_*` variables) runs on TensorFlow only (keras-tuner's
  distribution layer is TensorFlow's gRPC).
"""

from cnnzoo.backend import dispatch
from cnnzoo.errors import BackendError

__all__ = ["jit_compile", "steps_per_execution_limit", "host_batch", "check_strategy", "check_distributed_search"]


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
    """Raises `BackendError` unless `strategy` (a `tf.distribute` strategy) is None or runs on this backend."""
    if strategy is not None:
        dispatch("training", tensorflow=_as_is, jax=_no_strategy_jax, torch=_no_strategy_torch)(strategy)
    return strategy


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


def _no_strategy_jax(strategy):
    raise BackendError(
        "`strategy` takes a tf.distribute strategy, which runs on the TensorFlow backend only. "
        f"Received: strategy={type(strategy).__name__} with KERAS_BACKEND='jax'. Set KERAS_BACKEND=tensorflow "
        "for multi-device fine-tuning; on JAX, Keras's own keras.distribution.DataParallel needs every batch "
        "divisible by the device count, which cnnzoo's pipelines do not guarantee yet."
    )


def _no_strategy_torch(strategy):
    raise BackendError(
        "`strategy` takes a tf.distribute strategy, which runs on the TensorFlow backend only. "
        f"Received: strategy={type(strategy).__name__} with KERAS_BACKEND='torch'. Keras has no multi-device "
        "training for PyTorch that cnnzoo drives; set KERAS_BACKEND=tensorflow (or jax with "
        "keras.distribution.DataParallel)."
    )
