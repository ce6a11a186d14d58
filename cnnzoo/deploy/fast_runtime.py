"""`runtime="auto"`: a `.keras` model runs on the fastest runtime that agrees with it, else on Keras.

`fast_runtime(path, "auto")` exports the model once to ONNX, verified as
`cnnzoo.export` verifies (max abs difference and top-1 agreement with the Keras
model on real images), kept in cnnzoo's cache keyed by the file's SHA-256
(`cnnzoo.deploy.exported_cache`), and returns it opened in ONNX Runtime
(`Runtime.verified` holds the check). ONNX Runtime ran a one-image call of a
32x32 model in 0.17x, a 224x224 one in 0.59x the time of the TensorFlow
compiled call (docs/benchmarks.md). Where the `export` extra is missing, the
export fails (a layer the converter does not know) or the check disagrees, it
returns None (the caller runs the compiled Keras call) and logs one line per
model and process saying why.
"""

import logging
import os
from pathlib import Path

from cnnzoo.deploy.exported_cache import cache_root, cached_export, live_digest, model_digest, read_record
from cnnzoo.deploy.runtimes import open_runtime
from cnnzoo.errors import ConfigError, ExportError, MissingExtraError

__all__ = ["fast_runtime", "known_runtime", "RUNTIMES", "KERAS_RUNTIMES", "normalise_runtime"]

log = logging.getLogger("cnnzoo.deploy")

RUNTIMES = ("auto", "tensorflow", "keras", "onnx", "litert")  # `runtime=` choices for a Keras model
KERAS_RUNTIMES = ("tensorflow", "keras")  # the compiled Keras call (on the backend in use)
_BY_FILE = {}  # `_file_key` -> Runtime or None (Keras)
_BY_DIGEST = {}  # (sha256, format, cache root) -> Runtime
_TOLD = set()


def normalise_runtime(runtime):
    """Checks `runtime` (None is `"auto"`) and returns it; raises `ConfigError` naming the choices."""
    if runtime is None:
        return "auto"
    if runtime not in RUNTIMES:
        raise ConfigError(
            f"`runtime` must be one of {', '.join(RUNTIMES)} (or None, the same as 'auto'). "
            f"Received: runtime={runtime!r}."
        )
    return runtime


def fast_runtime(model, runtime="auto"):
    """The verified exported runtime for a Keras model, or None where it runs on Keras.

    Args:
        model: the path of a `.keras` file, or a `keras.Model` in memory (only
            for an explicit `"onnx"` or `"litert"`: keyed by its config and
            weights, exported again when they change).
        runtime: `"auto"` (ONNX Runtime when the `export` extra is installed and
            the export agrees with Keras; else None, logged once), `"onnx"` or
            `"litert"` (raise instead of falling back), or `"tensorflow"` /
            `"keras"` (None: the compiled Keras call).

    Returns:
        A `cnnzoo.deploy.runtimes.Runtime` with `verified` (the cache record:
        max abs difference, top-1 agreement, images), or None.

    Raises:
        ExportError, MissingExtraError: for an explicit `"onnx"` or `"litert"`.

    Example:

    >>> runtime = fast_runtime("birds.keras")  # doctest: +SKIP
    >>> runtime.format, runtime.verified["top1_agreement"]  # doctest: +SKIP
    ('onnx', 1.0)
    """
    runtime = normalise_runtime(runtime)
    if runtime in KERAS_RUNTIMES:
        return None
    if not isinstance(model, (str, Path)):
        return _opened(model, runtime, live_digest(model))
    key = _file_key(model, runtime)
    if key in _BY_FILE:  # repeated calls on an unchanged file: one stat, no path objects, no hashing
        return _BY_FILE[key]
    path = Path(model).expanduser()
    key = _file_key(path, runtime)  # None where the file is missing: model_digest names it
    digest = model_digest(path)
    if len(_BY_FILE) > 16:
        _BY_FILE.clear()
    _BY_FILE[key] = opened = _opened(path, runtime, digest)
    return opened


def known_runtime(model, runtime="auto"):
    """The exported runtime already opened in this process for the unchanged `.keras` file `model`, else None.

    One `os.stat` and a dictionary lookup: what `cnnzoo.predict` asks first on every call, before it
    builds any path object (a single 32x32 image runs in ONNX Runtime in about 0.3 ms, and the path
    handling of the full lookup cost half as much again).
    """
    return _BY_FILE.get(_file_key(model, runtime)) if runtime in ("auto", "onnx", "litert") else None


def _file_key(model, runtime):
    """The file's identity and version (device, inode, size, mtime) with what else picks the entry, or None."""
    try:
        stat = os.stat(model)
    except (OSError, TypeError, ValueError):
        return None
    environ = os.environ  # the cache root: $CNNZOO_HOME, else under $HOME
    return (
        stat.st_dev,
        stat.st_ino,
        stat.st_size,
        stat.st_mtime_ns,
        runtime,
        environ.get("CNNZOO_HOME"),
        environ.get("HOME"),
    )


def _opened(model, runtime, digest):
    fmt = "onnx" if runtime == "auto" else runtime
    key = (digest, fmt, str(cache_root()))
    if key in _BY_DIGEST:
        return _BY_DIGEST[key]
    try:
        exported = cached_export(model, fmt)
    except (MissingExtraError, ExportError) as e:
        if runtime != "auto":
            raise
        _tell(digest, model, e)
        return None
    opened = open_runtime(exported)
    opened.verified = read_record(model, fmt)
    if len(_BY_DIGEST) > 8:
        _BY_DIGEST.pop(next(iter(_BY_DIGEST)))
    _BY_DIGEST[key] = opened
    return opened


def _tell(digest, model, error):
    """One log line per model and process: why it runs on Keras."""
    if digest in _TOLD:
        return
    _TOLD.add(digest)
    where = str(model) if isinstance(model, Path) else getattr(model, "name", "the model")
    if isinstance(error, MissingExtraError):
        log.info(
            "%s runs on Keras: ONNX Runtime would be faster; install the `export` extra "
            "(pip install 'cnnzoo[export]') for runtime='auto' to use it",
            where,
        )
    else:
        log.warning("%s runs on Keras, not ONNX Runtime: %s", where, str(error).splitlines()[0][:800])
