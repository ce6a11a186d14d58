"""The built-in real data: the UCI handwritten digits, as arrays or as an image folder.

`digits()` returns a stratified, seeded train/test split of the 1,797 8x8
images shipped inside scikit-learn; `digits_folder()` writes the same split as
PNG files, so a model trained from the folder can be compared with one trained
from the arrays. No TensorFlow here.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnzoo.data.images import resize_array
from cnnzoo.errors import DataError
from cnnzoo.utils.renames import renamed_arguments

__all__ = ["Arrays", "DIGIT_CLASSES", "digits", "digits_folder", "resize_images"]

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

    if channels not in (1, 3):
        raise DataError(f"`channels` must be 1 or 3. Received: channels={channels!r}.")
    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    if image_size is not None:
        images = resize_images(images, image_size)
    if channels == 3:
        images = np.repeat(images, 3, axis=-1)
    x_train, x_test, y_train, y_test = train_test_split(
        images, bunch.target.astype(np.int64), test_size=test_size, random_state=seed, stratify=bunch.target
    )
    return Arrays(x_train, y_train, x_test, y_test, DIGIT_CLASSES)


def resize_images(images, size):
    """Resizes a uint8 NHWC batch to `size` = (height, width) with Pillow (bilinear); uint8 result."""
    return np.stack([resize_array(img, size) for img in images]).astype(np.uint8)


@renamed_arguments(directory="out")
def digits_folder(out, seed=0, test_size=0.2):
    """Writes the UCI digits as an image folder of 8x8 grayscale PNGs.

    The split is the one `digits(test_size, seed)` makes, so a model trained
    from the folder can be compared with one trained from the arrays. Files
    are `<out>/train/<class>/<index>.png` and `<out>/test/...`,
    where `<index>` is the row in `x_train`/`x_test`. Writing again into the
    same directory is allowed (the files are rewritten).

    Args:
        out: the directory to write into, a str or `Path`; created if missing
            (was `directory`, still accepted until cnnzoo 0.3 with a
            `DeprecationWarning`).
        seed: int, split seed (as in `digits`).
        test_size: float, fraction held out (as in `digits`).

    Returns:
        `(train_dir, test_dir)`, two `Path`s to pass to `image_folder`.

    Example:

    >>> train_dir, test_dir = cnnzoo.data.digits_folder("data/digits")
    >>> data = cnnzoo.data.image_folder(train_dir, image_size=(32, 32), channels=1)
    """
    from PIL import Image

    root = Path(out).expanduser()
    d = digits(test_size=test_size, seed=seed)
    plan = {}
    for split, x, y in (("train", d.x_train, d.y_train), ("test", d.x_test, d.y_test)):
        for i, (image, label) in enumerate(zip(x, y)):
            plan[root / split / DIGIT_CLASSES[label] / f"{i:04d}.png"] = image[..., 0]
    existing = {
        p for split in ("train", "test") if (root / split).is_dir() for p in (root / split).rglob("*") if p.is_file()
    }
    foreign = sorted(existing - plan.keys())
    if foreign:
        raise DataError(
            f"`out` must be empty or hold only files written by `digits_folder` with the "
            f"same `seed` and `test_size`; {len(foreign)} other files are there, e.g. "
            f"{str(foreign[0])!r}. Received: out={str(root)!r}. Use a new directory."
        )
    for path, image in plan.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
    return root / "train", root / "test"
