"""Image folders: `<path>/<class>/<image>` read into training and validation tf.data pipelines.

`image_folder` reads every file's header first (bad files are skipped and
reported once), then decodes in parallel inside tf.data (TensorFlow for plain
JPEGs and PNGs, Pillow for the rest: `cnnzoo.data.decoding`), resizes, caches,
shuffles, batches and prefetches. The in-memory cache is bounded
(`cnnzoo.data.memory`): beyond its budget images are cached to files or decoded
every epoch. Images stay raw 0-255 floats: zoo models rescale inside
(`Preprocess`). The files are listed and checked by `cnnzoo.data.folder_files`
and the tf.data pipelines built by `cnnzoo.data.folder_dataset`; this module
checks the arguments, splits the files and returns the `ImageFolder`.
TensorFlow and Keras are imported inside the functions that need them.
"""

import logging
import os
import warnings
from dataclasses import dataclass, field

from cnnzoo.data.augment import augmentation_layers
from cnnzoo.data.decoding import SkippedFiles
from cnnzoo.data.decoding import routes as decode_routes
from cnnzoo.data.folder_dataset import DatasetSettings, folder_dataset
from cnnzoo.data.folder_files import check_classes, check_files, check_root, list_files
from cnnzoo.data.images import INTERPOLATIONS, check_channels
from cnnzoo.data.memory import cache_budget as _resolve_budget
from cnnzoo.data.memory import plan_cache, shard_files
from cnnzoo.data.split import stratified_split
from cnnzoo.errors import DataError, DataWarning
from cnnzoo.utils.checks import check_fraction, check_int, is_int

__all__ = ["ImageFolder", "image_folder", "DEFAULT_IMAGE_SIZE"]

DEFAULT_IMAGE_SIZE = (224, 224)


@dataclass(frozen=True)
class ImageFolder:
    """What `image_folder` returns: the datasets and what went into them.

    `train` and `validation` yield `(images, labels)` batches: float32 images
    in 0-255, shape `[batch, height, width, channels]`, int32 labels `[batch]`.
    `validation` is None when `validation_split=0`. `skipped` lists
    `(path, reason)` for every file left out (a `SkippedFiles` sequence: a file
    that fails to decode while training joins it when the first epoch finds it).
    `augment` holds the Keras layers applied to training batches (empty when
    augmentation is off). `cache_mode`
    is how decoded images are cached (`"memory"`, `"files"` in `cache_dir`, or
    `"none"`: decoded every epoch) and `cache_reason` why. `shard` is
    `(index, count)`: `train` reads worker `index`'s share of `train_files`
    (`cnnzoo.data.memory.shard_files`); `(0, 1)` is all of them.
    """

    train: object
    validation: object
    class_names: tuple
    image_size: tuple
    channels: int
    batch_size: int
    augment: tuple
    stratified: bool
    path: str
    train_files: tuple = field(repr=False)
    train_labels: tuple = field(repr=False)
    validation_files: tuple = field(repr=False)
    validation_labels: tuple = field(repr=False)
    skipped: tuple = field(repr=False)
    cache_mode: str = "memory"
    cache_reason: str = field(default="", repr=False)
    cache_dir: object = field(default=None, repr=False)
    shard: tuple = (0, 1)

    @property
    def num_train(self):
        return len(self.train_files)

    @property
    def num_validation(self):
        return len(self.validation_files)

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def input_shape(self):
        """`(height, width, channels)`, to build a model for this data."""
        return (*self.image_size, self.channels)

    def __repr__(self):
        return (
            f"ImageFolder(path={self.path!r}, classes={self.num_classes}, train={self.num_train}, "
            f"validation={self.num_validation}, image_size={self.image_size}, channels={self.channels}, "
            f"skipped={len(self.skipped)}, augment={[type(a).__name__ for a in self.augment]}, "
            f"cache_mode={self.cache_mode!r}{'' if self.shard == (0, 1) else f', shard={self.shard}'})"
        )


def image_folder(
    path,
    image_size=None,
    batch_size=32,
    validation_split=0.2,
    seed=0,
    augment=False,
    channels=None,
    cache=True,
    shuffle=True,
    class_names=None,
    interpolation="bilinear",
    max_pixels=None,
    check="fast",
    cache_budget=None,
    cache_dir=None,
    shard=None,
):
    """Reads `<path>/<class>/<image>` into training and validation `tf.data` pipelines.

    Class names are the sorted folder names (images in nested folders count for
    their top folder). Every file is checked first, cheaply: complete plain
    JPEGs and PNGs by their first and last bytes (`read_header`), the rest with
    Pillow (`check_image`); the bad ones are skipped, listed in `skipped` and
    reported in one `DataWarning`. A file that passes but fails to decode never
    stops an epoch: it is logged, replaced by a blank image and added to
    `skipped` when the first epoch reaches it. The split is per class
    (stratified) and fixed by `seed`; a class too small to give a validation
    image keeps all its images for training. Decoding runs in parallel inside
    tf.data: TensorFlow decodes the plain JPEGs and PNGs (at Pillow's JPEG draft
    scale), Pillow the rest (GIF, BMP, WebP, CMYK JPEG, 16-bit or transparent
    PNG, EXIF-rotated photos; any mode becomes RGB or grayscale). Images are then
    resized (bilinear: antialiased when shrunk by half or more, else plain, as
    `keras.utils.image_dataset_from_directory`), cached, shuffled (training
    only), batched and prefetched. Augmentation, if any, is applied to training
    batches only.

    Args:
        path: str or `Path` of the folder holding one sub-folder per class.
        image_size: int, (height, width), or a model's (height, width, channels);
            default 224x224 (`DEFAULT_IMAGE_SIZE`).
        batch_size: int.
        validation_split: float in [0, 1); 0 gives `validation=None`.
        seed: int, for the split, the shuffling and the default augmentation.
        augment: False, True (`default_augmentation(seed)`), or a list of Keras
            layers taking 0-255 float images.
        channels: 1 (grayscale) or 3 (RGB); default from `image_size`, else 3.
        cache: True (memory while the decoded images fit `cache_budget`,
            else files in `cache_dir`, else none), False, or a directory for
            on-disk cache files (named after the file list and sizes, so a
            changed folder never reads a stale cache).
        shuffle: bool; shuffle the training images (each epoch). With False the
            training set keeps file order, as needed for a test folder.
        class_names: optional list fixing the label order; it must name exactly
            the sub-folders.
        interpolation: `"bilinear"`, `"nearest"`, `"bicubic"`, `"area"` or `"lanczos"`.
        max_pixels: int; larger images are skipped as decompression bombs.
            Default `PIL.Image.MAX_IMAGE_PIXELS`.
        check: `"fast"` (headers and end markers; Pillow's checks for files
            other than plain JPEGs and PNGs) or `"full"` (decode every file once
            with Pillow before training).
        cache_budget: bytes the in-memory cache may take (int, or a size
            string: `"2GB"`, `"512MiB"`, `"unlimited"`); default
            `$CNNZOO_CACHE_BUDGET`, else 25% of physical memory. The decoded
            size (images x height x width x channels bytes) is estimated first.
        cache_dir: directory for cache files when `cache=True` and the images
            exceed the budget; None decodes them every epoch instead.
        shard: `(index, count)`: read only this worker's share of the training
            files (strided, padded to equal sizes), with tf.data auto-sharding
            off for `train`; the validation set stays whole. Default all.

    Returns:
        An `ImageFolder` with `train`, `validation`, `class_names`, `skipped`,
        `train_files`, `validation_files` (and their labels), `image_size`,
        `channels`, `num_train`, `num_validation` and `augment`.

    Example:

    >>> data = cnnzoo.data.image_folder("photos/birds", image_size=(160, 160), augment=True)
    >>> model = cnnzoo.get("bird_classifier", num_classes=data.num_classes, input_shape=data.input_shape)
    >>> model.fit(data.train, validation_data=data.validation, epochs=10)  # doctest: +SKIP
    """
    image_size, channels = _check_args(
        image_size, batch_size, validation_split, seed, channels, cache, interpolation, max_pixels, check, class_names
    )
    index, count = _check_memory(cache, cache_budget, shard)
    root, classes, files, labels, skipped, route = _listing(
        path, class_names, max_pixels, check, image_size, interpolation
    )
    train_files, train_labels, val_files, val_labels, stratified = _split(
        files, labels, len(classes), validation_split, seed, shuffle
    )
    layers = augmentation_layers(augment, seed, num_train=len(train_files))
    if skipped:
        _warn_skipped(root, skipped, len(files))
    mine = shard_files(zip(train_files, train_labels), index, count)
    decoded_bytes = (len(mine) + len(val_files)) * image_size[0] * image_size[1] * channels
    plan = plan_cache(cache, decoded_bytes, cache_budget, cache_dir)
    worker = f"; worker {index} of {count} reads {len(mine)} of {len(train_files)} training files" if count > 1 else ""
    logging.getLogger("cnnzoo").info("image_folder %s: cache %s (%s)%s", root, plan.mode, plan.reason, worker)
    found = SkippedFiles(skipped)
    tag = "" if count == 1 else f"-w{index}of{count}"
    settings = DatasetSettings(image_size, channels, interpolation, batch_size, plan, seed, route, found, tag)
    mine_files, mine_labels = tuple(f for f, _ in mine), tuple(y for _, y in mine)
    return ImageFolder(
        train=folder_dataset(mine_files, mine_labels, "train", settings, shuffle, layers, sharded=count > 1),
        validation=folder_dataset(val_files, val_labels, "validation", settings) if val_files else None,
        class_names=tuple(classes),
        image_size=image_size,
        channels=channels,
        batch_size=batch_size,
        augment=tuple(layers),
        stratified=stratified,
        path=str(root),
        train_files=train_files,
        train_labels=train_labels,
        validation_files=val_files,
        validation_labels=val_labels,
        skipped=found,
        cache_mode=plan.mode,
        cache_reason=plan.reason,
        cache_dir=plan.directory,
        shard=(index, count),
    )


def _listing(path, class_names, max_pixels, check, image_size, interpolation):
    """`(root, classes, files, labels, skipped, route)`: the folder's readable images, the files left
    out (sorted) and each image's decoding route; a clear error for a missing folder or an empty class."""
    root = check_root(path)
    classes, files, labels, skipped = list_files(root, class_names)
    files, labels, headers, bad = check_files(files, labels, max_pixels, check == "full")
    skipped = tuple(sorted(skipped + bad))
    route = dict(zip(files, decode_routes(headers, image_size, interpolation)))
    check_classes(root, classes, labels, skipped)
    return root, classes, files, labels, skipped, route


def _split(files, labels, num_classes, validation_split, seed, shuffle):
    """`(train_files, train_labels, val_files, val_labels, stratified)`, the files split per class."""
    train_idx, val_idx, stratified = stratified_split(labels, num_classes, validation_split, seed, shuffle)
    train_files, train_labels = tuple(files[i] for i in train_idx), tuple(labels[i] for i in train_idx)
    val_files, val_labels = tuple(files[i] for i in val_idx), tuple(labels[i] for i in val_idx)
    return train_files, train_labels, val_files, val_labels, stratified


def _warn_skipped(root, skipped, used):
    """One `DataWarning` for the caller of `image_folder`, showing the first ten files left out."""
    shown = "\n".join(f"  {p}: {reason}" for p, reason in skipped[:10])
    more = f"\n  ... and {len(skipped) - 10} more" if len(skipped) > 10 else ""
    warnings.warn(
        f"image_folder skipped {len(skipped)} of {len(skipped) + used} files in "
        f"{str(root)!r} (the rest are used; all are listed in the result's `skipped`):\n"
        f"{shown}{more}",
        DataWarning,
        stacklevel=3,  # the caller of image_folder
    )


def _check_memory(cache, cache_budget, shard):
    """`(index, count)` of `shard`; a bad cache budget or shard fails before any file is read."""
    if cache is True:
        _resolve_budget(cache_budget)
    return (0, 1) if shard is None else _check_shard(shard)


def _check_shard(shard):
    ok = (
        isinstance(shard, (tuple, list))
        and len(shard) == 2
        and all(is_int(v) for v in shard)
        and shard[1] >= 1
        and 0 <= shard[0] < shard[1]
    )
    if not ok:
        raise DataError(
            f"`shard` must be (index, count) with 0 <= index < count, or None for all files. "
            f"Received: shard={shard!r}. Pass e.g. shard=(0, 2) on the first of two workers."
        )
    return int(shard[0]), int(shard[1])


def _check_args(
    image_size, batch_size, validation_split, seed, channels, cache, interpolation, max_pixels, check, class_names
):
    def positive_int(v):
        return is_int(v) and v > 0

    size = DEFAULT_IMAGE_SIZE if image_size is None else image_size
    if positive_int(size):
        size = (int(size), int(size))
    elif not (
        isinstance(size, (tuple, list))
        and len(size) in (2, 3)
        and all(positive_int(s) for s in size if s is not None)
        and None not in size[:2]
    ):
        raise DataError(
            f"`image_size` must be an int, (height, width) or (height, width, channels) of "
            f"positive ints. Received: image_size={image_size!r}."
        )
    if len(size) == 3 and size[2] is not None:
        if channels is not None and channels != size[2]:
            raise DataError(
                f"`channels` must agree with `image_size`. Received: channels={channels!r}, image_size={image_size!r}."
            )
        channels = size[2]
    channels = 3 if channels is None else channels
    check_channels(channels)
    check_int(batch_size, "batch_size", error=DataError)
    check_fraction(validation_split, "validation_split", error=DataError)
    check_int(seed, "seed", lo=-(2**63), error=DataError)
    if not (isinstance(cache, bool) or cache is None or isinstance(cache, (str, os.PathLike))):
        raise DataError(
            f"`cache` must be True (memory), False, or a directory path for cache files. Received: cache={cache!r}."
        )
    if interpolation not in INTERPOLATIONS:
        raise DataError(
            f"`interpolation` must be one of {', '.join(map(repr, INTERPOLATIONS))}. "
            f"Received: interpolation={interpolation!r}."
        )
    check_int(max_pixels, "max_pixels", allow_none=True, error=DataError)
    if check not in ("fast", "full"):
        raise DataError(f"`check` must be 'fast' or 'full'. Received: check={check!r}.")
    if class_names is not None and (
        isinstance(class_names, str)
        or not all(isinstance(c, str) for c in class_names)
        or len(set(class_names)) != len(class_names)
    ):
        raise DataError(
            f"`class_names` must be a list of distinct folder names. Received: class_names={class_names!r}."
        )
    return (int(size[0]), int(size[1])), int(channels)
