"""Gradients of a model's scores with respect to a tensor inside it (Grad-CAM) or to its input (filters).

TensorFlow and PyTorch record what a forward pass computed and differentiate
with respect to any tensor it produced: a `GradientTape` watching the input,
`torch.autograd.grad` from an input that requires a gradient. JAX
differentiates functions of their arguments instead, so the forward pass takes
an `offset`: a zero tensor that it adds to the tensor in question where that
tensor is made, before anything reads it; the gradient with respect to the
offset is the gradient with respect to the tensor (`jax.vjp`, one forward pass).
"""

import numpy as np

from cnnzoo.backend import dispatch

__all__ = ["feature_map_and_gradient"]


def feature_map_and_gradient(forward, x, shape, choose=None):
    """A tensor a forward pass computes, and the gradient of chosen scores with respect to it.

    Args:
        forward: `forward(x, offset) -> (tensor, scores)`: runs the model on
            `x` and returns the tensor to differentiate with respect to (a
            feature map, or `x` itself) and scores `[N, K]`. `offset` is None,
            or a float32 zero tensor of `shape` that `forward` must add to
            that tensor where it is made, before the layers after it read it
            (how JAX reaches it).
        x: a float32 array, the model's input.
        shape: the tensor's shape, batch axis included.
        choose: None to differentiate the sum of all scores, or a function of
            the scores as a float32 NumPy array `[N, K]` returning one index
            per row: the sum of `scores[i, chosen[i]]` is differentiated (it may
            raise, e.g. on scores of the wrong rank).

    Returns:
        `(tensor, gradient, scores)` as float32 NumPy arrays.

    Example:

    >>> fmap, grads, scores = feature_map_and_gradient(forward, batch, (1, 8, 8, 64), np.argmax)  # doctest: +SKIP
    """
    implementation = dispatch("Differentiating a model", tensorflow=_tensorflow, jax=_jax, torch=_torch)
    return implementation(forward, np.asarray(x, np.float32), tuple(int(d) for d in shape), choose)


def _picked(choose, scores):
    """Row indices into `scores` (NumPy `[N, K]`), or None for all of them."""
    return None if choose is None else np.asarray(choose(scores), np.int32).reshape(-1)


def _tensorflow(forward, x, shape, choose):
    import tensorflow as tf

    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)  # records every op, frozen (non-trainable) layers included
        tensor, scores = forward(x, None)
        scores = tf.cast(scores, tf.float32)
        chosen = _picked(choose, np.asarray(scores))
        score = tf.reduce_sum(scores if chosen is None else tf.gather(scores, chosen, axis=1, batch_dims=1))
    gradient = tape.gradient(score, tensor)
    if gradient is None:  # the scores do not depend on it
        gradient = tf.zeros_like(tensor)
    return _numpy(tensor), _numpy(gradient), np.asarray(scores)


def _torch(forward, x, shape, choose):
    import torch
    from keras import ops

    x = ops.convert_to_tensor(x).requires_grad_(True)  # frozen layers' outputs then require a gradient too
    with torch.enable_grad():
        tensor, scores = forward(x, None)
        scores = scores.float()
        chosen = _picked(choose, _numpy(scores))
        if chosen is None:
            score = scores.sum()
        else:
            rows = torch.as_tensor(chosen, dtype=torch.int64, device=scores.device)[:, None]
            score = torch.gather(scores, 1, rows).sum()
        (gradient,) = torch.autograd.grad(score, tensor, allow_unused=True)
    if gradient is None:  # the scores do not depend on it
        gradient = torch.zeros_like(tensor)
    return _numpy(tensor), _numpy(gradient), _numpy(scores)


def _jax(forward, x, shape, choose):
    import jax
    import jax.numpy as jnp

    x = jnp.asarray(x)

    def scores_of(offset):
        tensor, scores = forward(x, offset)
        return scores.astype(jnp.float32), tensor

    scores, pullback, tensor = jax.vjp(scores_of, jnp.zeros(shape, jnp.float32), has_aux=True)
    chosen = _picked(choose, _numpy(scores))
    if chosen is None:
        weights = jnp.ones_like(scores)
    else:
        weights = jax.nn.one_hot(jnp.asarray(chosen), scores.shape[-1], dtype=scores.dtype)
    (gradient,) = pullback(weights)
    return _numpy(tensor), _numpy(gradient), _numpy(scores)


def _numpy(tensor):
    from keras import ops

    return np.asarray(ops.convert_to_numpy(ops.cast(tensor, "float32")), np.float32)
