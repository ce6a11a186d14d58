"""A `.keras` model's ONNX or LiteRT export, made once and kept beside it while the model is unchanged.

`cnnzoo.predict("birds.keras", image, runtime="onnx")` runs `birds.keras.onnx`;
`birds.keras.onnx.fingerprint.json` records the size, modification time and
SHA-256 of the `.keras` file it came from. A changed size or hash exports it
again; a changed time alone (a copy, a `touch`) is checked by hash and kept.
"""

import json
from pathlib import Path

from cnnzoo.deploy.runtimes import SUFFIXES
from cnnzoo.errors import DataNotFoundError
from cnnzoo.utils.files import atomic_write_json

__all__ = ["cached_export", "cached_paths"]


def cached_paths(keras_path, runtime):
    """`(exported file, fingerprint file)` beside `keras_path` for `runtime` (`"onnx"` or `"litert"`).

    Example:

    >>> cached_paths("birds.keras", "onnx")
    (PosixPath('birds.keras.onnx'), PosixPath('birds.keras.onnx.fingerprint.json'))
    """
    keras_path = Path(keras_path)
    exported = keras_path.with_name(keras_path.name + SUFFIXES[runtime])
    return exported, exported.with_name(exported.name + ".fingerprint.json")


def cached_export(keras_path, runtime):
    """The path of an up-to-date `runtime` export of `keras_path`, exporting (and verifying) it if needed.

    Example:

    >>> cached_export("birds.keras", "onnx")  # doctest: +SKIP
    PosixPath('birds.keras.onnx')
    """
    from cnnzoo.deploy.export import export
    from cnnzoo.zoo.weights import file_hash

    keras_path = Path(keras_path).expanduser()
    if not keras_path.is_file():
        raise DataNotFoundError(
            f"`model` must be an existing .keras file for runtime={runtime!r}. "
            f"Received: model={str(keras_path)!r} (no such file)."
        )
    exported, fingerprint_path = cached_paths(keras_path, runtime)
    stat = keras_path.stat()
    now = {"source": keras_path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "format": runtime}
    old = _read(fingerprint_path) if exported.is_file() else None
    if old and all(old.get(k) == now[k] for k in ("size", "mtime_ns", "format")):
        return exported
    now["sha256"] = file_hash(keras_path)
    if old and old.get("size") == now["size"] and old.get("sha256") == now["sha256"] and old.get("format") == runtime:
        atomic_write_json(fingerprint_path, now, indent=1)  # same bytes, new time: keep the export
        return exported
    export(keras_path, exported, runtime)
    atomic_write_json(fingerprint_path, now, indent=1)
    return exported


def _read(path):
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
