"""Image arrays for training: checked, split stratified, fitted to the model's input, fed by index.

Used by `cnnzoo.data.prepare` for `(x, y)`, `(x, y, x_val, y_val)` and
`cnnzoo.data.Arrays` data. Arrays are never embedded in a TensorFlow graph:
the pipeline is a dataset of image indices whose images are gathered from
the NumPy arrays with `tf.numpy_function` batch by batch, so any size of array
works, no graph holds a copy, and no cache duplicates the array (it is in memory
already); only a batch at a time becomes float32. TensorFlow is imported inside functions.
"""

import numpy as np

from cnnzoo.data.images import resize_array, to_channels
from cnnzoo.data.split import stratified_split
from cnnzoo.errors import DataError

__all__ = ["check_arrays", "split_arrays", "fit_images", "fit_up_front", "array_dataset", "EAGER_RESIZE_BYTES"]

EAGER_RESIZE_BYTES = 2**30  # arrays whose resized copy is larger are resized batch by batch instead


def check_arrays(x, y, what="data"):
    """Checks images and integer labels; returns them as arrays (x NHWC, y int64 [N]).

    Args:
        x: images, `[N, height, width, channels]` or `[N, height, width]` (grayscale), 0-255.
        y: integer class ids `[N]` (or `[N, 1]`).
        what: how the error names the pair: `"data"` or `"validation data"`.

    Returns:
        `(x, y)`.

    Example:

    >>> x, y = check_arrays(np.zeros((4, 8, 8)), [0, 1, 0, 1])
    >>> x.shape, y.dtype
    ((4, 8, 8, 1), dtype('int64'))
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 3:
        x = x[..., None]  # grayscale without a channel axis
    if x.ndim != 4 or x.dtype.kind not in "uif" or x.shape[-1] not in (1, 3, 4):
        raise DataError(
            f"`{what}` images must be a numeric array of shape (N, height, width, channels) with 1, "
            f"3 or 4 channels, 0-255. Received: shape={x.shape}, dtype={x.dtype}. Stack the images "
            f"with np.stack(images)."
        )
    if y.ndim == 2 and y.shape[1] > 1:
        raise DataError(
            f"`{what}` labels must be integer class ids, not one-hot. Received: shape={y.shape}. Pass y.argmax(axis=1)."
        )
    y = y.reshape(-1) if y.ndim == 2 else y
    if y.ndim != 1 or len(x) != len(y):
        raise DataError(
            f"`{what}` needs one label per image. Received: {len(x)} images, labels of shape "
            f"{y.shape}. Pass y with shape ({len(x)},)."
        )
    if not len(x):
        raise DataError(f"`{what}` must hold at least one image. Received: x of shape {x.shape}.")
    if y.dtype.kind not in "iu" or y.min() < 0:
        raise DataError(
            f"`{what}` labels must be integers >= 0 (class ids). Received: dtype={y.dtype}, smallest "
            f"label {y.min()}. Map the labels to 0..num_classes-1, e.g. with "
            f"np.unique(y, return_inverse=True)[1]."
        )
    return x, y.astype(np.int64)


def split_arrays(y, validation_split, seed):
    """`(train_idx, val_idx)`, each in array order, of a stratified split seeded by `seed` (as folders split)."""
    present, compact = np.unique(y, return_inverse=True)  # labels absent from y are no classes to split
    train_idx, val_idx, _ = stratified_split(compact, len(present), validation_split, seed, shuffle=False)
    return np.sort(np.asarray(train_idx, dtype=np.int64)), np.sort(np.asarray(val_idx, dtype=np.int64))


def fit_images(x, input_shape):
    """Images `[n, h, w, c]` converted to `input_shape`'s channels and resized to its size, as files are.

    Channels follow `to_channels` (gray repeated, alpha dropped, RGB to luma)
    and the size `resize_array` (Pillow bilinear, as `load_image`). uint8
    images stay uint8; others become float32.
    """
    height, width, channels = input_shape
    x = to_channels(x, channels)
    x = x if x.dtype == np.uint8 else x.astype(np.float32, copy=False)
    if x.shape[1:3] == (height, width):
        return x
    resized = (
        np.stack([resize_array(image, (height, width)) for image in x])
        if len(x)
        else np.zeros((0, height, width, channels), np.float32)
    )
    return resized.astype(np.uint8) if x.dtype == np.uint8 else resized  # Pillow resized uint8 exactly


def fit_up_front(x, input_shape):
    """`fit_images(x, input_shape)` when the result takes at most `EAGER_RESIZE_BYTES`, else `x` as it is
    (`array_dataset` then fits each batch as it gathers it). Images already of `input_shape` are
    returned as they are, whatever their dtype: no whole-array float32 copy."""
    height, width, channels = input_shape
    if x.shape[1:] == tuple(input_shape):
        return x
    per_image = height * width * channels * (1 if x.dtype == np.uint8 else 4)
    return fit_images(x, input_shape) if per_image * len(x) <= EAGER_RESIZE_BYTES else x


def array_dataset(x, y, idx, input_shape, batch_size, shuffle=False, seed=0, layers=()):
    """A tf.data pipeline of `(float32 images, int32 labels)` batches of `x[idx]`, `y[idx]`.

    Only the indices enter the TensorFlow graph; each batch of images is
    gathered from the NumPy array with `tf.numpy_function` (and fitted to
    `input_shape` there unless `fit_up_front` did it), every epoch: the
    array is never copied whole, to float32 or into a cache. With
    `shuffle` the order is reshuffled every epoch from `seed`; `layers`
    augment training batches.
    """
    import tensorflow as tf

    height, width, channels = input_shape
    labels = y.astype(np.int32)

    def gather(batch):
        return fit_images(x[batch], input_shape).astype(np.float32, copy=False), labels[batch]

    def load(batch):
        images, batch_labels = tf.numpy_function(gather, [batch], (tf.float32, tf.int32), stateful=False)
        images.set_shape((None, height, width, channels))
        batch_labels.set_shape((None,))
        return images, batch_labels

    ds = tf.data.Dataset.from_tensor_slices(np.asarray(idx, dtype=np.int64))
    if shuffle:  # shuffles indices only: 8 bytes an image
        ds = ds.shuffle(len(idx), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(load, num_parallel_calls=tf.data.AUTOTUNE)  # keeps the order and the cardinality
    if layers:
        # one batch at a time: the layers' seed state then advances in batch order, and a seeded run repeats
        ds = ds.map(lambda images, batch_labels: (_augmented(images, layers), batch_labels))
    return ds.prefetch(tf.data.AUTOTUNE)


def _augmented(images, layers):
    for layer in layers:
        images = layer(images, training=True)
    return images
