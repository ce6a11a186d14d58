"""Zoo configs: TOML files read and validated into frozen dataclasses.

A config is pure data (see `zoo_configs/*.toml`). This module knows the
schema, every default (each one lives here and nowhere else), and how to
apply overrides; it never imports TensorFlow or Keras.
"""

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from cnnzoo.errors import ConfigError, closest

__all__ = [
    "Block",
    "Head",
    "Backbone",
    "Train",
    "SearchParam",
    "WeightsSource",
    "ModelSpec",
    "load",
    "loads",
    "parse",
    "apply_overrides",
    "to_dict",
    "dumps",
    "PREPROCESSING",
    "ACTIVATIONS",
    "OVERRIDE_KEYS",
]

PREPROCESSING = ("none", "rescale_0_1", "rescale_-1_1", "caffe", "torch")
ACTIVATIONS = (
    "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "swish", "silu",
    "mish", "tanh", "sigmoid", "softplus", "linear",
)
POOLS = ("max", "avg", "none")
PADDINGS = ("same", "valid")
HEAD_POOLING = ("flatten", "avg", "max")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "nadam")
SEARCH_KEYS = (
    "conv_blocks", "filters", "convs", "kernel_size", "batch_norm",
    "dense_layers", "units", "dropout", "learning_rate", "optimizer",
)
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Block:
    """A conv block: `len(filters)` convolutions, then an optional pooling."""

    filters: tuple = (32,)
    kernel_size: int = 3
    strides: int = 1
    padding: str = "same"
    activation: str = "relu"
    batch_norm: bool = False
    bn_momentum: float = 0.9  # Keras' 0.99 leaves small-data models unusable for the first epochs
    pool: str = "max"
    pool_size: int = 2
    pool_strides: int = 0  # 0 means "equal to pool_size"
    pool_padding: str = "valid"
    dropout: float = 0.0

    @property
    def convs(self):
        return len(self.filters)


@dataclass(frozen=True)
class Head:
    """The classifier: pooling or flatten, hidden dense layers, softmax."""

    pooling: str = "flatten"
    dense: tuple = ()
    dropout: float = 0.0
    activation: str = "relu"


@dataclass(frozen=True)
class Backbone:
    """A `keras.applications` feature extractor used in place of `blocks`."""

    application: str = ""
    kwargs: dict = field(default_factory=dict)
    params: int = 0  # cached parameter count (include_top=False)
    flops: int = 0  # cached forward FLOPs per image at the entry's input_shape
    channels: int = 0  # cached channels of the feature map it returns
    reduction: int = 32  # input side / feature-map side


@dataclass(frozen=True)
class Train:
    """Compile defaults used by `cnnzoo.get(..., compile=True)`."""

    optimizer: str = "adam"
    learning_rate: float = 1e-3


@dataclass(frozen=True)
class WeightsSource:
    """A named set of weights for an entry (`get(name, weights=NAME)`).

    `file` is a path inside the installed cnnzoo package (shipped weights) or
    a file name in the cache; `url` is fetched into `$CNNZOO_HOME/weights`
    and checked against `sha256` (or the upstream `md5` where only that is
    published). `target` says what the file holds: the whole `"model"` or only
    the `"backbone"` (keras.applications include_top=False weights).
    """

    name: str
    file: str = ""
    url: str = ""
    sha256: str = ""
    md5: str = ""
    target: str = "model"
    description: str = ""


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


@dataclass(frozen=True)
class ModelSpec:
    """A validated zoo entry. Build it with `cnnzoo.get(spec.name)`."""

    name: str
    description: str
    input_shape: tuple
    num_classes: int
    reference: str = ""
    preprocessing: str = "rescale_0_1"
    class_names: tuple = ()
    blocks: tuple = ()
    backbone: Backbone = None
    head: Head = Head()
    train: Train = Train()
    search: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)  # name -> WeightsSource
    source: str = field(default="<memory>", compare=False)

    @property
    def kind(self):
        return "backbone" if self.backbone is not None else "cnn"

    def replace(self, **changes):
        """Returns a copy with validated `changes` (same keys as `get` overrides)."""
        return apply_overrides(self, changes)


# ---------------------------------------------------------------- validation


def _fail(where, key, rule, value, hint=""):
    raise ConfigError(
        f"`{key}` {rule}{where}. Received: {key.split('.')[-1].split('[')[0]}={value!r}.{hint}"
    )


def _where(source):
    return f" (in {source})" if source and source != "<memory>" else ""


def _check_keys(table, allowed, prefix, source):
    if not isinstance(table, dict):
        _fail(_where(source), prefix or "config", "must be a table", table)
    for key in table:
        if key not in allowed:
            full = f"{prefix}.{key}" if prefix else key
            raise ConfigError(
                f"`{full}` is not a known key{_where(source)}. Known keys: "
                f"{', '.join(sorted(allowed))}.{closest(key, allowed)} Received: {key}={table[key]!r}."
            )


def _int(value, key, source, lo=1, hi=None):
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        rule = f"must be an integer >= {lo}" + (f" and <= {hi}" if hi is not None else "")
        _fail(_where(source), key, rule, value)
    return value


def _float(value, key, source, lo=0.0, hi=None, hi_open=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and value >= lo and (hi is None or (value < hi if hi_open else value <= hi))
    if not ok:
        rule = f"must be a number >= {lo}" + (f" and {'<' if hi_open else '<='} {hi}" if hi is not None else "")
        _fail(_where(source), key, rule, value)
    return float(value)


def _bool(value, key, source):
    if not isinstance(value, bool):
        _fail(_where(source), key, "must be true or false", value)
    return value


def _choice(value, key, source, choices):
    if value not in choices:
        _fail(_where(source), key, f"must be one of {', '.join(map(repr, choices))}", value,
              closest(value, choices))
    return value


def _str(value, key, source):
    if not isinstance(value, str):
        _fail(_where(source), key, "must be a string", value)
    return value


def _parse_block(table, i, source):
    key = f"blocks[{i}]"
    _check_keys(table, {f.name for f in dataclasses.fields(Block)} | {"convs"}, key, source)
    d = Block()
    filters = table.get("filters", list(d.filters))
    convs = table.get("convs")
    if isinstance(filters, list):
        if not filters:
            _fail(_where(source), f"{key}.filters", "must not be empty", filters)
        filters = tuple(_int(f, f"{key}.filters", source) for f in filters)
        if convs is not None and _int(convs, f"{key}.convs", source) != len(filters):
            _fail(_where(source), f"{key}.convs", f"must equal the length of `filters` ({len(filters)})", convs)
    else:
        n = 1 if convs is None else _int(convs, f"{key}.convs", source)
        filters = (_int(filters, f"{key}.filters", source),) * n
    return Block(
        filters=filters,
        kernel_size=_int(table.get("kernel_size", d.kernel_size), f"{key}.kernel_size", source),
        strides=_int(table.get("strides", d.strides), f"{key}.strides", source),
        padding=_choice(table.get("padding", d.padding), f"{key}.padding", source, PADDINGS),
        activation=_choice(table.get("activation", d.activation), f"{key}.activation", source, ACTIVATIONS),
        batch_norm=_bool(table.get("batch_norm", d.batch_norm), f"{key}.batch_norm", source),
        bn_momentum=_float(table.get("bn_momentum", d.bn_momentum), f"{key}.bn_momentum", source, 0.0, 1.0,
                           hi_open=True),
        pool=_choice(table.get("pool", d.pool), f"{key}.pool", source, POOLS),
        pool_size=_int(table.get("pool_size", d.pool_size), f"{key}.pool_size", source),
        pool_strides=_int(table.get("pool_strides", d.pool_strides), f"{key}.pool_strides", source, lo=0),
        pool_padding=_choice(table.get("pool_padding", d.pool_padding), f"{key}.pool_padding", source, PADDINGS),
        dropout=_float(table.get("dropout", d.dropout), f"{key}.dropout", source, 0.0, 1.0, hi_open=True),
    )


def _parse_head(table, source):
    _check_keys(table, {f.name for f in dataclasses.fields(Head)}, "head", source)
    d = Head()
    dense = table.get("dense", list(d.dense))
    if not isinstance(dense, (list, tuple)):
        _fail(_where(source), "head.dense", "must be a list of positive integers (one per hidden layer)", dense)
    return Head(
        pooling=_choice(table.get("pooling", d.pooling), "head.pooling", source, HEAD_POOLING),
        dense=tuple(_int(u, "head.dense", source) for u in dense),
        dropout=_float(table.get("dropout", d.dropout), "head.dropout", source, 0.0, 1.0, hi_open=True),
        activation=_choice(table.get("activation", d.activation), "head.activation", source, ACTIVATIONS),
    )


def _parse_backbone(table, source):
    _check_keys(table, {f.name for f in dataclasses.fields(Backbone)}, "backbone", source)
    app = _str(table.get("application", ""), "backbone.application", source)
    if not re.match(r"^[A-Z][A-Za-z0-9]*$", app):
        _fail(_where(source), "backbone.application", "must name a keras.applications model, e.g. 'MobileNetV2'", app)
    kwargs = table.get("kwargs", {})
    if not isinstance(kwargs, dict):
        _fail(_where(source), "backbone.kwargs", "must be a table of keyword arguments", kwargs)
    return Backbone(
        application=app,
        kwargs=dict(kwargs),
        params=_int(table.get("params", 0), "backbone.params", source, lo=0),
        flops=_int(table.get("flops", 0), "backbone.flops", source, lo=0),
        channels=_int(table.get("channels", 0), "backbone.channels", source, lo=0),
        reduction=_int(table.get("reduction", 32), "backbone.reduction", source, lo=1),
    )


def _parse_train(table, source):
    _check_keys(table, {f.name for f in dataclasses.fields(Train)}, "train", source)
    d = Train()
    return Train(
        optimizer=_choice(table.get("optimizer", d.optimizer), "train.optimizer", source, OPTIMIZERS),
        learning_rate=_float(table.get("learning_rate", d.learning_rate), "train.learning_rate", source, 0.0, 10.0),
    )


def _parse_search_param(name, value, source):
    key = f"search.{name}"
    if isinstance(value, dict):
        _check_keys(value, {"min", "max", "step", "sampling"}, key, source)
        if "min" not in value or "max" not in value:
            _fail(_where(source), key, "must give both `min` and `max`", value)
        lo, hi = value["min"], value["max"]
        is_int = all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi, value.get("step", 1)))
        for k in ("min", "max", "step"):
            if k in value:
                _float(value[k], f"{key}.{k}", source, lo=-1e9)
        if hi < lo:
            _fail(_where(source), f"{key}.max", f"must be >= `min` ({lo})", hi)
        sampling = _choice(value.get("sampling", "linear"), f"{key}.sampling", source,
                           ("linear", "log", "reverse_log"))
        if sampling != "linear" and lo <= 0:
            _fail(_where(source), f"{key}.min", "must be > 0 with log sampling", lo)
        return SearchParam(name, "int" if is_int else "float", min=lo, max=hi,
                           step=value.get("step", 1 if is_int else 0), sampling=sampling)
    if isinstance(value, list):
        if not value or len({type(v) for v in value}) != 1:
            _fail(_where(source), key, "must be a non-empty list of values of one type", value)
        return SearchParam(name, "choice", values=tuple(value))
    if isinstance(value, (int, float, str, bool)):
        return SearchParam(name, "fixed", value=value)
    _fail(_where(source), key, "must be a range table {min, max}, a list of choices, or a fixed value", value)


def _parse_weights(name, table, source):
    key = f"weights.{name}"
    _check_keys(table, {f.name for f in dataclasses.fields(WeightsSource)} - {"name"}, key, source)
    values = {k: _str(v, f"{key}.{k}", source) for k, v in table.items()}
    if not values.get("file") and not values.get("url"):
        _fail(_where(source), key, "must give a `file` or a `url`", table)
    if values.get("url") and not (values.get("sha256") or values.get("md5")):
        _fail(_where(source), f"{key}.sha256", "is required for a `url` (downloads are always hash-checked)", table)
    for algo, length in (("sha256", 64), ("md5", 32)):
        if values.get(algo) and not re.fullmatch(f"[0-9a-f]{{{length}}}", values[algo]):
            _fail(_where(source), f"{key}.{algo}", f"must be {length} lowercase hex digits", values[algo])
    _choice(values.get("target", "model"), f"{key}.target", source, ("model", "backbone"))
    return WeightsSource(name=name, **values)


def _table(raw, key, source):
    value = raw.get(key, {})
    if not isinstance(value, dict):
        _fail(_where(source), key, "must be a table", value)
    return value


def parse(raw, source="<memory>"):
    """Validates a raw config mapping into a `ModelSpec`.

    Args:
        raw: dict, as read from a zoo TOML file.
        source: str, where it came from; named in every error.

    Returns:
        A frozen `ModelSpec`.

    Example:

    >>> spec = parse({"name": "tiny", "description": "d", "input_shape": [8, 8, 1],
    ...               "num_classes": 2, "blocks": [{"filters": 4}]})
    >>> spec.blocks[0].filters
    (4,)
    """
    allowed = {f.name for f in dataclasses.fields(ModelSpec)} - {"source"}
    _check_keys(raw, allowed, "", source)
    for required in ("name", "description", "input_shape", "num_classes"):
        if required not in raw:
            raise ConfigError(f"`{required}` is required{_where(source)} but missing. "
                              f"Add e.g. `{required} = ...` at the top of the file.")
    name = _str(raw["name"], "name", source)
    if not _NAME_RE.match(name):
        _fail(_where(source), "name", "must be lower_snake_case (a-z, 0-9, _; starting with a letter)", name)
    shape = raw["input_shape"]
    if not (isinstance(shape, (list, tuple)) and len(shape) == 3):
        _fail(_where(source), "input_shape", "must be [height, width, channels]", shape)
    shape = tuple(_int(s, "input_shape", source) for s in shape)
    num_classes = _int(raw["num_classes"], "num_classes", source, lo=1)
    class_names = raw.get("class_names", [])
    if not isinstance(class_names, (list, tuple)) or not all(isinstance(c, str) for c in class_names):
        _fail(_where(source), "class_names", "must be a list of strings", class_names)
    if class_names and len(class_names) != num_classes:
        _fail(_where(source), "class_names", f"must have `num_classes` ({num_classes}) entries", list(class_names))
    if len(set(class_names)) != len(class_names):
        _fail(_where(source), "class_names", "must not repeat a name", list(class_names))
    blocks = raw.get("blocks", [])
    if not isinstance(blocks, (list, tuple)):
        _fail(_where(source), "blocks", "must be an array of tables ([[blocks]])", blocks)
    backbone = _parse_backbone(raw["backbone"], source) if "backbone" in raw else None
    if bool(blocks) == (backbone is not None):
        raise ConfigError(f"A config needs exactly one of `blocks` and `backbone`{_where(source)}. "
                          f"Received: blocks={len(blocks)} tables, backbone={raw.get('backbone')!r}.")
    search = raw.get("search", {})
    _check_keys(search, set(SEARCH_KEYS), "search", source)
    return ModelSpec(
        name=name,
        description=_str(raw["description"], "description", source).strip(),
        reference=_str(raw.get("reference", ""), "reference", source).strip(),
        input_shape=shape,
        num_classes=num_classes,
        class_names=tuple(class_names),
        preprocessing=_choice(raw.get("preprocessing", "rescale_0_1"), "preprocessing", source, PREPROCESSING),
        blocks=tuple(_parse_block(b, i, source) for i, b in enumerate(blocks)),
        backbone=backbone,
        head=_parse_head(raw.get("head", {}), source),
        train=_parse_train(raw.get("train", {}), source),
        search={k: _parse_search_param(k, v, source) for k, v in search.items()},
        weights={k: _parse_weights(k, v, source) for k, v in _table(raw, "weights", source).items()},
        source=source,
    )


def loads(text, source="<string>"):
    """Parses TOML `text` into a `ModelSpec`; syntax errors name the line."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"`{source}` is not valid TOML: {e}. Fix the file or remove it "
                          f"from the config path.") from None
    return parse(raw, source)


def load(path):
    """Reads and validates one zoo config file.

    Args:
        path: str or `Path` of a `.toml` file.

    Returns:
        A `ModelSpec`.

    Example:

    >>> spec = load("zoo_configs/lenet5.toml")  # doctest: +SKIP
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"`path` must be an existing TOML file. Received: path={str(path)!r}.") from None
    return loads(text, str(path))


# ----------------------------------------------------------------- overrides

# Shortcut overrides: key -> (section, field); applied to the head or to every block.
_SHORTCUTS = {
    "dense": ("head", "dense"),
    "dropout": ("head", "dropout"),
    "pooling": ("head", "pooling"),
    "activation": ("blocks+head", "activation"),
    "batch_norm": ("blocks", "batch_norm"),
    "learning_rate": ("train", "learning_rate"),
    "optimizer": ("train", "optimizer"),
}
OVERRIDE_KEYS = tuple(sorted(
    {"input_shape", "num_classes", "class_names", "preprocessing", "blocks", "head",
     "backbone", "train", "search", "description"} | set(_SHORTCUTS)))


def to_dict(spec):
    """Returns the raw mapping of `spec` (the inverse of `parse`)."""
    out = {"name": spec.name, "description": spec.description}
    if spec.reference:
        out["reference"] = spec.reference
    out["input_shape"] = list(spec.input_shape)
    out["num_classes"] = spec.num_classes
    if spec.class_names:
        out["class_names"] = list(spec.class_names)
    out["preprocessing"] = spec.preprocessing
    if spec.blocks:
        out["blocks"] = []
        for b in spec.blocks:
            d = {k: v for k, v in dataclasses.asdict(b).items() if v != getattr(Block(), k) or k == "filters"}
            d["filters"] = list(b.filters) if len(set(b.filters)) > 1 else b.filters[0]
            if len(set(b.filters)) == 1 and b.convs != 1:
                d["convs"] = b.convs
            out["blocks"].append(d)
    if spec.backbone is not None:
        out["backbone"] = dataclasses.asdict(spec.backbone)
    out["head"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(spec.head).items()}
    out["train"] = dataclasses.asdict(spec.train)
    search = {}
    for k, p in spec.search.items():
        if p.kind in ("int", "float"):
            search[k] = {"min": p.min, "max": p.max}
            if p.step:
                search[k]["step"] = p.step
            if p.sampling != "linear":
                search[k]["sampling"] = p.sampling
        elif p.kind == "choice":
            search[k] = list(p.values)
        else:
            search[k] = p.value
    if search:
        out["search"] = search
    if spec.weights:
        out["weights"] = {k: {f: v for f, v in dataclasses.asdict(w).items() if v and f != "name"}
                          for k, w in spec.weights.items()}
    return out


def apply_overrides(spec, overrides):
    """Returns `spec` with `overrides` applied and the result re-validated.

    Args:
        spec: a `ModelSpec`.
        overrides: dict of override keys (see `OVERRIDE_KEYS`): whole sections
            (`blocks`, `head`, `train`, ...) or shortcuts (`dense`, `dropout`,
            `pooling`, `activation`, `batch_norm`, `learning_rate`, `optimizer`).

    Returns:
        A new `ModelSpec`.

    Example:

    >>> apply_overrides(spec, {"dropout": 0.3, "dense": [128]})  # doctest: +SKIP
    """
    if not overrides:
        return spec
    raw = to_dict(spec)
    for key, value in overrides.items():
        if key not in OVERRIDE_KEYS:
            raise ConfigError(
                f"`{key}` is not an override of `{spec.name}`. Valid overrides: "
                f"{', '.join(OVERRIDE_KEYS)}.{closest(key, OVERRIDE_KEYS)} Received: {key}={value!r}.")
        if key in _SHORTCUTS:
            section, fld = _SHORTCUTS[key]
            if "head" in section or section == "train":
                raw.setdefault("head" if section != "train" else "train", {})[fld] = value
            if "blocks" in section:
                if not spec.blocks and section == "blocks":
                    raise ConfigError(f"`{key}` applies to conv blocks, and `{spec.name}` has a backbone "
                                      f"instead. Received: {key}={value!r}.")
                for b in raw.get("blocks", []):
                    b[fld] = value
        elif key in ("head", "train") and isinstance(value, dict):
            raw[key] = {**raw.get(key, {}), **value}
        elif key == "input_shape" and isinstance(value, (list, tuple)):
            raw[key] = list(value)
        elif key == "class_names" and isinstance(value, (list, tuple)):
            raw[key] = list(value)
            if "num_classes" not in overrides:
                raw["num_classes"] = len(value)
        else:
            raw[key] = value
    if len(raw.get("class_names", [])) not in (0, raw["num_classes"]):
        raw.pop("class_names")  # a new class count drops the old labels
    return parse(raw, f"{spec.source} with overrides {sorted(overrides)}")


# -------------------------------------------------------------- TOML writing


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")


def dumps(spec_or_raw):
    """Writes a `ModelSpec` (or its raw dict) as zoo TOML that `loads` reads back."""
    raw = to_dict(spec_or_raw) if isinstance(spec_or_raw, ModelSpec) else spec_or_raw
    lines, tables = [], []
    for k, v in raw.items():
        if k == "blocks":
            tables.extend(("[[blocks]]", b) for b in v)
        elif isinstance(v, dict):
            tables.append((f"[{k}]", v))
        else:
            lines.append(f"{k} = {_toml_value(v)}")
    for header, body in tables:
        if header == "[weights]":  # one sub-table per weights name
            for wname, wtable in body.items():
                lines += ["", f"[weights.{wname}]"] + [f"{k} = {_toml_value(x)}" for k, x in wtable.items()]
            continue
        lines += ["", header] + [f"{k} = {_toml_value(x)}" for k, x in body.items()]
    return "\n".join(lines) + "\n"
