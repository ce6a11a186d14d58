"""Atomic file writes: a crash (even `kill -9`) leaves the old file or the new one, never half of one.

Every file cnnzoo writes for later use (checkpoints, run state, models, plots,
downloaded weights, configs) goes through `atomic_save`: the bytes go to a
temporary name in the target's directory, and `os.replace` (atomic on POSIX and
Windows) moves it into place only once it is complete.

A write that runs out of space (disk full, quota, `RLIMIT_FSIZE`) raises
`cnnzoo.errors.DiskFullError` naming the file; the file there before is untouched.
HDF5 (h5py 3.14 / HDF5 1.14) crashes the process with a segmentation fault after a
failed write, so callers writing `.h5` files pass `size_hint` and the room is
checked before the first byte is written.
"""

import errno
import json
import os
import re
import shutil
from pathlib import Path

from cnnzoo.errors import DiskFullError

__all__ = [
    "atomic_save",
    "atomic_save_dir",
    "atomic_write_text",
    "atomic_write_json",
    "check_room",
    "remove_partials",
    "PARTIAL",
]

PARTIAL = ".partial-"  # in the names of files being written: `.<stem>.partial-<pid><suffix>`
_NO_ROOM = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_ERRNO_IN_TEXT = re.compile(r"errno = (\d+)")  # how HDF5 reports a failed write inside h5py's message


def atomic_save(path, save, *, size_hint=None, advice=None):
    """Writes a file through `save(tmp_path)` and an atomic rename to `path`.

    Args:
        path: the final path. The temporary one sits in the same directory and
            keeps the suffixes (`.keras`, `.weights.h5`, `.png`), which Keras and
            matplotlib read to pick the format.
        save: a function that writes the file at the path (a str) it is given;
            whatever it raises propagates, and the temporary file is removed.
        size_hint: optional bytes the file will take at most: when the disk or
            the process's file-size limit has less room, `DiskFullError` is
            raised before anything is written.
        advice: what to do when there is no room, for the `DiskFullError`
            message (default: free space or write elsewhere).

    Raises:
        DiskFullError: (an `OSError`) no room for the file; nothing was replaced.

    Returns:
        `path`, as a `Path`.

    Example:

    >>> atomic_save("runs/x/model.keras", model.save)  # doctest: +SKIP
    PosixPath('runs/x/model.keras')
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".weights.h5") else path.suffix
    stem = path.name[: -len(suffix)] if suffix else path.name
    tmp = path.with_name(f".{stem}{PARTIAL}{os.getpid()}{suffix}")
    if size_hint is not None:
        check_room(path, size_hint, advice)
    try:
        save(str(tmp))
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        code = _no_room(e)
        if code is None:
            raise
        raise _disk_full(path, code, _reason(e), advice) from e
    return path


def atomic_save_dir(path, save):
    """Writes a directory through `save(tmp_dir)` and a rename to `path` (a SavedModel, say).

    `save` fills the temporary directory it is given (beside `path`); when it
    raises, the temporary directory is removed and `path` is untouched. A
    directory already at `path` is moved aside, replaced, then removed: a
    reader sees the old directory or the new one, never half of one.

    Returns:
        `path`, as a `Path`.

    Example:

    >>> atomic_save_dir("exported/digits", lambda tmp: model.export(tmp))  # doctest: +SKIP
    PosixPath('exported/digits')
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{PARTIAL}{os.getpid()}")
    old = path.with_name(f".{path.name}{PARTIAL}{os.getpid()}-old")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save(str(tmp))
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not path.exists():
            os.replace(old, path)  # put the old directory back
        code = _no_room(e)
        if code is None:
            raise
        raise _disk_full(path, code, _reason(e), None) from e
    finally:
        shutil.rmtree(old, ignore_errors=True)
    return path


def check_room(path, size, advice=None):
    """Raises `DiskFullError` when `size` bytes cannot be written at `path` (free space, `RLIMIT_FSIZE`).

    Example:

    >>> check_room("runs/x/model.keras", 10**6)  # doctest: +SKIP
    """
    path = Path(path)
    size = int(size)
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    if free is not None and size > free:
        raise _disk_full(path, errno.ENOSPC, f"it needs about {_mb(size)}, the disk has {_mb(free)} free", advice)
    limit = _file_size_limit()
    if limit is not None and size > limit:
        raise _disk_full(
            path,
            errno.EFBIG,
            f"it needs about {_mb(size)}, over this process's file-size limit (RLIMIT_FSIZE) of {_mb(limit)}",
            advice,
        )


def remove_partials(directory):
    """Removes the temporary files of writes a killed process left in `directory` (and below); returns them.

    Only call it while no other process writes there (under the directory's `RunLock`).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.rglob(f".*{PARTIAL}*") if p.is_file()]
    for p in found:
        p.unlink(missing_ok=True)
    return found


def _no_room(exc):
    """The errno when `exc` (or what caused it) is a write that ran out of space, else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        code = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
        if code in _NO_ROOM:
            return code
        m = _ERRNO_IN_TEXT.search(str(exc))
        if m and int(m.group(1)) in _NO_ROOM:
            return int(m.group(1))
        exc = exc.__cause__ or exc.__context__
    return None


def _reason(exc):
    text = getattr(exc, "strerror", None) or str(exc)
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _disk_full(path, code, reason, advice):
    advice = advice or "Free space on that disk (or raise the file-size limit), or write the file elsewhere."
    detail = os.strerror(code) if reason in ("", os.strerror(code)) else f"{os.strerror(code)}: {reason}"
    error = DiskFullError(
        f"Could not write {str(path)!r}: no room for it ({detail}). "
        f"Nothing was replaced: the file there before, if any, is intact. {advice}"
    )
    error.errno, error.strerror, error.filename = code, os.strerror(code), str(path)
    return error


def _file_size_limit():
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def _mb(n):
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


def atomic_write_text(path, text, encoding="utf-8", *, advice=None):
    """Writes `text` to `path` atomically, flushed to disk before the rename.

    Example:

    >>> atomic_write_text("runs/x/state.json", "{}")  # doctest: +SKIP
    """

    def write(tmp):
        with open(tmp, "w", encoding=encoding) as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    return atomic_save(path, write, advice=advice)


def atomic_write_json(path, data, **dumps_kwargs):
    """Writes `data` as JSON to `path` atomically (`json.dumps(data, **dumps_kwargs)`).

    Example:

    >>> atomic_write_json("runs/x/record.json", {"status": "done"})  # doctest: +SKIP
    """
    return atomic_write_text(path, json.dumps(data, **dumps_kwargs))
