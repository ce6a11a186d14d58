"""Argument helpers shared by the `cnnzoo` commands."""

import argparse

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


def human(n):
    """`1234567` -> `"1.23M"`: counts for tables."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)
