"""Uploads for `cnnzoo serve`: a bounded request body -> image bytes -> pixels, or a 4xx with the reason.

An image arrives as the raw request body or as the `file` field of a
multipart form. It is read the way `cnnzoo.predict` reads a file (its bytes go
through `cnnzoo.data.check_image` and `cnnzoo.data.load_image`, which read
bytes as they read files), so the server and `cnnzoo.predict` see the same
pixels. No Starlette import at module level.
"""

from cnnzoo.data.images import check_image, load_image

__all__ = ["Problem", "read_upload", "decode_image"]

MULTIPART_SLACK = 64 * 1024  # form boundaries and part headers around the file


class Problem(Exception):
    """An answer other than 200: an HTTP status and the reason (sent as `{"error": reason}`)."""

    def __init__(self, status, reason):
        super().__init__(reason)
        self.status, self.reason = int(status), reason


def _too_large(size, limit):
    return Problem(
        413,
        f"the upload is too large: {size:,} bytes, over the server's limit of {limit:,} bytes "
        f"({limit / 2**20:.1f} MiB; `cnnzoo serve --max-upload-mb`)",
    )


async def read_upload(request, limit):
    """The uploaded image's bytes and its file name (or None), reading at most `limit` bytes of it.

    Raises:
        Problem: 413 over the limit (from Content-Length before reading, or
            while reading a chunked body), 400 for an empty body or a
            multipart form without a `file` field. Any other Content-Type is
            taken as raw bytes (curl and urllib label raw bodies as forms): the
            image check decides (415 when they are not an image).
    """
    from starlette.datastructures import UploadFile
    from starlette.requests import Request

    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    multipart = kind == "multipart/form-data"
    allowed = limit + (MULTIPART_SLACK if multipart else 0)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > allowed:
        raise _too_large(int(declared), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > allowed:
            raise _too_large(size, limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    name = None
    if multipart:
        sent = False

        async def replay():  # the body already read, for Starlette's form parser
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            async with Request(request.scope, replay).form(max_files=1, max_fields=8) as form:
                field = form.get("file")
                if not isinstance(field, UploadFile):
                    raise Problem(
                        400,
                        "the multipart form must carry the image in a file field named `file`; "
                        f"got fields {sorted(form.keys())}",
                    )
                name, body = field.filename, await field.read()
        except Problem:
            raise
        except Exception as e:  # noqa: BLE001 - a malformed form, whatever the parser raises
            raise Problem(400, f"the multipart form could not be parsed: {e}") from e
        if len(body) > limit:
            raise _too_large(len(body), limit)
    if not body:
        raise Problem(
            400,
            "the upload is empty: send the image file's bytes as the request body, or as the "
            "`file` field of a multipart form",
        )
    return body, name


def _status(reason):
    if reason.startswith("decompression bomb"):
        return 413
    if reason.startswith("not an image") or "not supported" in reason:
        return 415
    return 400


def decode_image(data, size, channels, max_pixels=None):
    """Pixels of an uploaded image, exactly as `cnnzoo.data.load_image` reads the same file.

    Args:
        data: the file's bytes.
        size: (height, width) to resize to, or None to keep the image's size.
        channels: 1 or 3.
        max_pixels: decompression-bomb limit (`cnnzoo.data.check_image`).

    Returns:
        A uint8 array [height, width, channels].

    Raises:
        Problem: 415 (not an image, an unsupported format), 400 (corrupt,
            truncated), 413 (a decompression bomb).
    """
    reason = check_image(data, max_pixels=max_pixels)  # the bytes as they came: no temporary file
    if reason is not None:
        raise Problem(_status(reason), f"the upload is not a usable image: {reason}")
    try:
        return load_image(data, size, channels)
    except Exception as e:  # noqa: BLE001 - Pillow fails in many ways on damaged data
        raise Problem(400, f"the upload is not a usable image: it failed to decode ({type(e).__name__})") from e
