"""What `finetune` accepts as data, turned into one shape of tf.data pipelines.

Accepted: an image-folder path (read with `cnnzoo.data.image_folder` at the
model's input size and channels), an `ImageFolder`, `(x, y)` arrays (split
with `validation_split`), or a `(train_ds, val_ds)` pair of `tf.data`
datasets yielding `(images 0-255, integer labels)` batches. Also how those
batches reach Keras under MultiWorkerMirroredStrategy (`multi_worker_build_fix`).
"""

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnzoo.data.augment import augmentation_layers
from cnnzoo.data.folders import ImageFolder, image_folder
from cnnzoo.data.images import resize_array, to_channels
from cnnzoo.errors import ConfigError, DataError

__all__ = ["Inputs", "prepare", "settle_classes"]

@dataclass
class Inputs:
    """The training data of a `finetune` run, whatever form it came in.

    Attributes:
        train: dataset of shuffled (possibly augmented) `(images, labels)` batches.
        validation: dataset or None.
        plain_train: dataset of the same training images without augmentation
            (any order), for the feature cache; None when unknown.
        class_names: tuple of str, or None when the data does not say.
        num_train: int, training images.
        num_validation: int.
        batch_size: int.
        augmented: bool, whether `train` is augmented (or may be: a user dataset).
        skipped: tuple of `(path, reason)`.
        source: short description for the run's fingerprint.
    """

    train: object
    validation: object
    plain_train: object
    class_names: tuple
    num_train: int
    num_validation: int
    batch_size: int
    augmented: bool
    skipped: tuple
    source: str
    num_labels: int = None  # largest label + 1, when the data says (arrays)

    @property
    def steps_per_epoch(self):
        return max(1, math.ceil(self.num_train / self.batch_size))


def prepare(data, input_shape, batch_size=32, validation_split=0.2, seed=0, augment=False, class_names=None):
    """Turns any accepted `data` into `Inputs` for a model taking `input_shape` images."""
    size, channels = tuple(input_shape[:2]), int(input_shape[2])
    if isinstance(data, (str, os.PathLike)):
        folder = image_folder(data, image_size=size, channels=channels, batch_size=batch_size,
                                       validation_split=validation_split, seed=seed, augment=augment)
        return _from_folder(folder, size, channels)
    if isinstance(data, ImageFolder):
        return _from_folder(data, size, channels)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        first = data[0]
        if _is_dataset(first):
            return _from_datasets(data[0], data[1], class_names)
        if data[1] is None or _is_dataset(data[1]):
            raise DataError("`data` as a pair must be (train_ds, val_ds) tf.data datasets or (x, y) arrays. "
                            f"Received: data=({type(first).__name__}, {type(data[1]).__name__}).")
        return _from_arrays(data[0], data[1], size, channels, batch_size, validation_split, seed, augment)
    if _is_dataset(data):
        return _from_datasets(data, None, class_names)
    raise DataError(f"`data` must be an image-folder path, a cnnzoo.data.ImageFolder, (x, y) arrays or a "
                    f"(train_ds, val_ds) pair. Received: data of type {type(data).__name__}.")


def _is_dataset(obj):
    import tensorflow as tf

    return isinstance(obj, tf.data.Dataset)


def _from_folder(folder, size, channels):
    if tuple(folder.image_size) != size or folder.channels != channels:
        raise DataError(f"`data` must match the model input {size[0]}x{size[1]}x{channels}. Received: an "
                        f"ImageFolder of {folder.image_size[0]}x{folder.image_size[1]}x{folder.channels} images. "
                        f"Pass the folder path instead (finetune reads it at the model's size), or build it "
                        f"with image_size={size}, channels={channels}.")
    plain = folder.train
    if folder.augment:  # the same files without the augmentation maps (used only for the feature cache)
        plain = None
    return Inputs(folder.train, folder.validation, plain, tuple(folder.class_names), folder.num_train,
                  folder.num_validation, folder.batch_size, bool(folder.augment), tuple(folder.skipped),
                  f"folder:{Path(folder.path).resolve()}")


def _from_arrays(x, y, size, channels, batch_size, validation_split, seed, augment):
    import tensorflow as tf

    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.dtype.kind not in "uif":
        raise DataError(f"`data` arrays must be images [N, H, W, C] (0-255) and labels [N]. "
                        f"Received: x of shape {x.shape} and dtype {x.dtype}.")
    if y.ndim != 1 or len(y) != len(x) or y.dtype.kind not in "iu":
        raise DataError(f"`data` labels must be integers [N], one per image. Received: y of shape {y.shape} "
                        f"and dtype {y.dtype} for {len(x)} images.")
    if len(x) < 2 or y.min() < 0:
        raise DataError(f"`data` needs at least 2 images and labels >= 0. Received: {len(x)} images, "
                        f"smallest label {y.min() if len(y) else None}.")
    if x.shape[1:] != (*size, channels):
        x = np.stack([resize_array(to_channels(img, channels), size) for img in x])
    x = x.astype(np.float32, copy=False)
    split = validation_split
    if isinstance(split, bool) or not isinstance(split, (int, float)) or not 0 <= split < 1:
        raise DataError(f"`validation_split` must be a number in [0, 1). Received: validation_split={split!r}.")
    train_idx, val_idx = _split(y, validation_split, seed)
    layers = augmentation_layers(augment, seed)

    def batched(idx, shuffle):
        ds = tf.data.Dataset.from_tensor_slices((x[idx], y[idx].astype(np.int32)))
        if shuffle:
            ds = ds.shuffle(len(idx), seed=seed, reshuffle_each_iteration=True)
        return ds.batch(batch_size)

    train = batched(train_idx, True)
    if layers:
        train = train.map(lambda a, b: (_apply(layers, a), b), num_parallel_calls=tf.data.AUTOTUNE)
    validation = batched(val_idx, False).prefetch(2) if len(val_idx) else None
    return Inputs(train.prefetch(2), validation, batched(train_idx, False), None, len(train_idx), len(val_idx),
                  batch_size, bool(layers), (), f"arrays:{x.shape}:{int(y.sum())}", int(y.max()) + 1)


def _apply(layers, x):
    for layer in layers:
        x = layer(x, training=True)
    return x


def _split(y, validation_split, seed):
    if validation_split == 0:
        return np.arange(len(y)), np.arange(0)
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 else None
    try:
        train_idx, val_idx = train_test_split(idx, test_size=validation_split, random_state=seed, stratify=stratify)
    except ValueError as e:  # too few images for the split
        raise DataError(f"`validation_split` leaves no image on one side for {len(y)} images ({e}). Pass a "
                        f"different validation_split, or 0. Received: validation_split={validation_split!r}.") from e
    return np.sort(train_idx), np.sort(val_idx)


def _from_datasets(train, validation, class_names):
    import tensorflow as tf

    spec = train.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2 and len(spec[0].shape) == 4):
        raise DataError(f"`data` datasets must yield (images [B, H, W, C], labels [B]) batches. "
                        f"Received: element_spec={spec!r}. Batch the dataset with `.batch(n)`.")
    batch_size, num_train = _size(train)
    num_val = _size(validation)[1] if validation is not None else 0
    if validation is not None and not isinstance(validation, tf.data.Dataset):
        raise DataError(f"`data` must be (train_ds, val_ds) with both tf.data datasets (val_ds may be None). "
                        f"Received: val_ds of type {type(validation).__name__}.")
    return Inputs(train, validation, train, tuple(class_names) if class_names else None, num_train, num_val,
                  batch_size, True, (), f"datasets:{num_train}:{num_val}")


def _size(ds):
    """(batch size, number of images) of a batched dataset, reading it once if its length is unknown."""
    batches = int(ds.cardinality())
    if batches > 0:  # known length: read one batch; the last batch may be smaller (close enough for schedules)
        for images, _ in ds.take(1):
            return int(images.shape[0]), batches * int(images.shape[0])
    batch = None
    total = 0
    for images, _ in ds:
        n = int(images.shape[0])
        batch = batch or n
        total += n
    if not total:
        raise DataError("`data` datasets must not be empty. Received: a dataset with 0 images.")
    return batch, total


def settle_classes(inputs, num_classes, class_names, head_classes):
    """Settles the class count and names from the arguments, the data and the model's head."""
    names = tuple(class_names) if class_names else inputs.class_names
    if class_names and inputs.class_names and tuple(class_names) != inputs.class_names:
        raise ConfigError(f"`class_names` must match the data's classes {list(inputs.class_names)}. "
                          f"Received: class_names={list(class_names)!r}. Leave it out to use the folder names.")
    if num_classes is None:
        num_classes = len(names) if names else inputs.num_labels or head_classes
    if inputs.num_labels and isinstance(num_classes, int) and inputs.num_labels > num_classes:
        raise ConfigError(f"`num_classes` must exceed every label; the data has label {inputs.num_labels - 1}. "
                          f"Received: num_classes={num_classes!r}.")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"`num_classes` must be an integer >= 2. Received: num_classes={num_classes!r}.")
    if names and len(names) != num_classes:
        raise ConfigError(f"`num_classes` must equal the number of classes in the data ({len(names)}: "
                          f"{list(names)[:5]}...). Received: num_classes={num_classes!r}. Leave it out.")
    return num_classes, names or tuple(str(i) for i in range(num_classes))
