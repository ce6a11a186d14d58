"""The input size a zoo model gets for some data when none is given: from the images, not the entry's default.

A zoo entry's default input (224x224 for most) suits photos. Built at that size for 8x8 digits, a
model upscales every image 28 times, trains for minutes and learns little. `fitted_input_shape`
chooses the size from the images instead: their median side, at least the smallest size the
architecture accepts (`cnnzoo.zoo.stats.min_input_size`) and at most the entry's default. A backbone
given ImageNet weights keeps its native size (the weights were learned there). It says what it chose
and why in one log line, and warns (`DataWarning`) when the images are upscaled more than 4x.
"""

import logging
import os
import statistics
import warnings
from pathlib import Path

import numpy as np

from cnnzoo.data.datasets import Arrays
from cnnzoo.data.images import IMAGE_EXTENSIONS
from cnnzoo.data.pipeline import input_shape_for
from cnnzoo.errors import DataWarning

__all__ = ["fitted_input_shape", "choose_input_shape", "typical_side", "UPSCALE_WARNING"]

log = logging.getLogger("cnnzoo.data")
UPSCALE_WARNING = 4.0  # more than this many times the images' side: a warning
_SAMPLE = 64  # image headers read from a folder to find its typical side


def fitted_input_shape(data, spec, input_shape=None, weights=None):
    """The `(height, width, channels)` a model of zoo entry `spec` gets for `data`.

    Args:
        data: anything `cnnzoo.data.prepare` accepts.
        spec: the entry's `ModelSpec` (`cnnzoo.spec(name)`).
        input_shape: the caller's choice, used as given when not None.
        weights: the weights asked for; a backbone with weights keeps the entry's size.

    Returns:
        The shape: `input_shape`; else the one the data fixes (an `ImageFolder`, a dataset); else a square
        side from the images (see the module docstring) with the entry's channels; else the entry's.

    Example:

    >>> fitted_input_shape(cnnzoo.data.digits(), cnnzoo.spec("bird_classifier"))  # 8x8 digits
    (32, 32, 3)
    """
    shape, why = choose_input_shape(data, spec, input_shape, weights)
    if why:
        log.info("%s at %dx%d: %s; pass input_shape= to choose", spec.name, shape[0], shape[1], why)
    side = typical_side(data) if why else None
    if side and shape[0] > UPSCALE_WARNING * side:
        warnings.warn(
            f"{spec.name} at {shape[0]}x{shape[1]} ({why}) upscales images of about {side}x{side} "
            f"{shape[0] / side:.0f}x, which costs time and teaches the model little. Choose a zoo entry with fewer "
            "pooling steps, or pass input_shape= to accept it.",
            DataWarning,
            stacklevel=3,
        )
    return shape


def choose_input_shape(data, spec, input_shape=None, weights=None):
    """`(shape, why)`: `fitted_input_shape`'s choice, and the reason in words ("" when given or fixed by the data).

    Example:

    >>> choose_input_shape(cnnzoo.data.digits(), cnnzoo.spec("bird_classifier"))[1]
    "the smallest size bird_classifier accepts (the images' median side is 8)"
    """
    from cnnzoo.zoo import stats

    fixed = input_shape_for(data, input_shape)
    default = tuple(int(d) for d in spec.input_shape)
    if fixed is not None:
        return fixed, ""
    if spec.backbone is not None and weights is not None:
        return default, f"its {weights} weights were learned at that size"
    side = typical_side(data)
    if side is None:
        return default, "its default (the images' size could not be read)"
    low, high = stats.min_input_size(spec), max(default[:2])
    chosen = min(max(side, low), high)
    if chosen == side:
        why = "the images' median side"
    elif chosen == low:
        why = f"the smallest size {spec.name} accepts (the images' median side is {side})"
    else:
        why = f"{spec.name}'s default (the images' median side is {side})"
    return (chosen, chosen, default[2]), why


def typical_side(data):
    """The median of the images' longer sides in `data`, or None where it cannot be read cheaply.

    Arrays give their shape; a folder path its image headers (up to 64, spread over the sorted files).
    """
    x = _array_images(data)
    if x is not None:
        return int(max(x.shape[1:3])) if x.ndim >= 3 else None
    if isinstance(data, (str, os.PathLike)) and Path(data).is_dir():
        files = sorted(p for p in Path(data).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        step = max(1, len(files) // _SAMPLE)
        sides = [max(h[1:]) for h in map(_header, files[::step][:_SAMPLE]) if h is not None]
        return int(statistics.median(sides)) if sides else None
    return None


def _array_images(data):
    if isinstance(data, Arrays):
        return np.asarray(data.x_train)
    if isinstance(data, (tuple, list)) and len(data) in (2, 4) and hasattr(data[0], "shape"):
        return data[0] if isinstance(data[0], np.ndarray) else np.asarray(data[0])
    return None


def _header(path):
    """`(format, height, width)` from the file's header (PIL reads no pixels for it), or None."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.format, image.height, image.width
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
