"""The tf.data pipeline of an image folder's files: decoded, cached, shuffled, batched, prefetched.

`image_folder` (`cnnzoo.data.folders`) lists and checks the files, then builds
its training and validation datasets with `folder_dataset`, passing what both
share as one `DatasetSettings`. Decoding is `cnnzoo.data.decoding`; the cache
is in memory, in files named by `fingerprint`, or none (`cnnzoo.data.memory`
plans it). TensorFlow is imported inside the functions that need it.
"""

import hashlib
import os
from dataclasses import dataclass, field

from cnnzoo.data.decoding import decoded_images

__all__ = ["DatasetSettings", "folder_dataset", "fingerprint"]

_SHUFFLE_BYTES = 512 * 2**20  # the shuffle buffer holds at most this much decoded image data


@dataclass(frozen=True)
class DatasetSettings:
    """What the training and validation datasets of one image folder share.

    `image_size` is `(height, width)`; `plan` the `cnnzoo.data.memory.CachePlan`;
    `seed` seeds the shuffling; `route` maps each file to its decoding route
    (`cnnzoo.data.decoding.routes`); `skipped` is the folder's `SkippedFiles`,
    which decoding failures join; `tag` marks a worker's cache files
    (`"-w0of2"`; empty for one worker).
    """

    image_size: tuple
    channels: int
    interpolation: str
    batch_size: int
    plan: object
    seed: int
    route: dict = field(repr=False)
    skipped: object = field(repr=False)
    tag: str = ""


def folder_dataset(files, labels, subset, settings, shuffle=False, augment=(), sharded=False):
    """The batched dataset of `(float32 images 0-255, int32 labels)` of `files`.

    Args:
        files, labels: the dataset's files and their labels, in order.
        subset: `"train"` or `"validation"`, naming its cache files.
        settings: `DatasetSettings`.
        shuffle: bool; a new order every epoch (else file order).
        augment: Keras layers applied to each batch, in order.
        sharded: bool; the files are one worker's share: tf.data auto-sharding is off.
    """
    import tensorflow as tf

    s = settings
    order_seed, shuffle_bytes = _shuffling(s, shuffle)
    routes = [s.route[f] for f in files]
    ds = decoded_images(
        files, labels, routes, s.image_size, s.channels, s.interpolation, s.skipped, order_seed, in_order=not shuffle
    )
    ds = _cached(ds, files, labels, subset, s)
    if shuffle and shuffle_bytes:
        per_image = s.image_size[0] * s.image_size[1] * s.channels
        buffer = int(max(s.batch_size, min(len(files), shuffle_bytes // per_image)))
        ds = ds.shuffle(buffer, seed=s.seed, reshuffle_each_iteration=True)
    ds = ds.batch(s.batch_size)

    def to_float(x, y):  # a named function: AutoGraph cannot always find a lambda's source
        return tf.cast(x, tf.float32), y

    ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    if augment:

        def apply(x, y):
            for layer in augment:
                x = layer(x, training=True)
            return x, y

        ds = ds.map(apply)  # one batch at a time: the layers' seed state advances in batch order (repeatable)
    if sharded:
        ds = _unsharded(ds)
    return ds.prefetch(tf.data.AUTOTUNE)


def _shuffling(settings, shuffle):
    """`(order seed, shuffle buffer bytes)`: how the files are shuffled before and after decoding."""
    plan = settings.plan
    if shuffle and plan.mode != "memory":  # shuffle the files before decoding, so little decoded data waits
        # streamed: every epoch is shuffled already; cache files: mixed again in a buffer within a quarter budget
        return settings.seed, 0 if plan.mode == "none" else min(
            _SHUFFLE_BYTES, (plan.budget or _SHUFFLE_BYTES * 4) // 4
        )
    return None, _SHUFFLE_BYTES


def _cached(ds, files, labels, subset, settings):
    """`ds` cached as `settings.plan` says: in memory, in files named after what they hold, or not at all."""
    plan = settings.plan
    if plan.mode == "memory":
        return ds.cache()
    if plan.mode == "files":
        plan.directory.mkdir(parents=True, exist_ok=True)
        digest = fingerprint(files, labels, settings.image_size, settings.channels, settings.interpolation)
        return ds.cache(str(plan.directory / f"{subset}{settings.tag}-{digest}"))
    return ds


def _unsharded(ds):
    """`ds` marked as this worker's files only: Keras must not shard it again."""
    import tensorflow as tf

    # Each global batch of this worker's dataset takes `count` steps (tf.distribute rebatches it), so its batch
    # count is left unknown and Keras reads it to the end (all shards are the same size: the workers end together).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.filter(lambda x, y: True).with_options(options)


def fingerprint(files, labels, image_size, channels, interpolation):
    """A short hash of what a cache holds: files (with size and mtime), labels and decoding settings."""
    digest = hashlib.sha256(repr((image_size, channels, interpolation, "decoding-2")).encode())
    for f, y in zip(files, labels):
        st = os.stat(f)
        digest.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\0{y}\n".encode())
    return digest.hexdigest()[:16]
