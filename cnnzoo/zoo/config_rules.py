"""Value checks for zoo configs: each error names the key, the file, the rule and what was received."""

import math

from cnnzoo.errors import ConfigError, closest

__all__ = [
    "MAX_CONVS",
    "MAX_SIZE",
    "MAX_UNITS",
    "fail",
    "where",
    "check_keys",
    "check_int",
    "check_float",
    "check_bool",
    "check_choice",
    "check_str",
]

MAX_CONVS = 1024  # convolutions in one block: far beyond any real design, and a bound on the tuple it makes
# An image side, kernel, stride or pool size. TensorFlow keeps windows in int32: a max-pool of 2**31 with "same"
# padding aborts the whole process (a failed CHECK in its graph pass), so such configs stop here instead.
MAX_SIZE = 65536
# Classes, filters and dense units: ImageNet-21k has 21,841 classes; 2**20 is far beyond any real head and keeps
# `num_classes=10**12` from reaching TensorFlow (an out-of-memory error there, or a raw int64 ValueError).
MAX_UNITS = 2**20


def fail(where, key, rule, value, hint=""):
    raise ConfigError(f"`{key}` {rule}{where}. Received: {key.split('.')[-1].split('[')[0]}={value!r}.{hint}")


def where(source):
    return f" (in {source})" if source and source != "<memory>" else ""


def check_keys(table, allowed, prefix, source):
    if not isinstance(table, dict):
        fail(where(source), prefix or "config", "must be a table", table)
    for key in table:
        if key not in allowed:
            full = f"{prefix}.{key}" if prefix else key
            raise ConfigError(
                f"`{full}` is not a known key{where(source)}. Known keys: "
                f"{', '.join(sorted(allowed))}.{closest(key, allowed)} Received: {key}={table[key]!r}."
            )


def check_int(value, key, source, lo=1, hi=None):
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        rule = f"must be an integer >= {lo}" + (f" and <= {hi}" if hi is not None else "")
        fail(where(source), key, rule, value)
    return value


def check_float(value, key, source, lo=0.0, hi=None, hi_open=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and value >= lo and (hi is None or (value < hi if hi_open else value <= hi))
    if not ok:
        rule = f"must be a number >= {lo}" + (f" and {'<' if hi_open else '<='} {hi}" if hi is not None else "")
        fail(where(source), key, rule, value)
    return float(value)


def check_bool(value, key, source):
    if not isinstance(value, bool):
        fail(where(source), key, "must be true or false", value)
    return value


def check_choice(value, key, source, choices):
    if value not in choices:
        fail(where(source), key, f"must be one of {', '.join(map(repr, choices))}", value, closest(value, choices))
    return value


def check_str(value, key, source):
    if not isinstance(value, str):
        fail(where(source), key, "must be a string", value)
    return value
