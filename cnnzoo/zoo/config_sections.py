"""The `[search]` and `[weights]` tables of a zoo config: `SearchParam`, `WeightsSource` and their parsing."""

import re
from dataclasses import dataclass, fields

from cnnzoo.zoo.config_rules import check_choice, check_float, check_keys, check_str, fail, where

__all__ = ["SearchParam", "WeightsSource", "parse_search_param", "parse_weights"]


@dataclass(frozen=True)
class WeightsSource:
    """A named set of weights for an entry (`get(name, weights=NAME)`).

    `file` is a path inside the installed cnnzoo package (shipped weights) or
    a file name in the cache; `url` is fetched into `$CNNZOO_HOME/weights`
    and checked against `sha256` (or the upstream `md5` where only that is
    published). `target` says what the file holds: the whole `"model"` or only
    the `"backbone"` (keras.applications include_top=False weights).
    `accuracy` is the measured accuracy and what it was measured on, as text
    (`"99.44% on the 360 held-out images of ..."`); the model cards show it.
    """

    name: str
    file: str = ""
    url: str = ""
    sha256: str = ""
    md5: str = ""
    target: str = "model"
    description: str = ""
    accuracy: str = ""


@dataclass(frozen=True)
class SearchParam:
    """One searched value: an int or float range, a choice, or a fixed value."""

    name: str
    kind: str  # "int" | "float" | "choice" | "fixed"
    min: float = 0
    max: float = 0
    step: float = 0
    sampling: str = "linear"
    values: tuple = ()
    value: object = None


def parse_search_param(name, value, source):
    key = f"search.{name}"
    if isinstance(value, dict):
        check_keys(value, {"min", "max", "step", "sampling"}, key, source)
        if "min" not in value or "max" not in value:
            fail(where(source), key, "must give both `min` and `max`", value)
        lo, hi = value["min"], value["max"]
        is_int = all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi, value.get("step", 1)))
        for k in ("min", "max", "step"):
            if k in value:
                check_float(value[k], f"{key}.{k}", source, lo=-1e9)
        if hi < lo:
            fail(where(source), f"{key}.max", f"must be >= `min` ({lo})", hi)
        sampling = check_choice(
            value.get("sampling", "linear"), f"{key}.sampling", source, ("linear", "log", "reverse_log")
        )
        if sampling != "linear" and lo <= 0:
            fail(where(source), f"{key}.min", "must be > 0 with log sampling", lo)
        return SearchParam(
            name,
            "int" if is_int else "float",
            min=lo,
            max=hi,
            step=value.get("step", 1 if is_int else 0),
            sampling=sampling,
        )
    if isinstance(value, list):
        if not value or len({type(v) for v in value}) != 1:
            fail(where(source), key, "must be a non-empty list of values of one type", value)
        return SearchParam(name, "choice", values=tuple(value))
    if isinstance(value, (int, float, str, bool)):
        return SearchParam(name, "fixed", value=value)
    fail(where(source), key, "must be a range table {min, max}, a list of choices, or a fixed value", value)


def parse_weights(name, table, source):
    key = f"weights.{name}"
    check_keys(table, {f.name for f in fields(WeightsSource)} - {"name"}, key, source)
    values = {k: check_str(v, f"{key}.{k}", source) for k, v in table.items()}
    if not values.get("file") and not values.get("url"):
        fail(where(source), key, "must give a `file` or a `url`", table)
    if values.get("url") and not (values.get("sha256") or values.get("md5")):
        fail(where(source), f"{key}.sha256", "is required for a `url` (downloads are always hash-checked)", table)
    for algo, length in (("sha256", 64), ("md5", 32)):
        if values.get(algo) and not re.fullmatch(f"[0-9a-f]{{{length}}}", values[algo]):
            fail(where(source), f"{key}.{algo}", f"must be {length} lowercase hex digits", values[algo])
    check_choice(values.get("target", "model"), f"{key}.target", source, ("model", "backbone"))
    return WeightsSource(name=name, **values)
