"""The keras-tuner search space of a zoo entry: its `[search]` table as a HyperModel.

Every searched value is declared in `build(hp)` with an explicit default equal
to the entry's own value, so a trial with default values builds exactly what
`cnnzoo.get(name)` builds. Names, and the key of the `[search]` table that
gives each one its range:

| hp name          | `[search]` key  | scope                       | default                                |
|------------------|-----------------|-----------------------------|----------------------------------------|
| `conv_blocks`    | `conv_blocks`   | -                           | number of `[[blocks]]`                 |
| `filters_i`      | `filters`       | `conv_blocks >= i`          | block i's first width (see below)      |
| `convs_i`        | `convs`         | `conv_blocks >= i`          | block i's convolution count            |
| `kernel_size_i`  | `kernel_size`   | `conv_blocks >= i`          | block i's kernel size                  |
| `batch_norm`     | `batch_norm`    | -                           | the blocks' setting (they must agree)  |
| `dense_layers`   | `dense_layers`  | -                           | number of hidden dense layers          |
| `units_j`        | `units`         | `dense_layers >= j`         | hidden layer j's width                 |
| `dropout`        | `dropout`       | -                           | the head's dropout                     |
| `learning_rate`  | `learning_rate` | -                           | `[train] learning_rate`                |
| `optimizer`      | `optimizer`     | -                           | `[train] optimizer`                    |

Rules, decided once:
- Per-layer values live inside `hp.conditional_scope` of the count that
  activates them, so a trial lists only the layers it has.
- `filters`, `convs` and `kernel_size` are per block (VGG's blocks differ, so
  one global value could not reproduce the entry); `batch_norm` is global.
- The entry's own value is always part of the space: a choice list that lacks
  it gets it added, a range that excludes it is widened to include it.
- Blocks beyond the entry's own (a larger `conv_blocks`) copy the last block;
  their default width doubles the previous one, capped at the largest width
  of the `filters` space. Dense layers beyond the entry's own repeat the last
  width (or take the middle of the `units` space when the entry has none).
- A block whose convolutions differ in width (AlexNet block 3: 384, 256, 256)
  keeps its proportions: `filters_3` is the first width, the others scale.
- A scalar in `[search]` (or a `**fixed` value) is `hp.Fixed`: it pins that
  value for every trial.
- Backbone entries search only the head and the training settings.
"""

import contextlib
import math
import re

import keras_tuner as kt

from cnnzoo import config, registry, stats
from cnnzoo.errors import ConfigError, closest

__all__ = ["CnnzooHyperModel", "hypermodel", "HP_KEYS"]

_COUNTS = {"conv_blocks": ("filters", "convs", "kernel_size"), "dense_layers": ("units",)}
_PER_LAYER = {"filters": "conv_blocks", "convs": "conv_blocks", "kernel_size": "conv_blocks",
              "units": "dense_layers"}
_CONV_KEYS = ("conv_blocks", "filters", "convs", "kernel_size", "batch_norm")
_LAYER_NAME = re.compile(r"^(filters|convs|kernel_size|units)_([1-9][0-9]*)$")
HP_KEYS = config.SEARCH_KEYS

# key -> (type, lowest, highest, rule text)
_RULES = {
    "conv_blocks": (int, 1, None, "must be integers >= 1 (number of conv blocks)"),
    "filters": (int, 1, None, "must be integers >= 1 (conv widths)"),
    "convs": (int, 1, None, "must be integers >= 1 (convolutions per block)"),
    "kernel_size": (int, 1, None, "must be integers >= 1 (square kernel sides)"),
    "dense_layers": (int, 0, None, "must be integers >= 0 (number of hidden dense layers)"),
    "units": (int, 1, None, "must be integers >= 1 (dense widths)"),
    "dropout": (float, 0.0, 1.0, "must be numbers in [0, 1)"),
    "learning_rate": (float, 0.0, 10.0, "must be numbers > 0 and <= 10"),
    "batch_norm": (bool, None, None, "must be true or false"),
    "optimizer": (str, None, None, f"must be optimizer names: {', '.join(config.OPTIMIZERS)}"),
}


def _bad(key, rule, value, fix="Fix the `[search]` table or the `search=` argument."):
    raise ConfigError(f"`search.{key}` {rule}. Received: {key}={value!r}. {fix}")


def _check_value(key, value, where="search"):
    kind, lo, hi, rule = _RULES[key]
    ok = True
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is str:
        ok = value in config.OPTIMIZERS
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= lo
    else:
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
              and (value > lo if key == "learning_rate" else value >= lo)
              and (value <= hi if key == "learning_rate" else value < hi))
    if not ok:
        if where == "fixed":
            raise ConfigError(f"`{key}` {rule}. Received: {key}={value!r}. Pass a valid value or leave it out.")
        _bad(key, rule, value)


def _check_param(p):
    """Validates one `SearchParam` against the rules of its key."""
    kind, _, _, rule = _RULES[p.name]
    if p.kind == "fixed":
        _check_value(p.name, p.value)
    elif p.kind == "choice":
        for v in p.values:
            _check_value(p.name, v)
    else:
        if kind in (bool, str):
            _bad(p.name, rule + " (give a list of choices, not a range)", {"min": p.min, "max": p.max})
        if kind is int and p.kind != "int":
            _bad(p.name, rule + " (an integer range needs integer `min`, `max` and `step`)",
                 {"min": p.min, "max": p.max, "step": p.step})
        _check_value(p.name, p.min)
        _check_value(p.name, p.max)
        if p.name in _COUNTS and p.sampling != "linear":
            _bad(p.name, "must use linear sampling (it counts layers)", p.sampling)
    return p


def _with(p, value):
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
    return config.SearchParam(p.name, p.kind, min=min(p.min, value), max=max(p.max, value), step=p.step,
                              sampling=p.sampling)


def _values_of(p):
    """All values an integer `SearchParam` can take (counts only)."""
    if p.kind == "fixed":
        return [p.value]
    if p.kind == "choice":
        return sorted(p.values)
    return list(range(int(p.min), int(p.max) + 1, int(p.step or 1)))


def _largest(p):
    return max(_values_of(p)) if p.kind in ("choice", "fixed") else int(p.max)


def _snap(p, target):
    """The largest value of integer space `p` that is <= target (or its smallest)."""
    values = _values_of(p)
    below = [v for v in values if v <= target]
    return max(below) if below else min(values)


def _middle(p):
    values = _values_of(p)
    return values[len(values) // 2]


def _declare(hp, p, name, default):
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
    return hp.Float(name, float(p.min), float(p.max), step=float(p.step) if p.step else None, sampling=p.sampling,
                    default=float(default))


class CnnzooHyperModel(kt.HyperModel):
    """A keras-tuner `HyperModel` over a zoo entry's `[search]` table.

    Build it with `cnnzoo.hypermodel(name, ...)`. `build(hp)` declares every
    searched value with the entry's own value as default and returns a model
    built by `cnnzoo.builders.build` and compiled like `cnnzoo.get`.

    Args:
        name: a zoo model name with a config (not a code-built entry).
        num_classes: int, size of the softmax; default the entry's.
        input_shape: (height, width, channels); default the entry's.
        search: optional dict in the `[search]` syntax (`{min, max, step,
            sampling}` range, list of choices, or a scalar to fix); its keys
            replace the entry's, a key set to None stops searching it.
        **fixed: hyperparameters to pin (`conv_blocks=3`, `filters_2=64`,
            `filters=64` for every block, `learning_rate=1e-3`), and plain
            config overrides of the entry (`pooling="avg"`, `class_names=[...]`).

    Example:

    >>> hm = cnnzoo.hypermodel("digits_cnn", dense_layers=1)
    >>> model = hm.build(keras_tuner.HyperParameters())  # the zoo entry itself
    """

    def __init__(self, name, num_classes=None, input_shape=None, search=None, **fixed):
        super().__init__(name=f"{name}_hypermodel")
        entry_spec = registry.spec(name)
        overrides, self.fixed = {}, {}
        for key, value in fixed.items():
            m = _LAYER_NAME.match(key)
            if key in HP_KEYS or m:
                _check_value(m.group(1) if m else key, value, where="fixed")
                self.fixed[key] = value
            elif key in config.OVERRIDE_KEYS and key != "search":
                overrides[key] = value
            else:
                valid = list(HP_KEYS) + ["filters_<i>", "convs_<i>", "kernel_size_<i>", "units_<j>"] + [
                    k for k in config.OVERRIDE_KEYS if k not in HP_KEYS and k != "search"]
                raise ConfigError(f"`{key}` is neither a hyperparameter nor a config override of `{name}`. "
                                  f"Valid keys: {', '.join(valid)}.{closest(key, valid)} Received: {key}={value!r}.")
        if num_classes is not None:
            overrides["num_classes"] = num_classes
        if input_shape is not None:
            overrides["input_shape"] = tuple(input_shape)
        if search is not None:
            if not isinstance(search, dict):
                raise ConfigError(f"`search` must be a dict in the `[search]` syntax, e.g. "
                                  f"{{'dense_layers': {{'min': 0, 'max': 2}}}}. Received: search={search!r}.")
            merged = {k: v for k, v in config.to_dict(entry_spec).get("search", {}).items()}
            for key, value in search.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            overrides["search"] = merged
        self.base = config.apply_overrides(entry_spec, overrides)
        stats.layer_stats(self.base)  # the entry itself must fit the input: a clear error now
        self.entry = name
        self.space = self._make_space()

    # ------------------------------------------------------------ the space

    def _make_space(self):
        spec = self.base
        space = {key: _check_param(p) for key, p in spec.search.items()}
        if spec.backbone is not None:
            base_key = lambda k: _LAYER_NAME.match(k).group(1) if _LAYER_NAME.match(k) else k  # noqa: E731
            wrong = [k for k in list(space) + list(self.fixed) if base_key(k) in _CONV_KEYS]
            if wrong:
                raise ConfigError(f"`{wrong[0]}` searches conv blocks, and `{spec.name}` has a "
                                  f"{spec.backbone.application} backbone instead: backbone entries search only "
                                  f"dense_layers, units, dropout, learning_rate and optimizer. "
                                  f"Received: {wrong[0]}={space.get(wrong[0], self.fixed.get(wrong[0]))!r}.")
        blocks, head = spec.blocks, spec.head
        own = {
            "conv_blocks": [len(blocks)] if blocks else [],
            "filters": [b.filters[0] for b in blocks],
            "convs": [b.convs for b in blocks],
            "kernel_size": [b.kernel_size for b in blocks],
            "batch_norm": sorted({b.batch_norm for b in blocks}),
            "dense_layers": [len(head.dense)],
            "units": list(head.dense),
            "dropout": [head.dropout],
            "learning_rate": [spec.train.learning_rate],
            "optimizer": [spec.train.optimizer],
        }
        if "batch_norm" in space and len(own["batch_norm"]) > 1:
            raise ConfigError(f"`search.batch_norm` is one switch for every block, and the blocks of "
                              f"`{spec.name}` disagree on it. Received: batch_norm={space['batch_norm']!r}. "
                              f"Remove it from the search or make the blocks agree.")
        for key, p in space.items():
            for value in own[key]:
                p = _with(p, value)
            space[key] = p
        return space

    def _count_max(self, key):
        """The largest layer count any trial can have for `conv_blocks`/`dense_layers`."""
        if key in self.fixed:
            return self.fixed[key]
        if key in self.space:
            return _largest(self.space[key])
        return len(self.base.blocks) if key == "conv_blocks" else len(self.base.head.dense)

    def default(self, name):
        """The default value of hyperparameter `name` (the entry's own where it has one)."""
        spec = self.base
        m = _LAYER_NAME.match(name)
        if m:
            key, i = m.group(1), int(m.group(2))
            if key == "units":
                dense = spec.head.dense
                if i <= len(dense):
                    return dense[i - 1]
                if dense:
                    return dense[-1]
                return _middle(self.space["units"]) if "units" in self.space else 128
            block = spec.blocks[min(i, len(spec.blocks)) - 1]
            if key == "filters":
                if i <= len(spec.blocks) or "filters" not in self.space:
                    return block.filters[0]
                return _snap(self.space["filters"], 2 * self.default(f"filters_{i - 1}"))
            return block.convs if key == "convs" else block.kernel_size
        return {
            "conv_blocks": len(spec.blocks), "dense_layers": len(spec.head.dense),
            "batch_norm": spec.blocks[0].batch_norm if spec.blocks else False,
            "dropout": spec.head.dropout, "learning_rate": spec.train.learning_rate,
            "optimizer": spec.train.optimizer,
        }[name]

    def _hp(self, hp, name, key=None):
        """Declares `name` when it is searched or pinned; returns its value (default otherwise)."""
        key = key or name
        for pinned in (name, key):
            if pinned in self.fixed:
                return hp.Fixed(name, self.fixed[pinned])
        if key in self.space:
            return _declare(hp, self.space[key], name, self.default(name))
        return self.default(name)

    def _searched(self, key):
        return key in self.space or key in self.fixed

    def _scope(self, hp, count, i):
        if not self._searched(count):
            return contextlib.nullcontext()
        values = [self.fixed[count]] if count in self.fixed else _values_of(self.space[count])
        return hp.conditional_scope(count, [v for v in values if v >= i])

    def declare_hyperparameters(self, hp):
        """Declares the whole space in `hp` and returns the values of this trial.

        Args:
            hp: a `keras_tuner.HyperParameters`.

        Returns:
            A dict of the active values, searched or not, by hp name.
        """
        values = {}
        for count, keys in _COUNTS.items():
            if count == "conv_blocks" and not self.base.blocks:
                continue
            n = values[count] = self._hp(hp, count)
            for i in range(1, self._count_max(count) + 1):
                with self._scope(hp, count, i):
                    for key in keys:
                        value = self._hp(hp, f"{key}_{i}", key)
                        if value is not None and i <= n:
                            values[f"{key}_{i}"] = value
            if count == "conv_blocks":
                values["batch_norm"] = self._hp(hp, "batch_norm")
        for key in ("dropout", "learning_rate", "optimizer"):
            values[key] = self._hp(hp, key)
        return values

    # ------------------------------------------------------------- building

    def spec_for(self, values):
        """The `ModelSpec` a trial's hyperparameter values describe.

        Args:
            values: dict of hp values (e.g. `trial.hyperparameters.values`), or
                a `keras_tuner.HyperParameters`; missing names take their default.

        Returns:
            A validated `ModelSpec` named like the entry.

        Example:

        >>> hm.spec_for({"conv_blocks": 1, "filters_1": 16}).blocks[0].filters
        (16, 16)
        """
        if isinstance(values, kt.HyperParameters):
            values = values.values
        get = lambda name: values[name] if values.get(name) is not None else self.default(name)  # noqa: E731
        spec, changes = self.base, {}
        if spec.blocks:
            raw_blocks = config.to_dict(spec)["blocks"]
            blocks = []
            for i in range(1, int(get("conv_blocks")) + 1):
                own = spec.blocks[min(i, len(spec.blocks)) - 1]
                raw = dict(raw_blocks[min(i, len(spec.blocks)) - 1])
                raw.pop("convs", None)
                width = int(get(f"filters_{i}"))
                widths = [max(1, round(w * width / own.filters[0])) for w in own.filters]
                convs = int(get(f"convs_{i}"))
                widths = (widths + [widths[-1]] * convs)[:convs]
                raw.update(filters=widths, kernel_size=int(get(f"kernel_size_{i}")),
                           batch_norm=bool(get("batch_norm")) if self._searched("batch_norm") else own.batch_norm)
                blocks.append(raw)
            changes["blocks"] = blocks
        dense = [int(get(f"units_{j}")) for j in range(1, int(get("dense_layers")) + 1)]
        # 6 significant digits: drops float noise such as 0.30000000000000004 from stepped ranges
        changes["head"] = {"dense": dense, "dropout": float(f"{get('dropout'):.6g}")}
        changes["train"] = {"learning_rate": float(f"{get('learning_rate'):.6g}"), "optimizer": get("optimizer")}
        return config.apply_overrides(spec, changes)

    def feasible(self, values):
        """Whether the model of `values` fits the input (no feature map vanishes)."""
        try:
            stats.layer_stats(self.spec_for(values))
        except ConfigError:
            return False
        return True

    def build(self, hp, compile=True):
        """Declares the space in `hp` and builds the model of its current values.

        Args:
            hp: a `keras_tuner.HyperParameters` (new, or a trial's).
            compile: bool; compile with the trial's optimizer and learning rate.

        Returns:
            A `keras.Model`, layer for layer what `cnnzoo.get` builds from the
            same config. A model that does not fit the input raises
            `keras_tuner.errors.FailedTrialError`, so the search goes on.
        """
        from cnnzoo import builders

        values = self.declare_hyperparameters(hp)
        try:
            spec = self.spec_for(values)
            stats.layer_stats(spec)
        except ConfigError as e:
            raise kt.errors.FailedTrialError(f"{self.entry} with {values}: {e}") from e
        model = builders.build(spec)
        if compile:
            builders.compile_model(model, spec.train)
            prebuild(model, spec)
        return model

    def hp_names(self):
        """Every hyperparameter name of the space, in declaration order (per-layer ones included)."""
        hp = kt.HyperParameters()
        self.declare_hyperparameters(hp)
        return [p.name for p in hp.space]

    def summary_of_space(self):
        """A dict: searched key -> its range in `[search]` syntax (entry values included)."""
        fake = config.ModelSpec("x", "x", (1, 1, 1), 1, blocks=(config.Block(),), search=self.space)
        out = config.to_dict(fake).get("search", {})
        out.update({k: v for k, v in self.fixed.items()})
        return out


def prebuild(model, spec):
    """Creates a compiled model's optimizer and metric variables now, outside `fit`'s traced step.

    Variables created while `fit` traces its train step keep that step's graph alive after the
    model is gone (about 10 MB per trial for a small CNN with TensorFlow 2.21); created here they
    do not. Uses Keras's own `_symbolic_build` (shapes only, no data); skipped where it is missing.
    """
    import numpy as np

    build = getattr(model, "_symbolic_build", None)
    if build is None:
        return model
    try:
        build(data_batch=(np.zeros((1, *spec.input_shape), "float32"), np.zeros((1,), "int64")))
    except Exception as e:  # a memory optimisation only: never fail a trial for it
        import logging

        logging.getLogger("cnnzoo.tuning").debug("prebuild skipped: %s", e)
    return model


def hypermodel(name, num_classes=None, input_shape=None, search=None, **fixed):
    """Returns a keras-tuner `HyperModel` over the `[search]` table of a zoo entry.

    Trial 0 with default values reproduces `cnnzoo.get(name, ...)` exactly;
    per-layer values (`filters_3`, `units_2`) sit inside the conditional scope
    of the count that activates them.

    Args:
        name: a zoo model name (see `cnnzoo.list_models()`).
        num_classes: int, size of the softmax; default the entry's.
        input_shape: (height, width, channels); default the entry's.
        search: optional dict in the `[search]` syntax that overrides the
            entry's space key by key (None removes a key). An invalid space
            raises `ConfigError` naming the key.
        **fixed: hyperparameters to pin with `hp.Fixed` (`conv_blocks=2`,
            `filters_1=32`, `units=128` for every dense layer) and plain config
            overrides of the entry (`class_names=[...]`, `pooling="avg"`).

    Returns:
        A `CnnzooHyperModel` (a `keras_tuner.HyperModel`).

    Example:

    >>> hm = cnnzoo.hypermodel("digits_cnn", num_classes=10, learning_rate=1e-3)
    >>> tuner = keras_tuner.RandomSearch(hm, "val_accuracy", max_trials=5)
    """
    return CnnzooHyperModel(name, num_classes=num_classes, input_shape=input_shape, search=search, **fixed)
