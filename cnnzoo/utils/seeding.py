"""Seeded runs that leave the caller's random state as it was."""

import contextlib
import random

import numpy as np

__all__ = ["seeded"]


@contextlib.contextmanager
def seeded(seed):
    """Runs the block with `keras.utils.set_random_seed(seed)`, then restores the caller's random state.

    `cnnzoo.finetune` and `cnnzoo.tune` are reproducible from their `seed`, and
    a caller who seeded Python, NumPy, TensorFlow or Keras for their own work
    finds those generators where they left them: `random` and `numpy.random`
    continue their sequences as if nothing had run in between, TensorFlow's
    global seed and Keras's global seed generator are put back.

    Args:
        seed: int, or None to leave every generator alone.

    Example:

    >>> with seeded(0):  # doctest: +SKIP
    ...     model = cnnzoo.get("digits_cnn")  # the same weights every time
    """
    if seed is None:
        yield
        return
    import keras
    import tensorflow as tf

    from cnnzoo import _compat

    python_state, numpy_state = random.getstate(), np.random.get_state()
    tf_seed = tf.compat.v1.random.get_seed(None)[0]  # the global seed, or None
    keras_state = _compat.keras_seed_state()
    keras.utils.set_random_seed(int(seed))
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        tf.random.set_seed(tf_seed)
        _compat.restore_keras_seed_state(keras_state)
