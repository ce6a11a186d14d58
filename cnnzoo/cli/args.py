"""Argument helpers shared by the `cnnzoo` commands."""

import argparse
import inspect

from cnnzoo.utils.text import human  # noqa: F401  (re-exported for the commands)

__all__ = ["parse_shape", "defaults_of", "human"]


def parse_shape(text):
    """argparse type for `HxWxC` (or `H,W,C`): returns a tuple of 3 ints."""
    try:
        parts = [int(p) for p in text.lower().replace("x", ",").split(",") if p.strip()]
    except ValueError:
        parts = []
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected HxWxC such as 224x224x3, got {text!r}")
    return tuple(parts)


def defaults_of(function):
    """`{parameter: default}` of a library function, for a command's defaults (written once, in the signature).

    Example:

    >>> defaults_of(cnnzoo.deploy.inference.predict)["top_k"]  # doctest: +SKIP
    1
    """
    return {name: p.default for name, p in inspect.signature(function).parameters.items() if p.default is not p.empty}
