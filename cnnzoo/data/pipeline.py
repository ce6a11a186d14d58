"""`prepare`: the one path from any accepted `data` to training and validation pipelines.

`cnnzoo.finetune` and `cnnzoo.tune` both call it, so the same data and seed
give both workflows the same training and validation images at the same size.
Accepted: an image-folder path (read with `image_folder` at the model's size
and channels), an `ImageFolder`, `(x, y)` arrays, a `cnnzoo.data.Arrays`
record (its `x_train`/`y_train`; `x_test` is left for testing),
`(x, y, x_val, y_val)`, or a `(train_ds, val_ds)` pair of batched `tf.data`
datasets yielding `(images 0-255, integer labels)`. Arrays are split per
class by `seed` (`stratified_split`, as folders are), converted and resized
to the model's input as image files are, and fed by index (`data.arrays`).
Every form must come with validation images: `Inputs` and how each form
becomes one are in `cnnzoo.data.inputs`. Also here: `input_shape_for` (which
input shape a model for `data` gets) and `settle_classes` (the class count and
names). TensorFlow is imported only when a pipeline is built.
"""

import os
from pathlib import Path

from cnnzoo.data.datasets import Arrays
from cnnzoo.data.folders import ImageFolder, image_folder
from cnnzoo.data.inputs import from_arrays, from_datasets, from_folder, is_dataset, no_validation
from cnnzoo.data.options import DataOptions
from cnnzoo.errors import ConfigError, DataError, DataNotFoundError
from cnnzoo.utils.checks import check_fraction, check_int, is_int

__all__ = ["prepare", "input_shape_for", "settle_classes", "ACCEPTED"]

ACCEPTED = (
    "an image-folder path, a cnnzoo.data.ImageFolder, (x, y) arrays, a cnnzoo.data.Arrays record such as "
    "cnnzoo.data.digits(), (x, y, x_val, y_val), or a (train_ds, val_ds) pair of batched tf.data datasets"
)


def prepare(
    data,
    input_shape=None,
    *,
    validation_split=DataOptions.validation_split,
    seed=0,
    batch_size=DataOptions.batch_size,
    augment=False,
    class_names=None,
    cache_budget=None,
    cache_dir=None,
    shard=None,
):
    """Turns any accepted `data` into `Inputs` for a model taking `input_shape` images.

    Args:
        data: an image-folder path, an `ImageFolder`, `(x, y)` arrays (0-255
            images `[N, H, W, C]` or `[N, H, W]`, integer labels `[N]`), an
            `Arrays` record (its training part), `(x, y, x_val, y_val)`, or a
            `(train_ds, val_ds)` pair of batched tf.data datasets.
        input_shape: `(height, width, channels)` of the model. Folders are read
            and arrays resized (Pillow bilinear, as image files) to it; an
            `ImageFolder` or a dataset must already match it. None: the shape
            the data has (see `input_shape_for`).
        validation_split: float in (0, 1): the share of each class held out of
            a folder path or `(x, y)` arrays (ignored when the data brings its
            validation images). 0 is an error: both workflows score on
            held-out images.
        seed: int >= 0 (None means 0): the split, the shuffling and the
            default augmentation.
        batch_size: int, for folder paths and arrays.
        augment: False, True, `"auto"` (by the number of training images, see
            `cnnzoo.data.augment.auto_augmentation`) or Keras layers, for folder
            paths and arrays (training batches only); see `augmentation_layers`.
        class_names: optional names of the classes, in label order (a folder
            path is read in this order).
        cache_budget, cache_dir, shard: for a folder path, as in `image_folder`
            (the decoded-image cache budget; where cache files go beyond it;
            this worker's `(index, count)` share of the training files).

    Returns:
        `Inputs`.

    Example:

    >>> inputs = cnnzoo.data.prepare(cnnzoo.data.digits(), (8, 8, 1), seed=0)
    >>> inputs.num_train, inputs.num_validation
    (1150, 287)
    """
    seed = 0 if seed is None else check_int(seed, "seed", lo=0, error=DataError)
    batch_size = check_int(batch_size, "batch_size", error=DataError)
    validation_split = check_fraction(validation_split, "validation_split", error=DataError)
    class_names = _check_names(class_names)
    input_shape = input_shape_for(data, input_shape)
    arrays = dict(
        input_shape=input_shape,
        validation_split=validation_split,
        seed=seed,
        batch_size=batch_size,
        augment=augment,
        class_names=class_names,
    )
    if isinstance(data, (str, os.PathLike)):
        return _from_path(data, dict(cache_budget=cache_budget, cache_dir=cache_dir, shard=shard), **arrays)
    if isinstance(data, ImageFolder):
        return from_folder(data, input_shape)
    if isinstance(data, Arrays):
        return from_arrays(
            data.x_train,
            data.y_train,
            None,
            None,
            **{**arrays, "class_names": class_names or tuple(data.class_names or ()) or None},
        )
    if is_dataset(data):
        raise DataError(
            f"`data` as tf.data must be a (train_ds, val_ds) pair: both workflows score on held-out "
            f"images. Received: data=<one {type(data).__name__}>. Pass (train_ds, val_ds)."
        )
    if isinstance(data, (tuple, list)) and len(data) == 2 and is_dataset(data[0]):
        return from_datasets(data[0], data[1], input_shape, class_names)
    if isinstance(data, (tuple, list)) and len(data) in (2, 4) and not any(is_dataset(d) for d in data):
        return from_arrays(*data, *(None, None)[: 4 - len(data)], **arrays)
    raise _not_accepted(data)


def input_shape_for(data, input_shape=None, default=None):
    """The input shape a model for `data` gets: `input_shape` if given, else the
    shape the data fixes (an `ImageFolder`'s, a dataset's element shape), else
    `default` (a zoo entry's; arrays and folder paths are fitted to it).

    Example:

    >>> input_shape_for(cnnzoo.data.digits(), default=(32, 32, 1))
    (32, 32, 1)
    """
    if input_shape is not None:
        shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
        if shape is None or len(shape) != 3 or not all(is_int(d) and d > 0 for d in shape):
            raise DataError(
                f"`input_shape` must be (height, width, channels) of positive ints. "
                f"Received: input_shape={input_shape!r}."
            )
        return tuple(int(d) for d in shape)
    if isinstance(data, ImageFolder):
        return tuple(data.input_shape)
    if isinstance(data, (tuple, list)) and len(data) == 2 and is_dataset(data[0]):
        spec = data[0].element_spec
        if isinstance(spec, tuple) and len(spec) == 2 and spec[0].shape.rank == 4 and None not in spec[0].shape[1:]:
            return tuple(int(d) for d in spec[0].shape[1:])
    return None if default is None else tuple(int(d) for d in default)


def _not_accepted(data):
    kinds = (
        f"({', '.join(type(d).__name__ for d in data)})"
        if isinstance(data, (tuple, list))
        else f"of type {type(data).__name__}"
    )
    return DataError(f"`data` must be {ACCEPTED}. Received: data {kinds}.")


def _check_names(class_names):
    if class_names is None:
        return None
    if (
        isinstance(class_names, str)
        or not isinstance(class_names, (tuple, list))
        or not class_names
        or not all(isinstance(c, str) for c in class_names)
        or len(set(class_names)) != len(class_names)
    ):
        raise DataError(
            f"`class_names` must be a list of distinct strings, in label order. Received: class_names={class_names!r}."
        )
    return tuple(class_names)


def _from_path(path, memory, *, input_shape, validation_split, seed, batch_size, augment, class_names):
    """`Inputs` of a folder path, read with `image_folder` at `input_shape` (`memory`: its cache and shard)."""
    if not Path(path).expanduser().exists():
        raise DataNotFoundError(
            f"`data` must be {ACCEPTED}; as a path, an existing folder of class sub-folders "
            f"(`<path>/<class>/<image>`). Received: data={str(path)!r}, which does not exist. "
            f"Check the path."
        )
    if validation_split == 0:
        raise no_validation(f"the image folder {str(path)!r}")
    shape = {} if input_shape is None else {"image_size": input_shape[:2], "channels": input_shape[2]}
    folder = image_folder(
        path,
        batch_size=batch_size,
        validation_split=validation_split,
        seed=seed,
        augment=augment,
        class_names=list(class_names) if class_names else None,
        **shape,
        **memory,
    )
    return from_folder(folder, input_shape)


def settle_classes(inputs, num_classes, class_names, head_classes):
    """Settles the class count and names, the same way for every workflow.

    Args:
        inputs: `Inputs` from `prepare`.
        num_classes: what the caller asked for, or None.
        class_names: what the caller named, or None.
        head_classes: the model's (or zoo entry's) class count, used when
            neither the caller nor the data says.

    Returns:
        `(num_classes, names)`: names are the caller's or the data's, else
        `"0"`, `"1"`, ...

    Example:

    >>> settle_classes(cnnzoo.data.prepare(cnnzoo.data.digits(), (8, 8, 1)), None, None, 10)[0]
    10
    """
    names = tuple(class_names) if class_names else inputs.class_names
    if class_names and inputs.class_names and tuple(class_names) != inputs.class_names:
        raise ConfigError(
            f"`class_names` must match the data's classes {list(inputs.class_names)}. "
            f"Received: class_names={list(class_names)!r}. Leave it out to use the data's names."
        )
    if num_classes is None:
        num_classes = len(names) if names else inputs.num_labels or head_classes
    if inputs.num_labels and is_int(num_classes) and inputs.num_labels > num_classes:
        raise ConfigError(
            f"`num_classes` must exceed every label; the data has label {inputs.num_labels - 1}. "
            f"Received: num_classes={num_classes!r}."
        )
    num_classes = check_int(num_classes, "num_classes", lo=2)
    if names and len(names) != num_classes:
        raise ConfigError(
            f"`num_classes` must equal the number of classes in the data ({len(names)}: "
            f"{list(names)[:5]}...). Received: num_classes={num_classes!r}. Leave it out."
        )
    return num_classes, names or tuple(str(i) for i in range(num_classes))
