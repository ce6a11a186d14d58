"""One `[search]` entry (`config.SearchParam`): its rules, its values, its keras-tuner declaration."""

import math
import re

from cnnzoo.errors import ConfigError
from cnnzoo.zoo import config

__all__ = [
    "check_applicable",
    "check_value",
    "check_param",
    "LAYER_NAME",
    "widen",
    "values_of",
    "largest",
    "snap",
    "middle",
    "declare",
    "COUNTS",
]

COUNTS = ("conv_blocks", "stages", "dense_layers")
# a per-layer hyperparameter: its `[search]` key and the block, stage or dense layer (from 1)
LAYER_NAME = re.compile(r"^(stage_blocks|stage_filters|filters|convs|kernel_size|units)_([1-9][0-9]*)$")
_CONV_KEYS = ("conv_blocks", "filters", "convs", "kernel_size", "batch_norm")
_STAGE_KEYS = ("stages", "stage_blocks", "stage_filters")

# key -> (type, lowest, highest, rule text)
_RULES = {
    "conv_blocks": (int, 1, None, "must be integers >= 1 (number of conv blocks)"),
    "filters": (int, 1, None, "must be integers >= 1 (conv widths)"),
    "convs": (int, 1, None, "must be integers >= 1 (convolutions per block)"),
    "kernel_size": (int, 1, None, "must be integers >= 1 (square kernel sides)"),
    "stages": (int, 1, None, "must be integers >= 1 (number of residual stages)"),
    "stage_blocks": (int, 1, None, "must be integers >= 1 (residual blocks per stage)"),
    "stage_filters": (int, 1, None, "must be integers >= 1 (residual stage widths)"),
    "dense_layers": (int, 0, None, "must be integers >= 0 (number of hidden dense layers)"),
    "units": (int, 1, None, "must be integers >= 1 (dense widths)"),
    "dropout": (float, 0.0, 1.0, "must be numbers in [0, 1)"),
    "learning_rate": (float, 0.0, 10.0, "must be numbers > 0 and <= 10"),
    "batch_norm": (bool, None, None, "must be true or false"),
    "optimizer": (str, None, None, f"must be optimizer names: {', '.join(config.OPTIMIZERS)}"),
}


def _bad(key, rule, value, fix="Fix the `[search]` table or the `search=` argument."):
    raise ConfigError(f"`search.{key}` {rule}. Received: {key}={value!r}. {fix}")


def check_value(key, value, where="search"):
    """Raises `ConfigError` unless `value` is valid for search key `key` (`where`: "search" or "fixed")."""
    kind, lo, hi, rule = _RULES[key]
    ok = True
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is str:
        ok = value in config.OPTIMIZERS
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= lo
    else:
        ok = (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and (value > lo if key == "learning_rate" else value >= lo)
            and (value <= hi if key == "learning_rate" else value < hi)
        )
    if not ok:
        if where == "fixed":
            raise ConfigError(f"`{key}` {rule}. Received: {key}={value!r}. Pass a valid value or leave it out.")
        _bad(key, rule, value)


def check_applicable(spec, keys, value_of):
    """Raises `ConfigError` for a searched or pinned key `spec` has nothing to apply it to.

    Backbone entries search neither conv blocks nor residual stages; entries without
    `[[stages]]` cannot search stages. `keys`: search keys and hp names; `value_of(key)`:
    what was given for it (for the message).
    """
    base = lambda k: LAYER_NAME.match(k).group(1) if LAYER_NAME.match(k) else k  # noqa: E731
    wrong = [k for k in keys if base(k) in _STAGE_KEYS and not spec.stages]
    what, rule = "searches residual stages", f"`{spec.name}` has none (no `[[stages]]`)"
    if spec.backbone is not None:
        wrong = [k for k in keys if base(k) in _CONV_KEYS + _STAGE_KEYS]
        what = "searches conv blocks" if wrong and base(wrong[0]) in _CONV_KEYS else what
        rule = (
            f"`{spec.name}` has a {spec.backbone.application} backbone instead: backbone entries "
            f"search only dense_layers, units, dropout, learning_rate and optimizer"
        )
    if wrong:
        raise ConfigError(f"`{wrong[0]}` {what}, and {rule}. Received: {wrong[0]}={value_of(wrong[0])!r}.")


def check_param(p):
    """Validates one `SearchParam` against the rules of its key."""
    kind, _, _, rule = _RULES[p.name]
    if p.kind == "fixed":
        check_value(p.name, p.value)
    elif p.kind == "choice":
        for v in p.values:
            check_value(p.name, v)
    else:
        if kind in (bool, str):
            _bad(p.name, rule + " (give a list of choices, not a range)", {"min": p.min, "max": p.max})
        if kind is int and p.kind != "int":
            _bad(
                p.name,
                rule + " (an integer range needs integer `min`, `max` and `step`)",
                {"min": p.min, "max": p.max, "step": p.step},
            )
        check_value(p.name, p.min)
        check_value(p.name, p.max)
        if p.name in COUNTS and p.sampling != "linear":
            _bad(p.name, "must use linear sampling (it counts layers)", p.sampling)
    return p


def widen(p, value):
    """`p` widened so that the entry's own `value` is one of its values."""
    if p.kind == "fixed":
        return p
    if p.kind == "choice":
        if value in p.values:
            return p
        values = p.values + (value,)
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            values = tuple(sorted(values))
        return config.SearchParam(p.name, "choice", values=values)
    if p.min <= value <= p.max:
        return p
    return config.SearchParam(
        p.name, p.kind, min=min(p.min, value), max=max(p.max, value), step=p.step, sampling=p.sampling
    )


def values_of(p):
    """All values an integer `SearchParam` can take (counts only)."""
    if p.kind == "fixed":
        return [p.value]
    if p.kind == "choice":
        return sorted(p.values)
    return list(range(int(p.min), int(p.max) + 1, int(p.step or 1)))


def largest(p):
    return max(values_of(p)) if p.kind in ("choice", "fixed") else int(p.max)


def snap(p, target):
    """The largest value of integer space `p` that is <= target (or its smallest)."""
    values = values_of(p)
    below = [v for v in values if v <= target]
    return max(below) if below else min(values)


def middle(p):
    values = values_of(p)
    return values[len(values) // 2]


def declare(hp, p, name, default):
    """Declares hyperparameter `name` with the range of `p` and the given default."""
    if p.kind == "fixed":
        return hp.Fixed(name, p.value)
    if p.kind == "choice":
        if set(p.values) == {True, False} and all(isinstance(v, bool) for v in p.values):
            return hp.Boolean(name, default=default)
        if len(p.values) == 1:
            return hp.Fixed(name, p.values[0])
        values = list(p.values)
        if all(isinstance(v, (int, float)) for v in values) and any(isinstance(v, float) for v in values):
            values, default = [float(v) for v in values], float(default)
        return hp.Choice(name, values, default=default)
    if p.kind == "int":
        return hp.Int(name, int(p.min), int(p.max), step=int(p.step or 1), sampling=p.sampling, default=int(default))
    return hp.Float(
        name,
        float(p.min),
        float(p.max),
        step=float(p.step) if p.step else None,
        sampling=p.sampling,
        default=float(default),
    )
