"""Image files: check, read and convert one image with Pillow.

The one place that decides how a file becomes pixels: `cnnzoo.data.image_folder`,
`cnnzoo.predict` and the tests all read images through `load_image` and
`convert_image`. No TensorFlow here.
"""

import os
import warnings
from pathlib import Path

import numpy as np

from cnnzoo.errors import DataError, DataNotFoundError

__all__ = ["IMAGE_EXTENSIONS", "INTERPOLATIONS", "check_channels", "check_image", "load_image", "convert_image",
           "resize_array", "to_channels"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".webp")
_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP")  # MPO: multi-picture JPEG from cameras
INTERPOLATIONS = {"nearest": "NEAREST", "bilinear": "BILINEAR", "bicubic": "BICUBIC", "area": "BOX",
                   "lanczos": "LANCZOS"}


def check_image(path, max_pixels=None, full=False):
    """Checks cheaply that Pillow can read an image file completely.

    Zero-byte, non-image, unsupported, corrupt, truncated and decompression-
    bomb files fail. JPEGs must end with their end-of-image marker (or decode
    fully), PNGs pass Pillow's chunk-checksum `verify()`; GIF, BMP and WebP
    (and every file when `full=True`) are decoded once.

    Args:
        path: str or `Path`.
        max_pixels: int; images with more pixels are rejected as decompression
            bombs. Default `PIL.Image.MAX_IMAGE_PIXELS` (about 89 million).
        full: bool; decode every file instead of the cheap checks.

    Returns:
        None when the file is usable, else the reason (a short string).

    Example:

    >>> cnnzoo.data.check_image("photos/robin/empty.jpg")  # doctest: +SKIP
    'empty file (0 bytes)'
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if size == 0:
        return "empty file (0 bytes)"
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.format not in _FORMATS:
                    return f"{im.format} images are not supported (only JPEG, PNG, GIF, BMP and WebP)"
                w, h = im.size
                if limit and w * h > limit:
                    return (f"decompression bomb: {w}x{h} = {w * h:,} pixels, over the limit of {limit:,} "
                            f"(pass a larger `max_pixels` if the image is genuine)")
                if full or im.format in ("GIF", "BMP", "WEBP") or (
                        im.format in ("JPEG", "MPO") and not _jpeg_has_end(path)):
                    im.load()
                elif im.format == "PNG":
                    im.verify()
    except Image.DecompressionBombError as e:
        return f"decompression bomb: {e}"
    except UnidentifiedImageError:
        return "not an image (Pillow cannot identify it)"
    except Exception as e:  # Pillow raises many types for damaged data; any of them means unusable
        return f"corrupt or truncated ({type(e).__name__}: {e})"
    return None


def _jpeg_has_end(path):
    """True when the file ends with the JPEG end-of-image marker (trailing padding allowed)."""
    with open(path, "rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
        return f.read().rstrip(b"\x00\r\n\t ").endswith(b"\xff\xd9")


def load_image(path, image_size=None, channels=3, interpolation="bilinear"):
    """Reads one image file as a uint8 array, the way `image_folder` does.

    The EXIF orientation is applied; grayscale, palette, CMYK, 16-bit and
    transparent images become RGB (transparency over white), or grayscale for
    `channels=1`; then the image is resized (aspect ratio not kept).

    Args:
        path: str or `Path` of a JPEG, PNG, GIF (first frame), BMP or WebP file.
        image_size: optional (height, width); None keeps the file's size.
        channels: 1 or 3.
        interpolation: `"bilinear"`, `"nearest"`, `"bicubic"`, `"area"` or `"lanczos"`.

    Returns:
        A uint8 array of shape (height, width, channels).

    Example:

    >>> cnnzoo.data.load_image("photos/robin/1.jpg", (224, 224)).shape  # doctest: +SKIP
    (224, 224, 3)
    """
    from PIL import Image, ImageOps


    path = Path(path)
    check_channels(channels)
    if not path.is_file():
        raise DataNotFoundError(f"`path` must be an existing image file. Received: path={str(path)!r}.")
    try:
        with Image.open(path) as im:
            if image_size is not None and im.format in ("JPEG", "MPO"):
                side = max(int(image_size[0]), int(image_size[1]))
                im.draft(None, (side, side))  # decode at a reduced scale when the photo is much larger
            im = ImageOps.exif_transpose(im)
            im = _to_mode(im, channels)
            if image_size is not None and im.size != (int(image_size[1]), int(image_size[0])):
                resample = getattr(Image.Resampling, INTERPOLATIONS[interpolation])
                im = im.resize((int(image_size[1]), int(image_size[0])), resample)
            array = np.asarray(im, dtype=np.uint8)
    except Exception as e:  # Pillow raises many types for damaged data
        raise DataError(f"`path` must be a readable image file; {str(path)!r} failed to decode: {e}. "
                        f"Check it with `cnnzoo.data.check_image` and remove or replace it. "
                        f"Received: path={str(path)!r}.") from e
    return array[..., None] if array.ndim == 2 else array


def convert_image(image, channels=3):
    """Turns a Pillow image into a uint8 array the way `load_image` does (no resize).

    Args:
        image: a `PIL.Image.Image` of any mode.
        channels: 1 or 3.

    Returns:
        A uint8 array of shape (height, width, channels).

    Example:

    >>> cnnzoo.data.convert_image(PIL.Image.open("scan.tif"), channels=1).shape  # doctest: +SKIP
    (480, 640, 1)
    """
    from PIL import ImageOps

    check_channels(channels)
    array = np.asarray(_to_mode(ImageOps.exif_transpose(image), channels), dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def check_channels(channels):
    if isinstance(channels, bool) or channels not in (1, 3):
        raise DataError(f"`channels` must be 1 (grayscale) or 3 (RGB). Received: channels={channels!r}.")


def _to_mode(im, channels):
    """Any Pillow mode -> "RGB" (channels=3) or "L" (channels=1)."""
    from PIL import Image

    if im.mode.startswith("I") or im.mode == "F":  # 16-bit / 32-bit grayscale
        values = np.asarray(im).astype(np.float64)
        if im.mode.startswith("I;16") or values.max(initial=0) > 255:
            values = values / 257.0
        im = Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8))
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode in ("P", "L", "RGB") and "transparency" in im.info):
        im = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im)
    target = "L" if channels == 1 else "RGB"
    return im if im.mode == target else im.convert(target)


def to_channels(arr, channels):
    """Returns an HWC (or HW) array with `channels` channels: gray repeated, alpha dropped, RGB to luma."""
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] == 4:
        arr = arr[..., :3]
    if channels == 3 and arr.shape[-1] == 1:
        return np.repeat(arr, 3, axis=-1)
    if channels == 1 and arr.shape[-1] == 3:  # ITU-R 601-2 luma, as Pillow's convert("L")
        luma = arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return (np.round(luma).astype(np.uint8) if arr.dtype == np.uint8 else luma)[..., None]
    return arr


def resize_array(arr, size):
    """Resizes one HWC image to `size` = (height, width) as the loader does (Pillow bilinear).

    Returns float32 in 0-255; a uint8 input goes through Pillow exactly as a decoded file does.
    """
    from PIL import Image

    h, w = size
    if arr.shape[:2] == (h, w):
        return arr.astype(np.float32)
    if arr.dtype == np.uint8:  # the loader's exact path: a uint8 Pillow image
        planes = [Image.fromarray(np.ascontiguousarray(arr[..., c])) for c in range(arr.shape[-1])]
    else:
        planes = [Image.fromarray(np.ascontiguousarray(arr[..., c], np.float32)) for c in range(arr.shape[-1])]
    out = np.stack([np.asarray(p.resize((w, h), Image.Resampling.BILINEAR)) for p in planes], axis=-1)
    return np.clip(out.astype(np.float32), 0, 255)
