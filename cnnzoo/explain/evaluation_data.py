"""The labelled images a model is judged on, from any form of `data`, at the model's input size.

`cnnzoo.interpret` and `cnnzoo.evaluate` score a trained model on every image
they are given, where `cnnzoo.data.prepare` splits off a validation share for
training: a folder path is read whole (a test folder needs no
`validation_split=0`), `(x, y)` arrays are all scored, and the forms that
bring held-out images give those: an `Arrays` record its test part,
`(x, y, x_val, y_val)` and `(train_ds, val_ds)` their validation part, an
`ImageFolder` or `Inputs` its validation images (all of a folder read with
`validation_split=0`). A tf.data dataset or any iterable of `(images, labels)`
batches is read as it comes. Images are converted and resized to the model's
input as image files are (`cnnzoo.data.arrays.fit_images`).
"""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnzoo.data import arrays as arrays_lib
from cnnzoo.data.datasets import Arrays
from cnnzoo.data.folders import ImageFolder, image_folder
from cnnzoo.data.inputs import Inputs, is_dataset
from cnnzoo.errors import DataError, DataNotFoundError

__all__ = ["Labelled", "evaluation_data", "label_map", "ACCEPTED"]

ACCEPTED = (
    "an image-folder path, a cnnzoo.data.ImageFolder, (x, y) arrays, a cnnzoo.data.Arrays record such as "
    "cnnzoo.data.digits() (its test part), (x, y, x_val, y_val), a (train_ds, val_ds) pair, "
    "a tf.data dataset or an iterable of (images, labels) batches"
)


@dataclass(frozen=True)
class Labelled:
    """Labelled images to score a model on.

    Attributes:
        batches: `batches()` -> an iterator of `(images, labels)`: float32
            0-255 `[b, H, W, C]` at the model's input size, int64 labels `[b]`.
        class_names: the data's class names in label order, or None when it
            does not say (labels are then the model's class indices).
        sources: the image files in the order `batches` yields them, or None.
        description: a few words on what is scored (`"360 images of the folder
            'digits/test'"`), for reprs and titles.
        count: the number of images when known before reading, else None.
    """

    batches: object
    class_names: tuple
    sources: tuple
    description: str
    count: int = None


def evaluation_data(data, input_shape, batch_size=32):
    """`Labelled` images of `data` for a model taking `input_shape` = (height, width, channels) images.

    Args:
        data: see the module docstring (`ACCEPTED`).
        input_shape: the model's `(height, width, channels)`.
        batch_size: int, images per batch for folders and arrays.

    Returns:
        `Labelled`.

    Example:

    >>> labelled = evaluation_data("digits/test", (8, 8, 1))  # doctest: +SKIP
    >>> labelled.description  # doctest: +SKIP
    "360 images of the folder 'digits/test'"
    """
    input_shape = tuple(int(d) for d in input_shape)
    if isinstance(data, (str, os.PathLike)):
        return _folder_path(data, input_shape, batch_size)
    if isinstance(data, ImageFolder):
        return _image_folder(data, input_shape, batch_size)
    if isinstance(data, Inputs):
        if data.validation is None:
            raise DataError("`data` as `Inputs` must hold validation images. Received: Inputs without validation.")
        return Labelled(_dataset_batches(data.validation, input_shape), data.class_names, None, "validation images")
    if isinstance(data, Arrays):
        if data.x_test is None or not len(data.x_test):
            raise DataError("`data` as an Arrays record is scored on its test part. Received: a record without one.")
        labelled = _arrays(data.x_test, data.y_test, input_shape, batch_size, "test images")
        return Labelled(
            labelled.batches, tuple(data.class_names or ()) or None, None, labelled.description, labelled.count
        )
    if isinstance(data, (tuple, list)) and len(data) == 2 and is_dataset(data[0]) and is_dataset(data[1]):
        return Labelled(_dataset_batches(data[1], input_shape), None, None, "the validation dataset")
    if is_dataset(data):
        return Labelled(_dataset_batches(data, input_shape), None, None, "the dataset")
    if isinstance(data, (tuple, list)) and len(data) in (2, 4) and not all(map(_is_batch, data)):
        x, y = data[-2:]
        return _arrays(x, y, input_shape, batch_size, "validation images" if len(data) == 4 else "images")
    if hasattr(data, "__iter__") and not isinstance(data, (dict, bytes)):
        return Labelled(_dataset_batches(data, input_shape), None, None, "the batches given", None)
    raise DataError(f"`data` must be {ACCEPTED}. Received: data of type {type(data).__name__}.")


def _is_batch(item):
    """Whether `item` looks like one `(images [b, H, W, C], labels)` batch (not an array of images)."""
    return isinstance(item, (tuple, list)) and len(item) in (2, 3) and len(getattr(item[0], "shape", ())) == 4


def _folder_path(path, input_shape, batch_size):
    if not Path(path).expanduser().is_dir():
        raise DataNotFoundError(
            f"`data` as a path must be an existing folder of class sub-folders (`<path>/<class>/<image>`). "
            f"Received: data={str(path)!r}, which {'is not a folder' if Path(path).exists() else 'does not exist'}."
        )
    folder = image_folder(
        Path(path).expanduser(),
        image_size=input_shape[:2],
        channels=input_shape[2],
        validation_split=0,
        shuffle=False,
        batch_size=batch_size,
    )
    return Labelled(
        _dataset_batches(folder.train, input_shape),
        tuple(folder.class_names),
        tuple(str(f) for f in folder.train_files),
        f"{folder.num_train} images of the folder {str(path)!r}",
        folder.num_train,
    )


def _image_folder(folder, input_shape, batch_size):
    if folder.validation is not None:
        ds, files, what = folder.validation, folder.validation_files, "validation images"
    elif folder.augment:  # augmented training batches are no test: read the files again, as they are
        return _folder_path(folder.path, input_shape, batch_size)
    else:
        ds, files, what = folder.train, folder.train_files, "images"
    return Labelled(
        _dataset_batches(ds, input_shape),
        tuple(folder.class_names),
        tuple(str(f) for f in files) if folder.validation is not None else None,  # training batches: shuffled
        f"{len(files)} {what} of the folder {str(folder.path)!r}",
        len(files),
    )


def _arrays(x, y, input_shape, batch_size, what):
    x, y = arrays_lib.check_arrays(x, y, "data")

    def batches():
        for start in range(0, len(x), batch_size):
            chunk = arrays_lib.fit_images(x[start : start + batch_size], input_shape)
            yield np.asarray(chunk, np.float32), y[start : start + batch_size]

    return Labelled(batches, None, None, f"{len(x)} {what}", len(x))


def _dataset_batches(ds, input_shape):
    """`batches()` over a tf.data dataset or an iterable of `(images, labels[, weights])` batches."""
    used = []

    def batches():
        if used and not is_dataset(ds) and iter(ds) is ds:
            raise DataError(
                "`data` as a one-pass iterator (a generator) can be read once. Received: a spent "
                f"{type(ds).__name__}. Pass a list of batches or a tf.data dataset."
            )
        used.append(True)
        for batch in ds:
            if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
                raise DataError(
                    f"`data` batches must be (images, labels) pairs. Received: a batch of type {type(batch).__name__}."
                )
            x, y = _numpy(batch[0]), _numpy(batch[1]).astype(np.int64).reshape(-1)
            if x.ndim != 4 or len(x) != len(y):
                raise DataError(
                    f"`data` batches must hold images [batch, height, width, channels] and one label each. "
                    f"Received: images of shape {x.shape} with {len(y)} labels. Batch the dataset with `.batch(n)`."
                )
            if tuple(x.shape[1:]) != input_shape:
                x = arrays_lib.fit_images(x, input_shape)
            yield np.asarray(x, np.float32), y

    return batches


def _numpy(value):
    from keras import ops

    return np.asarray(value) if isinstance(value, np.ndarray) else np.asarray(ops.convert_to_numpy(value))


def label_map(data_names, model_names):
    """Data label -> model class index, by class name: an int array, or None where they are the same.

    A model without class names (`"0"`, `"1"`, ...) takes the data's classes in order.

    Example:

    >>> label_map(("owl", "robin"), ("heron", "owl", "robin")).tolist()
    [1, 2]
    """
    if data_names is None or tuple(data_names) == tuple(model_names):
        return None
    if all(name in model_names for name in data_names):
        return np.array([model_names.index(name) for name in data_names], np.int64)
    unnamed = tuple(model_names) == tuple(str(i) for i in range(len(model_names)))
    if unnamed and len(data_names) <= len(model_names):  # the model knows no names: classes in order
        return None
    missing = [name for name in data_names if name not in model_names]
    raise DataError(
        f"`data` classes must be among the model's classes {list(model_names)[:10]}"
        f"{' ...' if len(model_names) > 10 else ''}; {missing[:5]} are not. "
        f"Received: data with classes {list(data_names)[:10]}. Name the class folders as the model's classes."
    )
