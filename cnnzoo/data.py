"""Datasets: the built-in real data (UCI handwritten digits) and image folders."""

from dataclasses import dataclass

import numpy as np

__all__ = ["Arrays", "digits", "resize_images"]

DIGIT_CLASSES = tuple(str(i) for i in range(10))


@dataclass(frozen=True)
class Arrays:
    """A train/test split of images (uint8, NHWC, 0-255) and integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple


def digits(test_size=0.2, seed=0, image_size=None, channels=1):
    """The UCI handwritten digits (1,797 8x8 images shipped inside scikit-learn).

    Pixels are scaled from 0-16 to 0-255 so they look like any other image;
    the split is stratified and fixed by `seed`.

    Args:
        test_size: float, fraction held out for testing.
        seed: int, split seed.
        image_size: optional (height, width) to resize to (bilinear, Pillow).
        channels: 1 (grayscale) or 3 (gray repeated as RGB).

    Returns:
        An `Arrays` record with `x_train`, `y_train`, `x_test`, `y_test`, `class_names`.

    Example:

    >>> d = cnnzoo.data.digits(image_size=(32, 32), channels=3)
    >>> d.x_train.shape
    (1437, 32, 32, 3)
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from cnnzoo.errors import DataError

    if channels not in (1, 3):
        raise DataError(f"`channels` must be 1 or 3. Received: channels={channels!r}.")
    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    if image_size is not None:
        images = resize_images(images, image_size)
    if channels == 3:
        images = np.repeat(images, 3, axis=-1)
    x_train, x_test, y_train, y_test = train_test_split(
        images, bunch.target.astype(np.int64), test_size=test_size, random_state=seed, stratify=bunch.target)
    return Arrays(x_train, y_train, x_test, y_test, DIGIT_CLASSES)


def resize_images(images, size):
    """Resizes a uint8 NHWC batch to `size` = (height, width) with Pillow (bilinear)."""
    from PIL import Image

    h, w = int(size[0]), int(size[1])
    out = np.empty((len(images), h, w, images.shape[-1]), dtype=np.uint8)
    for i, img in enumerate(images):
        channels = [np.asarray(Image.fromarray(img[..., c]).resize((w, h), Image.BILINEAR))
                    for c in range(images.shape[-1])]
        out[i] = np.stack(channels, axis=-1)
    return out
