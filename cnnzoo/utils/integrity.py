"""SHA-256 sidecars: a file cnnzoo writes and later trusts carries `<file>.sha256` beside it.

HDF5 and most formats keep no checksum of their arrays, so a flipped byte in a
checkpoint loads silently. `write_sidecar` records the file's digest in the
`sha256sum` format (`<hex>  <name>`, so `sha256sum -c` checks it too); `verify`
recomputes it before the file is used and raises `IntegrityError` naming the
file when they differ. A file without a sidecar (written by an older cnnzoo or
by hand) is trusted as before unless `required=True`.
"""

import hashlib
from pathlib import Path

from cnnzoo.errors import IntegrityError
from cnnzoo.utils.files import atomic_save, atomic_write_text

__all__ = [
    "SUFFIX",
    "sha256_file",
    "sidecar_path",
    "write_sidecar",
    "read_sidecar",
    "verify",
    "is_intact",
    "atomic_save_checked",
    "remove_with_sidecar",
]

SUFFIX = ".sha256"
_CHUNK = 1 << 20


def sha256_file(path):
    """The lowercase hex SHA-256 of a file (or, for a directory, of its files' names and bytes in sorted order).

    Args:
        path: str or `Path` of a file or a directory (a SavedModel).

    Returns:
        The 64-character hex digest.

    Example:

    >>> sha256_file("run/checkpoints/stage1.weights.h5")  # doctest: +SKIP
    '9f86d0...'
    """
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            digest.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def sidecar_path(path):
    """`<path>.sha256`, the sidecar of `path`."""
    path = Path(path)
    return path.with_name(path.name + SUFFIX)


def write_sidecar(path, digest=None):
    """Writes `<path>.sha256` (atomically) with the digest of `path` and returns the digest.

    Args:
        path: the file just written (after its atomic rename into place).
        digest: its digest when the caller has it already; else it is computed.

    Returns:
        The hex digest written.

    Example:

    >>> write_sidecar("run/state.json")  # doctest: +SKIP
    '2c26b4...'
    """
    path = Path(path)
    digest = digest or sha256_file(path)
    atomic_write_text(sidecar_path(path), f"{digest}  {path.name}\n")
    return digest


def read_sidecar(path):
    """The digest recorded beside `path`, or None where there is no (readable) sidecar."""
    side = sidecar_path(path)
    try:
        text = side.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError):
        return None
    return text[0].lower() if text and len(text[0]) == 64 else None


def verify(path, what="file", required=False, fix=None):
    """Checks `path` against its sidecar before it is used.

    Args:
        path: the file to check.
        what: what the file is, for the message (`"checkpoint"`, `"feature cache"`).
        required: raise when there is no sidecar (for files cnnzoo always writes one for).
        fix: what to do about a damaged file, for the message (default: restore it or rerun the step that wrote it).

    Returns:
        The digest when it was checked, None when there is no sidecar (and not `required`).

    Raises:
        IntegrityError: (a `ValueError`) the bytes differ from the recorded digest, or the
            sidecar is missing and `required`.

    Example:

    >>> verify("run/checkpoints/stage1.weights.h5", what="checkpoint")  # doctest: +SKIP
    """
    path = Path(path)
    want = read_sidecar(path)
    if want is None:
        if required:
            raise IntegrityError(
                f"The {what} `{path}` has no readable checksum `{sidecar_path(path).name}` beside it, so it "
                f"cannot be trusted. Received: {path}. Write it again (rerun the step that made it)."
            )
        return None
    got = sha256_file(path)
    if got != want:
        raise IntegrityError(
            f"The {what} `{path}` is damaged: its SHA-256 does not match `{sidecar_path(path).name}`. "
            f"Received: sha256={got[:16]}..., recorded {want[:16]}.... Nothing was loaded from it; "
            f"{fix or 'restore it from a copy or rerun the step that wrote it'}."
        )
    return got


def is_intact(path, what="file"):
    """True when `path` exists and matches its sidecar (or has none); False when it is missing or damaged."""
    try:
        return Path(path).exists() and (verify(path, what) or True)
    except IntegrityError:
        return False


def atomic_save_checked(path, save, **kwargs):
    """`cnnzoo.utils.files.atomic_save` with the sidecar: the file is summed as written, before its rename.

    The sidecar is committed first, then the file: a crash between the two leaves
    a file that does not match its sidecar (reported as damaged, never trusted),
    not an unchecked one.

    Args:
        path: the final path.
        save: a function that writes the file at the path (a str) it is given.
        **kwargs: `size_hint`, `advice`, as `atomic_save` takes them.

    Returns:
        `path`, as a `Path`.

    Example:

    >>> atomic_save_checked("run/stage_1.weights.h5", model.save_weights)  # doctest: +SKIP
    PosixPath('run/stage_1.weights.h5')
    """

    def save_and_sum(tmp):
        save(tmp)
        write_sidecar(path, sha256_file(tmp))

    return atomic_save(path, save_and_sum, **kwargs)


def remove_with_sidecar(path):
    """Removes `path` (a file) and its sidecar, when they exist."""
    Path(path).unlink(missing_ok=True)
    sidecar_path(path).unlink(missing_ok=True)
