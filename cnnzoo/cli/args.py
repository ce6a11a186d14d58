"""Argument helpers shared by the `cnnzoo` commands."""

import argparse

from cnnzoo.utils.text import human  # noqa: F401  (re-exported for the commands)

__all__ = ["parse_shape", "human"]


def parse_shape(text):
    """argparse type for `HxWxC` (or `H,W,C`): returns a tuple of 3 ints."""
    try:
        parts = [int(p) for p in text.lower().replace("x", ",").split(",") if p.strip()]
    except ValueError:
        parts = []
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected HxWxC such as 224x224x3, got {text!r}")
    return tuple(parts)
