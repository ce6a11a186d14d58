"""`cnnzoo.export` from the JAX or PyTorch backend: the same weights exported in a TensorFlow-backend process.

`export_in_tensorflow` saves the model as `.keras` (a file Keras reads on
every backend), runs `cnnzoo.export` on it in a child process with
`KERAS_BACKEND=tensorflow`, and returns the child's `ExportResult`. Errors
come back as the same `cnnzoo.errors` class with the same message, and the
child's `DataWarning`s are warned again in the caller. Why the
converters run under TensorFlow: `cnnzoo.backend.export`.
"""

import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from cnnzoo import errors

__all__ = ["export_in_tensorflow"]

# The child runs `cnnzoo.deploy.export.export`; named in this string, not imported here (export imports this module).
_CHILD = (
    "import sys; from cnnzoo.deploy.export import export; "
    "from cnnzoo.deploy.export_process import run_child; run_child(sys.argv[1], export)"
)


def export_in_tensorflow(model, out, format, verify_with=None, quantize=None, tolerance=None):
    """`cnnzoo.export(model, out, ...)` run by a child process on the TensorFlow backend.

    Returns:
        The child's `ExportResult.to_dict()` (`cnnzoo.deploy.export` makes it an `ExportResult` again).
    """
    with tempfile.TemporaryDirectory(prefix="cnnzoo-export-") as tmp:
        if isinstance(model, (str, os.PathLike)):
            source = str(Path(model).expanduser().resolve())
        else:
            source = str(Path(tmp) / "model.keras")
            model.save(source)
        if isinstance(verify_with, np.ndarray):
            np.save(Path(tmp) / "images.npy", verify_with)
            images = {"npy": str(Path(tmp) / "images.npy")}
        elif isinstance(verify_with, (list, tuple)):
            images = {"files": [str(Path(p).expanduser().resolve()) for p in verify_with]}
        else:
            images = None if verify_with is None else {"path": str(Path(verify_with).expanduser().resolve())}
        request = dict(model=source, out=str(Path(out).expanduser().resolve()), format=format, images=images)
        request.update(quantize=quantize, tolerance=tolerance)
        env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, json.dumps(request)], env=env, capture_output=True, text=True
        )
    answer = _answer(done)
    for kind, message in answer.get("warnings", []):  # the child's cnnzoo warnings, for this caller to see
        warnings.warn(message, getattr(errors, kind, UserWarning), stacklevel=4)
    if "error" in answer:
        kind, message = answer["error"]
        error = getattr(errors, kind, None)
        raise (error if isinstance(error, type) and issubclass(error, errors.CnnzooError) else errors.ExportError)(
            message
        )
    return answer["result"]


def _answer(done):
    lines = done.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        raise errors.ExportError(
            f"The TensorFlow-backend export process failed (exit {done.returncode}): "
            f"{done.stderr.strip()[-2000:] or 'no output'}"
        ) from None


def run_child(request, export):
    """The child's side: `export` as asked (JSON), print `{"result": ...}` or `{"error": [class, message]}`."""
    request = json.loads(request)
    images = request.pop("images") or {}
    verify_with = np.load(images["npy"]) if "npy" in images else images.get("files") or images.get("path")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", errors.DataWarning)
        try:
            result = export(request["model"], request["out"], request["format"], verify_with=verify_with,
                            quantize=request["quantize"], tolerance=request["tolerance"])  # fmt: skip
            answer = {"result": result.to_dict()}
        except errors.CnnzooError as e:
            answer = {"error": [type(e).__name__, str(e)]}
    answer["warnings"] = [[w.category.__name__, str(w.message)] for w in caught if w.category is errors.DataWarning]
    print(json.dumps(answer, default=str))
