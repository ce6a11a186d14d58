"""Image files: check, read and convert one image with Pillow.

The one place that decides how a file becomes pixels: `cnnzoo.predict` and the
tests read images through `load_image` and `convert_image`; `cnnzoo.data.image_folder`
too, except for the plain JPEGs and PNGs that `read_header` finds, which
TensorFlow decodes to the same pixels (`cnnzoo.data.decoding`). No TensorFlow here.
"""

import io
import os
import struct
import warnings
from pathlib import Path

import numpy as np

from cnnzoo.errors import DataError, DataNotFoundError

__all__ = [
    "IMAGE_EXTENSIONS",
    "INTERPOLATIONS",
    "check_channels",
    "check_image",
    "read_header",
    "load_image",
    "convert_image",
    "resize_array",
    "to_channels",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".webp")
_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP")  # MPO: multi-picture JPEG from cameras
INTERPOLATIONS = {
    "nearest": "NEAREST",
    "bilinear": "BILINEAR",
    "bicubic": "BICUBIC",
    "area": "BOX",
    "lanczos": "LANCZOS",
}


def check_image(path, max_pixels=None, full=False):
    """Checks cheaply that Pillow can read an image file completely.

    Zero-byte, non-image, unsupported, corrupt, truncated and decompression-
    bomb files fail. JPEGs must end with their end-of-image marker (or decode
    fully), PNGs pass Pillow's chunk-checksum `verify()`; GIF, BMP and WebP
    (and every file when `full=True`) are decoded once.

    Args:
        path: str or `Path`, or the file's bytes (an upload, checked the same
            way without writing it to disk).
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

    if _is_bytes(path):
        data = bytes(path)
        size, source = len(data), io.BytesIO(data)
    else:
        source = path = Path(path)
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
            with Image.open(source) as im:
                if im.format not in _FORMATS:
                    return f"{im.format} images are not supported (only JPEG, PNG, GIF, BMP and WebP)"
                w, h = im.size
                if limit and w * h > limit:
                    return (
                        f"decompression bomb: {w}x{h} = {w * h:,} pixels, over the limit of {limit:,} "
                        f"(pass a larger `max_pixels` if the image is genuine)"
                    )
                if (
                    full
                    or im.format in ("GIF", "BMP", "WEBP")
                    or (im.format in ("JPEG", "MPO") and not _jpeg_ends(_tail(path)))
                ):
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


def _is_bytes(path):
    """True for a file's contents given as bytes (an upload) rather than its path."""
    return isinstance(path, (bytes, bytearray, memoryview))


def _tail(path):
    """The last 4 KiB of a file (its path, or its bytes)."""
    if _is_bytes(path):
        return bytes(path[-4096:])
    with open(path, "rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
        return f.read()


def _jpeg_ends(tail):
    """True when a file's last bytes end with the JPEG end-of-image marker (trailing padding allowed)."""
    return tail.rstrip(b"\x00\r\n\t ").endswith(b"\xff\xd9")


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_SOF = (0xC0, 0xC1, 0xC2)  # baseline, extended and progressive Huffman: what libjpeg decodes everywhere
_HEAD = 16384  # the first read: the whole of a small file, the headers of a large one


def read_header(path, max_pixels=None):
    """Reads an image file's first and last bytes, without decoding it.

    Cheap (one read, or two for a file over 16 KiB), for listing thousands of files: it recognises the
    plain JPEGs and PNGs that TensorFlow decodes to the same pixels as
    `load_image`: a complete 8-bit grayscale or YCbCr JPEG (baseline or
    progressive, no EXIF rotation) or a complete 8-bit grayscale or RGB PNG
    without transparency, within `max_pixels`.

    Args:
        path: str or `Path`.
        max_pixels: int; default `PIL.Image.MAX_IMAGE_PIXELS`.

    Returns:
        `(format, height, width)` with format `"JPEG"` or `"PNG"`, or None for
        any other file (another format or variant, or a damaged or suspicious
        one): those go through `check_image` and Pillow.

    Example:

    >>> cnnzoo.data.images.read_header("photos/robin/1.jpg")  # doctest: +SKIP
    ('JPEG', 480, 640)
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        head = os.read(fd, _HEAD)
        if len(head) < _HEAD:  # the whole file: its end is in hand
            tail = head[-16:]
        else:
            tail = os.pread(fd, 16, max(0, os.lseek(fd, 0, os.SEEK_END) - 16))
        if head.startswith(b"\xff\xd8\xff"):
            found = _jpeg_header(fd, head) if tail.rstrip(b"\x00\r\n\t ").endswith(b"\xff\xd9") else None
        elif head.startswith(_PNG_MAGIC) and tail.endswith(_PNG_END):
            found = _png_header(head)
        else:
            found = None
    except (OSError, struct.error, IndexError, ValueError):
        return None
    finally:
        os.close(fd)
    if found is None:
        return None
    if max_pixels is None:
        from PIL import Image

        max_pixels = Image.MAX_IMAGE_PIXELS
    height, width = found[1], found[2]
    return found if width > 0 and height > 0 and not (max_pixels and width * height > max_pixels) else None


def _png_header(head):
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", head[16:29])
    if head[12:16] != b"IHDR" or depth != 8 or color not in (0, 2) or interlace not in (0, 1):
        return None
    at = 33
    while at + 8 <= len(head):  # chunks before the image data: a tRNS one means transparency
        length, kind = struct.unpack(">I4s", head[at : at + 8])
        if kind == b"IDAT":
            return "PNG", height, width
        if kind == b"tRNS":
            return None
        at += 12 + length
    return None  # the image data starts beyond the first bytes: let Pillow look


def _jpeg_header(fd, head):
    at, buf, base = 2, head, 0
    while True:
        if at + 4 > base + len(buf):  # the next marker lies beyond the bytes read: read from there
            buf, base = os.pread(fd, _HEAD, at), at
            if len(buf) < 4:
                return None
        i = at - base
        if buf[i] != 0xFF:
            return None
        marker = buf[i + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        length = struct.unpack(">H", buf[i + 2 : i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if marker not in _JPEG_SOF:
                return None
            if i + 10 > len(buf):
                buf, base, i = os.pread(fd, 16, at), at, 0
            _, height, width, components = struct.unpack(">BHHB", buf[i + 4 : i + 10])
            return ("JPEG", height, width) if components in (1, 3) else None
        if marker == 0xE1:  # APP1: an EXIF orientation other than 1 needs Pillow's `exif_transpose`
            segment = buf[i + 4 : i + 2 + length] if i + 2 + length <= len(buf) else os.pread(fd, length - 2, at + 4)
            if segment.startswith(b"Exif\x00\x00") and _exif_orientation(segment[6:]) not in (None, 1):
                return None
        elif marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        at += 2 + length


def _exif_orientation(tiff):
    """The orientation tag (0x0112) of a TIFF-structured EXIF block, or None."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return None
    offset = struct.unpack(order + "I", tiff[4:8])[0]
    count = struct.unpack(order + "H", tiff[offset : offset + 2])[0]
    for k in range(count):
        entry = tiff[offset + 2 + 12 * k : offset + 14 + 12 * k]
        if len(entry) < 12:
            return None
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag == 0x0112:
            return struct.unpack(order + "H", entry[8:10])[0] if kind == 3 else 0
    return None


def load_image(path, image_size=None, channels=3, interpolation="bilinear"):
    """Reads one image file as a uint8 array, the way `image_folder` does.

    The EXIF orientation is applied; grayscale, palette, CMYK, 16-bit and
    transparent images become RGB (transparency over white), or grayscale for
    `channels=1`; then the image is resized (aspect ratio not kept).

    Args:
        path: str or `Path` of a JPEG, PNG, GIF (first frame), BMP or WebP
            file, or such a file's bytes (read the same way).
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

    check_channels(channels)
    if _is_bytes(path):
        source, path = io.BytesIO(bytes(path)), f"<{len(path):,} bytes>"
    else:
        source = path = Path(path)
        if not path.is_file():
            raise DataNotFoundError(f"`path` must be an existing image file. Received: path={str(path)!r}.")
    try:
        with Image.open(source) as im:
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
        raise DataError(
            f"`path` must be a readable image file; {str(path)!r} failed to decode: {e}. "
            f"Check it with `cnnzoo.data.check_image` and remove or replace it. "
            f"Received: path={str(path)!r}."
        ) from e
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
