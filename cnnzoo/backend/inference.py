"""A model's compiled forward pass: float32 NHWC numpy in, numpy out, on each Keras backend.

`compiled_forward(model)` returns `fn(batch) -> outputs` for inference
(`training=False`), compiled once the way its backend compiles best:

- TensorFlow: one `tf.function` traced for any batch size (`input_signature`
  `[None, *input shape]` float32), XLA off (`JIT_COMPILE`).
- JAX: `jax.jit` of `model.stateless_call`, given the variables' current
  values at every call (weights set after `fn` was made are used); compiled
  once per batch size.
- PyTorch: the model called eagerly under `torch.inference_mode()`
  (`torch.compile` was slower on CPU: docs/benchmarks.md).

`fn` holds only a weak reference to the model, so a cache of forward passes
keyed by model does not keep models alive; the caller keeps the model.
"""

import weakref

from cnnzoo.backend import dispatch

__all__ = ["compiled_forward", "JIT_COMPILE"]

# XLA on CPU: measured in benchmarks/bench_predict.py; `False` was as fast or faster
# (and the first call compiles in a fraction of the time), so the plain graph is used.
JIT_COMPILE = False


def compiled_forward(model):
    """The compiled inference call of `model` on the Keras backend in use.

    Args:
        model: a built `keras.Model` with one fixed-rank image input.

    Returns:
        `fn(batch) -> numpy outputs`: `batch` is a float32 numpy array
        `[N, H, W, C]` of any `N`; the outputs are what `model(batch,
        training=False)` returns, as numpy. On TensorFlow, `fn.compiled` is the
        `tf.function`.

    Example:

    >>> forward = compiled_forward(model)  # doctest: +SKIP
    >>> probs = forward(np.zeros((2, 32, 32, 3), "float32"))  # doctest: +SKIP
    """
    implementation = dispatch("compiled inference", tensorflow=_tensorflow, jax=_jax, torch=_torch)
    return implementation(model)


def _tensorflow(model):
    import tensorflow as tf
    from keras import ops, tree

    ref = weakref.ref(model)  # the cache must not keep the model alive
    shape = [None, *model.inputs[0].shape[1:]]
    compiled = tf.function(
        lambda x: ref()(x, training=False),
        jit_compile=JIT_COMPILE,
        input_signature=[tf.TensorSpec(shape, tf.float32)],
    )

    def forward(batch):
        return tree.map_structure(ops.convert_to_numpy, compiled(batch))

    forward.compiled = compiled
    return forward


def _jax(model):
    import jax
    from keras import ops, tree

    ref = weakref.ref(model)

    def pure(trainable, non_trainable, x):
        outputs, _ = ref().stateless_call(trainable, non_trainable, x, training=False)
        return outputs

    compiled = jax.jit(pure)

    def forward(batch):
        live = ref()
        trainable = [v.value for v in live.trainable_variables]  # read now: weights may have changed
        non_trainable = [v.value for v in live.non_trainable_variables]
        return tree.map_structure(ops.convert_to_numpy, compiled(trainable, non_trainable, batch))

    return forward


def _torch(model):
    import torch
    from keras import ops, tree

    ref = weakref.ref(model)

    def forward(batch):
        with torch.inference_mode():
            outputs = ref()(ops.convert_to_tensor(batch), training=False)
        return tree.map_structure(ops.convert_to_numpy, outputs)

    return forward
