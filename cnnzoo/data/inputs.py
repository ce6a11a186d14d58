"""`Inputs`, what `cnnzoo.data.prepare` returns, and how each form of data becomes one.

`cnnzoo.data.pipeline.prepare` checks the arguments and picks the form; these
build the `Inputs` of an `ImageFolder` (`from_folder`), of arrays
(`from_arrays`: split per class, fitted to the model and fed by index) and of a
`(train_ds, val_ds)` pair of batched tf.data datasets (`from_datasets`).
TensorFlow is imported only when a pipeline is built.
"""

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnzoo.data import arrays as arrays_lib
from cnnzoo.data.augment import augmentation_layers
from cnnzoo.errors import DataError

__all__ = ["Inputs", "from_folder", "from_arrays", "from_datasets", "dataset_size", "is_dataset", "no_validation"]


@dataclass
class Inputs:
    """Training and validation pipelines, whatever form the data came in.

    Attributes:
        train: dataset of shuffled (possibly augmented) `(images, labels)`
            batches: float32 images 0-255 `[batch, *input_shape]`, int32 labels.
        validation: dataset of validation batches, in a fixed order.
        plain_train: dataset of the same training images without augmentation
            (any order), for the feature cache; None when unknown.
        class_names: tuple of str, or None when the data does not say.
        num_train: int, training images.
        num_validation: int.
        batch_size: int.
        augmented: bool, whether `train` is augmented (or may be: a user dataset).
        skipped: tuple of `(path, reason)`.
        source: short description for a run's fingerprint.
        num_labels: largest label + 1, when the data says (arrays); else None.
        input_shape: `(height, width, channels)` of the images, or None when a
            dataset does not fix it.
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
    num_labels: int = None
    input_shape: tuple = None

    @property
    def steps_per_epoch(self):
        return max(1, math.ceil(self.num_train / self.batch_size))


def is_dataset(obj):
    """True for a `tf.data.Dataset` (False, without importing TensorFlow, when it is not loaded)."""
    tf = sys.modules.get("tensorflow")  # no TensorFlow loaded: not a dataset (and none is loaded to check)
    return tf is not None and isinstance(obj, tf.data.Dataset)


def no_validation(what):
    """The `DataError` for data that brings no validation images with `validation_split=0`."""
    return DataError(
        f"`validation_split` must be > 0 when `data` brings no validation images: fine-tuning and "
        f"search both score on held-out images. Received: validation_split=0 with {what}. Pass "
        f"validation_split=0.2 (a seeded share of each class), or pass validation images "
        f"((x, y, x_val, y_val) or (train_ds, val_ds))."
    )


def from_folder(folder, input_shape):
    """`Inputs` of an `ImageFolder`, which must match `input_shape` (None: any) and have validation images."""
    if input_shape is not None and tuple(folder.input_shape) != tuple(input_shape):
        h, w, c = input_shape
        fh, fw, fc = folder.input_shape
        raise DataError(
            f"`data` must match the model input {h}x{w}x{c}. Received: an ImageFolder of "
            f"{fh}x{fw}x{fc} images. Pass the folder path instead (it is read at the model's size), "
            f"or build it with image_size=({h}, {w}), channels={c}."
        )
    if folder.validation is None:
        raise DataError(
            f"`data` must include validation images, and this ImageFolder was read with "
            f"validation_split=0. Received: {folder!r}. Read it with validation_split > 0, e.g. "
            f"cnnzoo.data.image_folder(path, validation_split=0.2)."
        )
    # an augmented folder has no plain copy of its training set; a worker's shard is no whole training set
    plain = None if folder.augment or tuple(folder.shard)[1] > 1 else folder.train
    return Inputs(
        folder.train,
        folder.validation,
        plain,
        tuple(folder.class_names),
        folder.num_train,
        folder.num_validation,
        folder.batch_size,
        bool(folder.augment),
        folder.skipped,  # grows in epoch 1
        f"folder:{Path(folder.path).resolve()}",
        input_shape=tuple(folder.input_shape),
    )


def from_arrays(x, y, x_val, y_val, *, input_shape, validation_split, seed, batch_size, augment, class_names):
    """`Inputs` of `(x, y)` arrays split per class by `seed` (or with `(x_val, y_val)`), fitted to `input_shape`."""
    x, y = arrays_lib.check_arrays(x, y, "data")
    if x_val is None and y_val is None:
        if validation_split == 0:
            raise no_validation(f"(x, y) arrays of {len(x)} images")
        train_idx, val_idx = arrays_lib.split_arrays(y, validation_split, seed)
        x_val, y_val = x, y
    else:
        x_val, y_val = arrays_lib.check_arrays(x_val, y_val, "validation data")
        train_idx, val_idx = np.arange(len(x)), np.arange(len(x_val))
    if input_shape is None:  # the arrays' own size; 4 channels (RGBA) become RGB
        input_shape = (*x.shape[1:3], 3 if x.shape[-1] == 4 else x.shape[-1])
    own_validation = x_val is x
    x = arrays_lib.fit_up_front(x, input_shape)
    x_val = x if own_validation else arrays_lib.fit_up_front(x_val, input_shape)
    layers = augmentation_layers(augment, seed, num_train=len(train_idx))
    common = dict(input_shape=input_shape, batch_size=batch_size)
    train = arrays_lib.array_dataset(x, y, train_idx, shuffle=True, seed=seed, layers=layers, **common)
    validation = arrays_lib.array_dataset(x_val, y_val, val_idx, **common)
    plain = arrays_lib.array_dataset(x, y, train_idx, **common)
    num_labels = int(max(y.max(), y_val.max())) + 1
    source = f"arrays:{x.shape}:{int(y.sum())}:{len(val_idx)}:{int(y_val[val_idx].sum())}"
    return Inputs(
        train,
        validation,
        plain,
        class_names,
        len(train_idx),
        len(val_idx),
        batch_size,
        bool(layers),
        (),
        source,
        num_labels,
        tuple(input_shape),
    )


def from_datasets(train, validation, input_shape, class_names):
    """`Inputs` of a `(train_ds, val_ds)` pair of batched tf.data datasets, checked against `input_shape`."""
    if not is_dataset(validation):
        raise DataError(
            f"`data` must be (train_ds, val_ds) with both tf.data datasets: both workflows score on "
            f"held-out images. Received: val_ds of type {type(validation).__name__}. Pass a "
            f"validation dataset of the same form."
        )
    for which, ds in (("train_ds", train), ("val_ds", validation)):
        spec = ds.element_spec
        if not (isinstance(spec, tuple) and len(spec) == 2 and spec[0].shape.rank == 4):
            raise DataError(
                f"`data` datasets must yield (images [B, H, W, C], labels [B]) batches. "
                f"Received: {which} with element_spec={spec!r}. Batch the dataset with `.batch(n)`."
            )
        shape = tuple(spec[0].shape[1:])
        if input_shape is not None and None not in shape and shape != tuple(input_shape):
            raise DataError(
                f"`data` datasets must yield images of the model's input shape {tuple(input_shape)}. "
                f"Received: {which} of {shape} images. Resize them in the dataset, or build the "
                f"model for {shape} (leave `input_shape` out)."
            )
    batch_size, num_train = dataset_size(train)
    num_val = dataset_size(validation)[1]
    return Inputs(
        train,
        validation,
        train,
        class_names,
        num_train,
        num_val,
        batch_size,
        True,
        (),
        f"datasets:{num_train}:{num_val}",
        input_shape=input_shape,
    )


def dataset_size(ds):
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
        raise DataError(
            "`data` datasets must not be empty. Received: a dataset with 0 images. Check how the "
            "dataset is built (a filter or take that leaves nothing)."
        )
    return batch, total
