"""Argument checks shared by the workflows: the error names the argument, the rule and what was received."""

import math
import numbers

from cnnzoo.errors import ConfigError

__all__ = ["check_int", "check_fraction", "is_int", "is_number"]


def is_int(value):
    """True for an int (numpy ints included), False for bools and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value):
    """True for a finite int or float, False for bools, NaN, infinities and everything else."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_int(value, key, lo=1, hi=None, allow_none=False, error=ConfigError):
    """Returns `value` as an int, or raises `error` naming `key`.

    Args:
        value: what the caller passed.
        key: the argument's name, shown in backticks.
        lo: smallest allowed value.
        hi: largest allowed value, or None.
        allow_none: whether None is accepted (and returned).
        error: the exception class (a `CnnzooError`) to raise.

    Returns:
        `int(value)`, or None.

    Example:

    >>> check_int(3, "epochs")
    3
    """
    if value is None and allow_none:
        return None
    if not is_int(value) or value < lo or (hi is not None and value > hi):
        rule = f"an integer >= {lo}" + (f" and <= {hi}" if hi is not None else "")
        prefix = "None or " if allow_none else ""
        raise error(f"`{key}` must be {prefix}{rule}. Received: {key}={value!r}.")
    return int(value)


def check_fraction(value, key, allow_zero=True, error=ConfigError):
    """Returns `value` as a float in [0, 1) (or (0, 1)), or raises `error` naming `key`.

    Example:

    >>> check_fraction(0.2, "validation_split")
    0.2
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (0 <= value < 1 if allow_zero else 0 < value < 1)
    if not ok:
        interval = "[0, 1)" if allow_zero else "(0, 1)"
        raise error(f"`{key}` must be a number in {interval}. Received: {key}={value!r}.")
    return float(value)
