"""What must differ per Keras backend, one small module per concern, one function per backend.

As Keras's own `keras/src/backend/<name>/`, each concern module here defines
`_tensorflow`, `_jax` and `_torch` implementations and one public function
that picks the one for the backend Keras runs on (`dispatch`). Workflows
call those public functions and never test the backend name themselves.

- `__init__`: `name` (the backend Keras runs on) and `dispatch`;
- `training`: `jit_compile`, `steps_per_execution_limit`, `host_batch`, `check_strategy`,
  `check_distributed_search`;
- `export`: `converters_in_process` (where `cnnzoo.export` runs its converters);
- `inference`: `compiled_forward`, a model's compiled inference call (numpy in, numpy out);
- `gradients`: `feature_map_and_gradient`, the gradient of a model's scores
  with respect to a feature map inside it or its input (Grad-CAM, filters):
  a `GradientTape`, PyTorch autograd, or `jax.vjp` through a zero offset.

Importing this package imports no TensorFlow, Keras or backend library.
"""

from cnnzoo.errors import BackendError

__all__ = ["name", "dispatch", "BACKENDS"]

BACKENDS = ("tensorflow", "jax", "torch")


def name():
    """The Keras backend in use: `"tensorflow"`, `"jax"` or `"torch"` (`KERAS_BACKEND`, or Keras's config)."""
    import keras

    return keras.config.backend()


def dispatch(what, **implementations):
    """The implementation of `what` for the backend Keras runs on.

    Args:
        what: what the caller does, for the error (e.g. `"compiled inference"`).
        **implementations: `tensorflow=fn, jax=fn, torch=fn`; a backend left
            out has no implementation of `what`.

    Returns:
        The function for `name()`.

    Example:

    >>> forward = dispatch("compiled inference", tensorflow=_tensorflow, jax=_jax, torch=_torch)  # doctest: +SKIP
    """
    backend = name()
    found = implementations.get(backend)
    if found is None:
        supported = ", ".join(sorted(implementations))
        raise BackendError(
            f"{what} is not available on the Keras backend {backend!r}; it runs on {supported}. "
            f"Received: KERAS_BACKEND={backend!r}. Set KERAS_BACKEND to one of them before Keras is imported."
        )
    return found
