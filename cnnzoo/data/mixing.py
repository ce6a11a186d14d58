"""Soft training targets: one-hot labels, MixUp and CutMix on training batches.

MixUp (Zhang et al., 2018, arXiv:1710.09412) blends each image of a batch with
another and their labels alike, with a weight `lam ~ Beta(alpha, alpha)`;
CutMix (Yun et al., 2019, arXiv:1905.04899) pastes a random box of the other
image instead, `lam` being the share of the image kept. As in timm's `Mixup`
(mode "batch"): one `lam` per batch, each image paired with the batch in
reverse order (batches are shuffled, so the pairs are random), and with both
on, each batch picks one of the two with probability 1/2.

Written in a few TensorFlow ops rather than with `keras.layers.MixUp` /
`CutMix`, which Keras 3.3 (the oldest Keras cnnzoo supports) does not have.
Random numbers are stateless, seeded per batch from
`tf.data.Dataset.random(seed, rerandomize_each_iteration=True)`: the same seed
gives the same run, and every epoch mixes differently.
"""

from cnnzoo.errors import ConfigError
from cnnzoo.utils.checks import is_number

__all__ = ["soft_targets", "mix_batch", "check_alpha"]


def check_alpha(value, name):
    """`value` as a float alpha >= 0 (0: off); `ConfigError` otherwise."""
    if value is None or value is False:
        return 0.0
    if not is_number(value) or not 0 <= value <= 10:
        raise ConfigError(
            f"`{name}` must be a number in [0, 10]: the alpha of the Beta distribution the mixing "
            f"weight is drawn from (0: off). Received: {name}={value!r}. Try {name}=0.2 for MixUp, "
            f"1.0 for CutMix."
        )
    return float(value)


def soft_targets(dataset, num_classes, *, mixup=0.0, cutmix=0.0, seed=0):
    """Turns batches of `(images, integer labels)` into `(images, one-hot or mixed label distributions)`.

    Args:
        dataset: a batched `tf.data.Dataset` of `(images [B, H, W, C], labels [B])`
            (or features `[B, D]`, without CutMix).
        num_classes: int.
        mixup: alpha of MixUp's `Beta(alpha, alpha)` (0: off; 0.2 is usual).
        cutmix: alpha of CutMix's `Beta(alpha, alpha)` (0: off; 1.0 is usual).
        seed: int.

    Returns:
        A `tf.data.Dataset` of `(images, targets [B, num_classes] float32)`.

    Example:

    >>> train = soft_targets(inputs.train, 10, mixup=0.2)  # doctest: +SKIP
    """
    import tensorflow as tf

    mixup, cutmix = check_alpha(mixup, "mixup"), check_alpha(cutmix, "cutmix")

    def one_hot(images, labels):
        return images, tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=tf.float32)

    dataset = dataset.map(one_hot, num_parallel_calls=tf.data.AUTOTUNE)
    if not (mixup or cutmix):
        return dataset
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    mixed = tf.data.Dataset.zip((dataset, seeds)).map(
        lambda batch, s: mix_batch(*batch, tf.stack([s, tf.constant(seed, tf.int64)]), mixup, cutmix),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    cardinality = int(dataset.cardinality())  # zip with an infinite dataset keeps it; say it for Keras anyway
    return mixed.apply(tf.data.experimental.assert_cardinality(cardinality)) if cardinality >= 0 else mixed


def mix_batch(images, targets, seed, mixup=0.0, cutmix=0.0):
    """MixUp or CutMix of one batch with its reverse, from a stateless `seed` (a `[2]` int tensor).

    Args:
        images: float `[B, H, W, C]` (or `[B, D]` for MixUp only).
        targets: float `[B, K]` label distributions.
        seed: int64 tensor of shape `[2]`.
        mixup, cutmix: alphas (0: off); with both, one of the two per batch.

    Returns:
        `(images, targets)` mixed.

    Example:

    >>> x, t = mix_batch(x, tf.one_hot(y, 10), tf.constant([1, 2], tf.int64), mixup=0.2)  # doctest: +SKIP
    """
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(seed, 5)
    other_images, other_targets = tf.reverse(images, [0]), tf.reverse(targets, [0])
    images = tf.cast(images, tf.float32)
    other_images = tf.cast(other_images, tf.float32)

    def do_mixup():
        lam = _beta(seeds[0], mixup)
        return lam * images + (1 - lam) * other_images, lam

    def do_cutmix():
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        lam = _beta(seeds[1], cutmix)
        cut = tf.sqrt(1.0 - lam)  # the box takes 1 - lam of the image, before clipping at its borders
        cut_h = tf.cast(tf.cast(height, tf.float32) * cut, tf.int32)
        cut_w = tf.cast(tf.cast(width, tf.float32) * cut, tf.int32)
        cy = tf.random.stateless_uniform([], seeds[2], 0, height, tf.int32)
        cx = tf.random.stateless_uniform([], seeds[3], 0, width, tf.int32)
        y0, y1 = tf.maximum(cy - cut_h // 2, 0), tf.minimum(cy + cut_h // 2, height)
        x0, x1 = tf.maximum(cx - cut_w // 2, 0), tf.minimum(cx + cut_w // 2, width)
        rows, cols = tf.range(height), tf.range(width)
        inside = ((rows >= y0) & (rows < y1))[:, None] & ((cols >= x0) & (cols < x1))[None, :]
        mixed = tf.where(inside[None, :, :, None], other_images, images)
        kept = 1.0 - tf.cast((y1 - y0) * (x1 - x0), tf.float32) / tf.cast(height * width, tf.float32)
        return mixed, kept  # the label weight is the area actually kept

    if mixup and cutmix:
        pick = tf.random.stateless_uniform([], seeds[4]) < 0.5
        mixed, lam = tf.cond(pick, do_cutmix, do_mixup)
    else:
        mixed, lam = do_cutmix() if cutmix else do_mixup()
    return mixed, lam * targets + (1 - lam) * other_targets


def _beta(seed, alpha):
    """One draw of `Beta(alpha, alpha)` from two stateless gamma draws."""
    import tensorflow as tf

    pair = tf.random.stateless_gamma([2], seed, alpha=alpha)
    return pair[0] / tf.maximum(pair[0] + pair[1], 1e-12)
