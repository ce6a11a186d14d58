"""Zoo configs: TOML files read and validated into frozen dataclasses.

A config is pure data (see `zoo_configs/*.toml`). This module knows the
schema, the defaults of a `ModelSpec`, and how to apply overrides; it never
imports TensorFlow or Keras. The tables of a config have their dataclasses
(with every other default) and their parsing beside it: `[[blocks]]`,
`[[stages]]` (residual stages), `[head]`, `[backbone]` and `[train]` in `cnnzoo.zoo.config_tables`, `[search]`
and `[weights]` in `cnnzoo.zoo.config_sections`; this module exports those
dataclasses as its own (`config.Block`, `config.SearchParam`, ...).
"""

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from cnnzoo.errors import ConfigError, closest
from cnnzoo.zoo.config_rules import MAX_SIZE, MAX_UNITS, check_choice, check_int, check_keys, check_str, fail, where
from cnnzoo.zoo.config_sections import SearchParam, WeightsSource, parse_search_param, parse_weights
from cnnzoo.zoo.config_tables import (
    ACTIVATIONS,
    OPTIMIZERS,
    RESIDUAL_BLOCKS,
    Backbone,
    Block,
    Head,
    ResidualStage,
    Train,
    parse_backbone,
    parse_block,
    parse_head,
    parse_stage,
    parse_train,
)

__all__ = [
    "Block",
    "ResidualStage",
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
    "PREPROCESSING",
    "ACTIVATIONS",
    "OPTIMIZERS",
    "OVERRIDE_KEYS",
]

PREPROCESSING = ("none", "rescale_0_1", "rescale_-1_1", "caffe", "torch")
SEARCH_KEYS = (
    "conv_blocks",
    "filters",
    "convs",
    "kernel_size",
    "batch_norm",
    "dense_layers",
    "units",
    "dropout",
    "learning_rate",
    "optimizer",
    "stages",
    "stage_blocks",
    "stage_filters",
)
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


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
    stages: tuple = ()  # residual stages, after the blocks (the stem)
    backbone: Backbone = None
    head: Head = Head()
    train: Train = Train()
    search: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)  # name -> WeightsSource
    family: str = ""  # the family it belongs to (`cnnzoo.list_models(family=...)`), "" for none
    source: str = field(default="<memory>", compare=False)

    @property
    def kind(self):
        return "backbone" if self.backbone is not None else "residual" if self.stages else "cnn"

    def replace(self, **changes):
        """Returns a copy with validated `changes` (same keys as `get` overrides)."""
        return apply_overrides(self, changes)


# ---------------------------------------------------------------- validation


def _table(raw, key, source):
    value = raw.get(key, {})
    if not isinstance(value, dict):
        fail(where(source), key, "must be a table", value)
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
    check_keys(raw, allowed, "", source)
    for required in ("name", "description", "input_shape", "num_classes"):
        if required not in raw:
            raise ConfigError(
                f"`{required}` is required{where(source)} but missing. "
                f"Add e.g. `{required} = ...` at the top of the file."
            )
    name = check_str(raw["name"], "name", source)
    if not NAME_RE.match(name):
        fail(where(source), "name", "must be lower_snake_case (a-z, 0-9, _; starting with a letter)", name)
    shape = raw["input_shape"]
    if not (isinstance(shape, (list, tuple)) and len(shape) == 3):
        fail(where(source), "input_shape", "must be [height, width, channels]", shape)
    shape = tuple(check_int(s, "input_shape", source, hi=MAX_SIZE) for s in shape)
    num_classes = check_int(raw["num_classes"], "num_classes", source, lo=1, hi=MAX_UNITS)
    class_names = raw.get("class_names", [])
    if not isinstance(class_names, (list, tuple)) or not all(isinstance(c, str) for c in class_names):
        fail(where(source), "class_names", "must be a list of strings", class_names)
    if class_names and len(class_names) != num_classes:
        fail(where(source), "class_names", f"must have `num_classes` ({num_classes}) entries", list(class_names))
    if len(set(class_names)) != len(class_names):
        fail(where(source), "class_names", "must not repeat a name", list(class_names))
    blocks, stages, backbone = _body(raw, shape[2], source)
    search = raw.get("search", {})
    check_keys(search, set(SEARCH_KEYS), "search", source)
    for key in ("stages", "stage_blocks", "stage_filters"):
        if key in search and not stages:
            rule = "searches residual stages, and the config has no `[[stages]]`"
            fail(where(source), f"search.{key}", rule, search[key])
    return ModelSpec(
        name=name,
        description=check_str(raw["description"], "description", source).strip(),
        reference=check_str(raw.get("reference", ""), "reference", source).strip(),
        input_shape=shape,
        num_classes=num_classes,
        class_names=tuple(class_names),
        preprocessing=check_choice(raw.get("preprocessing", "rescale_0_1"), "preprocessing", source, PREPROCESSING),
        blocks=blocks,
        stages=stages,
        backbone=backbone,
        head=parse_head(raw.get("head", {}), source),
        train=parse_train(raw.get("train", {}), source),
        search={k: parse_search_param(k, v, source) for k, v in search.items()},
        weights={k: parse_weights(k, v, source) for k, v in _table(raw, "weights", source).items()},
        family=_family(raw, source),
        source=source,
    )


def _family(raw, source):
    family = check_str(raw.get("family", ""), "family", source)
    if family and not NAME_RE.match(family):
        fail(where(source), "family", "must be lower_snake_case, like a model name", family)
    return family


def _body(raw, channels, source):
    """`(blocks, stages, backbone)` of a raw config: conv blocks and/or residual stages, or a backbone."""
    blocks, stages = raw.get("blocks", []), raw.get("stages", [])
    for key, value in (("blocks", blocks), ("stages", stages)):
        if not isinstance(value, (list, tuple)):
            fail(where(source), key, f"must be an array of tables ([[{key}]])", value)
    backbone = parse_backbone(raw["backbone"], source) if "backbone" in raw else None
    if bool(blocks or stages) == (backbone is not None):
        raise ConfigError(
            f"A config needs exactly one of `blocks` and `backbone`{where(source)} (residual `stages` "
            f"follow the blocks or replace them, never a backbone). "
            f"Received: blocks={len(blocks)} tables, stages={len(stages)} tables, backbone={raw.get('backbone')!r}."
        )
    blocks = tuple(parse_block(b, i, source) for i, b in enumerate(blocks))
    stages = tuple(parse_stage(t, i, source) for i, t in enumerate(stages))
    _check_shortcuts(blocks, stages, channels, source)
    return blocks, stages, backbone


def _check_shortcuts(blocks, stages, channels, source):
    """A `zero_pad` shortcut pads channels with zeros: it cannot drop any, so its stage may not narrow."""
    channels = blocks[-1].filters[-1] if blocks else channels
    for i, stage in enumerate(stages):
        if stage.shortcut == "zero_pad" and stage.out_channels < channels:
            fail(
                where(source),
                f"stages[{i}].shortcut",
                f"cannot be 'zero_pad' where `stages[{i}].filters` narrows the stage from {channels} to "
                f"{stage.out_channels} channels (zero padding adds channels, it cannot drop them)",
                stage.shortcut,
                ' Use shortcut = "projection".',
            )
        channels = stage.out_channels


def loads(text, source="<string>"):
    """Parses TOML `text` into a `ModelSpec`; syntax errors name the line."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(
            f"`{source}` is not valid TOML: {e}. Fix the file or remove it from the config path."
        ) from None
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
OVERRIDE_KEYS = tuple(
    sorted(
        {
            "input_shape",
            "num_classes",
            "class_names",
            "preprocessing",
            "blocks",
            "stages",
            "head",
            "backbone",
            "train",
            "search",
            "description",
        }
        | set(_SHORTCUTS)
    )
)


def to_dict(spec):
    """Returns the raw mapping of `spec` (the inverse of `parse`)."""
    out = {"name": spec.name, "description": spec.description}
    if spec.family:
        out["family"] = spec.family
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
    if spec.stages:
        out["stages"] = [_stage_dict(st) for st in spec.stages]
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
        out["weights"] = {
            k: {f: v for f, v in dataclasses.asdict(w).items() if v and f != "name"} for k, w in spec.weights.items()
        }
    return out


def _stage_dict(stage):
    """A `ResidualStage` as its table: `filters`, `blocks` and `block` always, the rest where not the default."""
    d = {"filters": stage.filters, "blocks": stage.blocks, "block": stage.block}
    for f in dataclasses.fields(ResidualStage):
        value, default = getattr(stage, f.name), RESIDUAL_BLOCKS[stage.block] if f.name == "expansion" else f.default
        if f.name not in d and value != default:
            d[f.name] = value
    return d


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
                f"{', '.join(OVERRIDE_KEYS)}.{closest(key, OVERRIDE_KEYS)} Received: {key}={value!r}."
            )
        if key in _SHORTCUTS:
            section, fld = _SHORTCUTS[key]
            if "head" in section or section == "train":
                raw.setdefault("head" if section != "train" else "train", {})[fld] = value
            if "blocks" in section:
                if not spec.blocks and section == "blocks":
                    raise ConfigError(
                        f"`{key}` applies to conv blocks, and `{spec.name}` has "
                        f"{'residual stages only' if spec.stages else 'a backbone instead'}. Received: {key}={value!r}."
                    )
                for b in raw.get("blocks", []) + (raw.get("stages", []) if fld == "activation" else []):
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
