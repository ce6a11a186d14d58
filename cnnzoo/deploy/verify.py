"""Checking an exported model against its Keras model: the images, the comparison, the verdict.

The images are real ones: a folder or files the user names, or else the UCI
digits held out by `cnnzoo.data.digits()` (converted and resized to the model
input the way `cnnzoo.predict` does it), with a few synthetic colour images
beside them. Quantization is calibrated on other images: the user's own, or
the digits training split (`check_calibration` warns below 100 images).
"""

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnzoo.errors import ConfigError, DataError, DataWarning, ExportError

__all__ = [
    "Images",
    "Comparison",
    "DEFAULT_TOLERANCE",
    "verification_images",
    "compare",
    "check",
    "tolerance_for",
    "check_calibration",
]

# float32 and float16: largest max abs difference of probabilities; int8: largest fraction of
# images whose top-1 label differs from the Keras model's.
DEFAULT_TOLERANCE = {None: 1e-4, "float16": 1e-2, "int8": 0.02}
MAX_USER_IMAGES = 1000  # read from a folder for verification
MAX_CALIBRATION = 200
MIN_CALIBRATION = 100  # int8 calibration images below which `export` warns
SYNTHETIC = 16
_LARGE = 64 * 64  # inputs above this many pixels verify on fewer digits (time)


@dataclass(frozen=True)
class Images:
    """Verification and calibration images (raw 0-255 float32 NHWC at the model input).

    Attributes:
        x: the verification images.
        labels: their class indices, or None when unknown.
        calibration: images for post-training quantization.
        description: where they came from, for reports.
    """

    x: np.ndarray
    labels: np.ndarray
    calibration: np.ndarray
    description: str


@dataclass(frozen=True)
class Comparison:
    """How an exported model's probabilities compare with the Keras model's on the same images."""

    images: int
    max_abs_diff: float
    top1_agreement: float
    keras_accuracy: float = None
    exported_accuracy: float = None


def verification_images(verify_with, size, channels, class_names):
    """The images an export is checked (and calibrated) on.

    Args:
        verify_with: None (the held-out UCI digits plus synthetic colour images),
            a folder (every image file under it; a file in a sub-folder named
            like one of the model's classes is labelled with that class), a
            list of image files, or an array `[N, H, W, C]` of 0-255 images.
        size: (height, width) of the model input.
        channels: 1 or 3.
        class_names: the model's class names (for labels).

    Returns:
        An `Images` record.
    """
    if verify_with is None:
        return _default_images(size, channels, class_names)
    if isinstance(verify_with, (str, Path)) and Path(verify_with).expanduser().is_dir():
        root = Path(verify_with).expanduser()
        files = _image_files(root)
        if not files:
            raise DataError(
                f"`verify_with` must be a folder holding image files. Received: "
                f"verify_with={str(root)!r} (no image files under it)."
            )
        index = {name: i for i, name in enumerate(class_names)}
        labels = [index.get(f.parent.name) if f.parent != root else None for f in files]
        x = load_images([str(f) for f in files], size, channels)
        known = np.array(labels if all(v is not None for v in labels) else [], np.int64)
        return Images(x, known if len(known) else None, x[:MAX_CALIBRATION], f"{len(files)} images from {root}")
    if isinstance(verify_with, (str, Path)):
        raise DataError(
            f"`verify_with` must be a folder of images, a list of image files or an array. "
            f"Received: verify_with={str(verify_with)!r} (no such folder)."
        )
    x = load_images(verify_with, size, channels)
    return Images(x, None, x[:MAX_CALIBRATION], f"{len(x)} given images")


def load_images(items, size, channels):
    """Image files (str) or a 0-255 array batch, read, converted and resized as `cnnzoo.predict` does it
    (`cnnzoo.data.load_image` for files, `to_channels` then `resize_array` for arrays); float32 NHWC."""
    from cnnzoo.data import load_image, resize_array, to_channels

    if isinstance(items, (list, tuple)) and all(isinstance(i, (str, Path)) for i in items):
        return np.stack([load_image(Path(f), size, channels) for f in items]).astype(np.float32)
    arr = np.asarray(items)
    if arr.dtype.kind not in "uif" or arr.ndim != 4 or arr.shape[-1] not in (1, 3, 4) or not len(arr):
        raise DataError(
            f"`verify_with` must be a folder, a list of image files or a 0-255 array [N, H, W, C] "
            f"with C in 1, 3, 4. Received: an array of shape {arr.shape} and dtype {arr.dtype}."
        )
    return np.stack([resize_array(to_channels(a, channels), size) for a in arr]).astype(np.float32)


def _image_files(root):
    from cnnzoo.data import IMAGE_EXTENSIONS

    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )
    return files[:MAX_USER_IMAGES]


def _default_images(size, channels, class_names):
    from cnnzoo.data import DIGIT_CLASSES, digits

    d = digits()  # 8x8 gray; load_images converts and resizes like predict does
    count = len(d.x_test) if size[0] * size[1] <= _LARGE else 64
    x = load_images(d.x_test[:count], size, channels)
    calibration = load_images(d.x_train[: MAX_CALIBRATION if count == len(d.x_test) else 64], size, channels)
    is_digits = tuple(class_names) == DIGIT_CLASSES
    labels = d.y_test[:count] if is_digits else None
    description = f"{count} held-out UCI digits"
    if not is_digits:  # colour and texture the digits lack; no labels
        synthetic = _synthetic(size, channels)
        x = np.concatenate([x, synthetic])
        calibration = np.concatenate([calibration, synthetic])
        description += f" and {len(synthetic)} synthetic images"
    return Images(x, labels, calibration, description)


def _synthetic(size, channels, n=SYNTHETIC, seed=0):
    """Smooth colour gradients with noise and a bright square: deterministic 0-255 images."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((n, h, w, channels), np.float32)
    for i in range(n):
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(angle) * xx / max(w - 1, 1) + np.sin(angle) * yy / max(h - 1, 1) + 1.0) / 2.0
        colours = rng.uniform(0, 255, (2, channels)).astype(np.float32)
        img = colours[0] * ramp[..., None] + colours[1] * (1.0 - ramp[..., None])
        top, left = rng.integers(0, max(h // 2, 1)), rng.integers(0, max(w // 2, 1))
        img[top : top + max(h // 4, 1), left : left + max(w // 4, 1)] = rng.uniform(128, 255, channels)
        out[i] = np.clip(img + rng.normal(0, 12, img.shape), 0, 255)
    return out


def compare(reference, exported, labels=None):
    """A `Comparison` of Keras probabilities `reference` with an exported model's `exported`.

    Example:

    >>> compare(np.eye(3), np.eye(3)).top1_agreement
    1.0
    """
    reference, exported = np.asarray(reference, np.float64), np.asarray(exported, np.float64)
    if reference.shape != exported.shape:
        return Comparison(len(reference), float("inf"), 0.0)
    diff = np.abs(reference - exported).max() if reference.size else 0.0
    diff = float("inf") if not np.isfinite(diff) else float(diff)
    top_ref, top_exp = reference.argmax(1), exported.argmax(1)
    accuracy = (None, None)
    if labels is not None:
        accuracy = float(np.mean(top_ref == labels)), float(np.mean(top_exp == labels))
    return Comparison(len(reference), diff, float(np.mean(top_ref == top_exp)), *accuracy)


def tolerance_for(tolerance, quantize):
    """The tolerance to check against: the given one, or the default for the quantization."""
    if tolerance is None:
        return DEFAULT_TOLERANCE[quantize]
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
        raise ConfigError(
            f"`tolerance` must be a number >= 0 (max abs difference of probabilities; for "
            f"quantize='int8' the fraction of images whose top-1 label may differ). "
            f"Received: tolerance={tolerance!r}."
        )
    return float(tolerance)


def check(comparison, tolerance, quantize, what, path):
    """Raises `ExportError` when `comparison` is beyond `tolerance` (see `DEFAULT_TOLERANCE`)."""
    c = comparison
    if quantize == "int8":
        bad = (1.0 - c.top1_agreement) > tolerance
        rule = (
            f"top-1 agreement {c.top1_agreement:.1%} is below {1 - tolerance:.1%} "
            f"(max abs difference {c.max_abs_diff:.3g})"
        )
    else:
        bad = not c.max_abs_diff <= tolerance
        rule = (
            f"max abs difference {c.max_abs_diff:.3g} is beyond the tolerance (top-1 agreement {c.top1_agreement:.1%})"
        )
    if bad:
        raise ExportError(
            f"`tolerance`: the exported {what} does not give the Keras model's answers on "
            f"{c.images} images: {rule}, so nothing was written at {str(path)!r}. Check the model "
            f"for layers the format cannot represent, or loosen `tolerance` if the difference "
            f"is expected. Received: tolerance={tolerance!r}."
        )


def check_calibration(images, verify_with):
    """Warns (`DataWarning`) when int8 ranges come from fewer than `MIN_CALIBRATION` images (`export` calls it)."""
    count = len(images.calibration)
    if count >= MIN_CALIBRATION:
        return
    where = (
        "the images given as `verify_with`" if verify_with is not None else f"the default images ({images.description})"
    )
    warnings.warn(
        f"int8 quantization is calibrated on {count} image{'s' if count != 1 else ''}, from {where}: activation ranges "
        f"estimated from fewer than {MIN_CALIBRATION} images may clip on other images and cost accuracy. Pass "
        f"`verify_with=` a folder of at least {MIN_CALIBRATION} images like the ones the model will see "
        f"(up to {MAX_CALIBRATION} calibrate).",
        DataWarning,
        stacklevel=4,  # the caller of `export` (through `renamed_arguments`)
    )
