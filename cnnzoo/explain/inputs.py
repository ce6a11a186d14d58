"""Images in, the way `cnnzoo.predict` takes them: paths, PIL images or arrays.

`model_batch` reads them at the model's input size (exactly as `cnnzoo.predict`
does, through `cnnzoo.deploy.inference.load_images`); `original` keeps an image
at its own size, for overlays.
"""

from pathlib import Path

import numpy as np

from cnnzoo.errors import DataError, DataNotFoundError
from cnnzoo.explain.taps import input_size

__all__ = ["model_batch", "original", "resolve_model", "save_rgb_png"]


def resolve_model(model):
    """A `keras.Model`, loading a `.keras` path (`cnnzoo.load`, compile=False)."""
    from cnnzoo.zoo.loading import as_model

    return as_model(model, "model", error=DataError)


def model_batch(model, images):
    """`(batch, single)`: float32 `[N, H, W, C]` 0-255 pixels at the model's input size."""
    from cnnzoo.deploy.inference import load_images

    size, channels = input_size(model)
    if (
        not isinstance(images, (str, Path, list, tuple, np.ndarray))
        and not hasattr(images, "numpy")
        and not _is_pil(images)
    ):
        raise DataError(
            f"`image` must be file paths, PIL images or arrays. Received: an object of type {type(images).__name__}."
        )
    try:
        batch, _, single = load_images(images, size, channels)
    except (DataError, DataNotFoundError) as e:  # the argument is called `image` here
        raise type(e)(str(e).replace("`images`", "`image`").replace("Received: images=", "Received: image=")) from e
    return batch, single


def _is_pil(obj):
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        return False
    return isinstance(obj, Image.Image)


def original(image):
    """One image at its own size as a uint8 RGB array `[H, W, 3]` (path, PIL image or array)."""
    from cnnzoo import data

    if isinstance(image, (str, Path)):
        return data.load_image(Path(image).expanduser(), None, 3)
    if _is_pil(image):
        return data.convert_image(image, 3)
    arr = np.asarray(image.numpy() if hasattr(image, "numpy") else image)
    if arr.dtype.kind not in "buif" or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4)):
        raise DataError(
            f"`image` must be a file path, a PIL image or an array [H, W] or [H, W, C] with C in "
            f"1, 3, 4 (0-255 values). Received: an array of shape {arr.shape} and dtype {arr.dtype}."
        )
    return np.clip(data.to_channels(arr, 3), 0, 255).astype(np.uint8)


def save_rgb_png(array, path):
    """Writes a uint8 `[H, W, 3]` (or `[H, W]`) array as a PNG, atomically; returns the `Path`."""
    from PIL import Image

    from cnnzoo.utils.files import atomic_save

    image = Image.fromarray(
        np.asarray(array, np.uint8).squeeze()
        if np.ndim(array) == 3 and np.shape(array)[-1] == 1
        else np.asarray(array, np.uint8)
    )
    return atomic_save(Path(path), lambda tmp: image.save(tmp, format="PNG"))
