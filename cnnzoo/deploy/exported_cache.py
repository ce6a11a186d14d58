"""A `.keras` model's verified ONNX or LiteRT export, made once and kept in cnnzoo's cache.

`cnnzoo.predict("birds.keras", image)` (`runtime="auto"`) and `runtime="onnx"`
run `$CNNZOO_HOME/exports/<sha256 of birds.keras>/model.onnx`; `onnx.json`
beside it is the entry's record: whether the export agreed with the Keras
model (`cnnzoo.export`'s check: max abs difference and top-1 agreement on
real images), the SHA-256 of the exported file and the versions of the tools
that made it. Nothing is written beside the user's model.

- An entry is found by the model file's bytes: a changed model is a new key,
  a copied or touched one the same key.
- A damaged entry (the exported file's hash differs from its record) or one
  made by other tool versions is rebuilt.
- A failed export or check is recorded too, so it is not tried again on every
  call (`ExportError` with the reason recorded); new tool versions try again.
- Two processes building one entry take turns on a file lock
  (`cnnzoo.utils.locks.RunLock`); the second finds the first's entry. Files
  are written by atomic rename (`cnnzoo.utils.files`).
"""

import json
import logging
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from cnnzoo.deploy.runtimes import SUFFIXES
from cnnzoo.errors import DataNotFoundError, ExportError, MissingExtraError, RunLockedError
from cnnzoo.utils.files import atomic_write_json
from cnnzoo.utils.integrity import sha256_file
from cnnzoo.utils.locks import RunLock

__all__ = ["cached_export", "cached_paths", "cache_root", "model_digest", "live_digest", "read_record", "ENTRY_VERSION"]

log = logging.getLogger("cnnzoo.deploy")

ENTRY_VERSION = 1  # the layout of an entry; another number is rebuilt
LOCK_WAIT_S = 900.0  # longest wait for another process building the same entry
_TOOLS = {"onnx": ("tf2onnx", "onnx", "onnxruntime"), "litert": ("tensorflow", "ai-edge-litert")}
_DIGESTS = {}  # (resolved path, size, mtime_ns) -> sha256: a file is hashed once per process while unchanged


def cache_root():
    """`$CNNZOO_HOME/exports` (default `~/.cnnzoo/exports`): one directory per model file's SHA-256."""
    from cnnzoo.zoo.registry import home

    return home() / "exports"


def model_digest(keras_path):
    """The SHA-256 of a model file, computed once per process while its size and time are unchanged.

    Example:

    >>> model_digest("birds.keras")  # doctest: +SKIP
    '9f86d0...'
    """
    path = Path(keras_path).expanduser()
    if not path.is_file():
        raise DataNotFoundError(
            f"`model` must be a keras.Model or an existing .keras file. Received: model={str(path)!r} (no such file)."
        )
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        if len(_DIGESTS) > 64:
            _DIGESTS.clear()
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


def cached_paths(keras_path, runtime):
    """`(exported file, record file)` of the cache entry of `keras_path` (a `.keras` file, or a `keras.Model`:
    keyed by the SHA-256 of its config and weights) for `runtime` (`"onnx"` or `"litert"`).

    Example:

    >>> exported, record = cached_paths("birds.keras", "onnx")  # doctest: +SKIP
    >>> exported.relative_to(cache_root()).parts[1:], record.name  # doctest: +SKIP
    (('model.onnx',), 'onnx.json')
    """
    digest = model_digest(keras_path) if isinstance(keras_path, (str, Path)) else live_digest(keras_path)
    directory = cache_root() / digest
    return directory / f"model{SUFFIXES[runtime]}", directory / f"{runtime}.json"


def live_digest(model):
    """The SHA-256 of a `keras.Model` in memory: its config, its weights' names, shapes, dtypes and bytes."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256(b"keras.Model\0" + json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    for v in model.weights:
        value = np.ascontiguousarray(v.numpy())
        digest.update(f"{v.path}:{value.shape}:{value.dtype}\0".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def read_record(keras_path, runtime):
    """The record of the cache entry of `keras_path` for `runtime` (a dict), or None when there is none."""
    return _read(cached_paths(keras_path, runtime)[1])


def cached_export(keras_path, runtime):
    """The path of a verified `runtime` export of `keras_path`, exporting (and verifying) it if needed.

    Args:
        keras_path: a `.keras` file.
        runtime: `"onnx"` or `"litert"`.

    Returns:
        The exported file's `Path`, in `cache_root()`; its record says how it
        compared with the Keras model (`read_record`).

    Raises:
        ExportError: the export failed or disagrees with the Keras model (now or
            when it was last tried with the same tools).
        MissingExtraError: the converter or runtime is not installed.

    Example:

    >>> cached_export("birds.keras", "onnx")  # doctest: +SKIP
    PosixPath('/home/me/.cnnzoo/exports/9f86d0.../model.onnx')
    """
    exported, record_path = cached_paths(keras_path, runtime)
    tools = _tool_versions(runtime)
    if _usable(exported, record_path, runtime, tools):
        return exported
    with _waiting_lock(exported.parent, keras_path):
        if _usable(exported, record_path, runtime, tools, quiet=True):  # built by another process while we waited
            return exported
        source = Path(keras_path).expanduser() if isinstance(keras_path, (str, Path)) else keras_path
        _build(source, exported, record_path, runtime, tools)
    return exported


def _usable(exported, record_path, runtime, tools, quiet=False):
    """True for a sound entry, False for none (or one to rebuild); raises the recorded failure."""
    record = _read(record_path)
    if not record or record.get("version") != ENTRY_VERSION or record.get("format") != runtime:
        return False
    if record.get("tools") != tools:
        return False  # other converter or runtime versions: try again
    if record.get("status") == "failed":
        raise ExportError(record.get("reason") or "The export failed.")
    if not exported.is_file() or sha256_file(exported) != record.get("sha256"):
        if not quiet:
            log.warning(
                "the cached export %s is missing or damaged (its hash differs from its record); rebuilding it", exported
            )
        return False
    return True


def _build(keras_path, exported, record_path, runtime, tools):
    from cnnzoo.deploy.export import export

    what = str(keras_path) if isinstance(keras_path, Path) else f"a keras.Model in memory ({keras_path.name})"
    record = {"version": ENTRY_VERSION, "format": runtime, "source": what, "tools": tools}
    record["made"] = time.strftime("%Y-%m-%d %H:%M:%S")
    log.info("exporting %s to %s (once; verified against Keras)", what, exported)
    try:
        result = export(keras_path, exported, runtime)
    except MissingExtraError:
        raise
    except ExportError as e:
        atomic_write_json(record_path, {**record, "status": "failed", "reason": str(e)}, indent=1)
        raise
    except Exception as e:  # noqa: BLE001 - a converter's own error (an op it does not know): recorded, reported
        reason = (
            f"`model` could not be exported to {runtime}: {type(e).__name__}: {str(e)[:500]}. The model runs on "
            f"Keras; `cnnzoo.export` it to see the whole error. Received: model={what!r}."
        )
        atomic_write_json(record_path, {**record, "status": "failed", "reason": reason}, indent=1)
        raise ExportError(reason) from e
    record.update(
        status="ok",
        sha256=sha256_file(exported),
        max_abs_diff=result.max_abs_diff,
        top1_agreement=result.top1_agreement,
        images=result.images,
        verified_on=result.source,
        tolerance=result.tolerance,
        seconds=round(result.seconds, 2),
    )
    atomic_write_json(record_path, record, indent=1)


class _waiting_lock:
    """`RunLock` on the entry's directory, waiting (up to `LOCK_WAIT_S`) while another process holds it."""

    def __init__(self, directory, keras_path):
        self.lock = RunLock(directory, what="export of a cached model", argument="model")
        self.keras_path = keras_path

    def __enter__(self):
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                return self.lock.acquire()
            except RunLockedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def __exit__(self, *exc):
        self.lock.release()
        return False


def _tool_versions(runtime):
    out = {}
    for name in _TOOLS[runtime]:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _read(path):
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
