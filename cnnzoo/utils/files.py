"""Atomic file writes: a crash (even `kill -9`) leaves the old file or the new one, never half of one.

Every file cnnzoo writes for later use (checkpoints, run state, models, plots,
downloaded weights, configs) goes through `atomic_save`: the bytes go to a
temporary name in the target's directory, and `os.replace` (atomic on POSIX and
Windows) moves it into place only once it is complete.
"""

import json
import os
from pathlib import Path

__all__ = ["atomic_save", "atomic_write_text", "atomic_write_json"]


def atomic_save(path, save):
    """Writes a file through `save(tmp_path)` and an atomic rename to `path`.

    Args:
        path: the final path. The temporary one sits in the same directory and
            keeps the suffixes (`.keras`, `.weights.h5`, `.png`), which Keras and
            matplotlib read to pick the format.
        save: a function that writes the file at the path (a str) it is given;
            whatever it raises propagates, and the temporary file is removed.

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
    tmp = path.with_name(f".{stem}.partial-{os.getpid()}{suffix}")
    try:
        save(str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path, text, encoding="utf-8"):
    """Writes `text` to `path` atomically, flushed to disk before the rename.

    Example:

    >>> atomic_write_text("runs/x/state.json", "{}")  # doctest: +SKIP
    """

    def write(tmp):
        with open(tmp, "w", encoding=encoding) as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    return atomic_save(path, write)


def atomic_write_json(path, data, **dumps_kwargs):
    """Writes `data` as JSON to `path` atomically (`json.dumps(data, **dumps_kwargs)`).

    Example:

    >>> atomic_write_json("runs/x/record.json", {"status": "done"})  # doctest: +SKIP
    """
    return atomic_write_text(path, json.dumps(data, **dumps_kwargs))
