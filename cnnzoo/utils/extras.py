"""Optional dependencies (pyproject extras): import one, or say which extra brings it."""

import importlib

from cnnzoo.errors import MissingExtraError

__all__ = ["require"]


def require(module, extra, purpose):
    """Imports `module`, or raises `MissingExtraError` naming the extra that installs it.

    Args:
        module: the module to import, e.g. `"onnxruntime"`.
        extra: the cnnzoo extra that brings it, e.g. `"export"`.
        purpose: what needs it, for the message, e.g. `"running .onnx files"`.

    Returns:
        The imported module.

    Example:

    >>> ort = require("onnxruntime", "export", "running .onnx files")  # doctest: +SKIP
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(
            f"{purpose} needs the `{module}` package, which is not installed. Install the `{extra}` extra: "
            f"pip install 'cnnzoo[{extra}]'. Received: ImportError: {e}."
        ) from e
