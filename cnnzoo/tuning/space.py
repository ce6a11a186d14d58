"""The keras-tuner search space of a zoo entry: its `[search]` table as a HyperModel.

Every searched value is declared in `build(hp)` with an explicit default equal to
the entry's own value, so a trial with default values builds exactly what
`cnnzoo.get(name)` builds. docs/tuning.md lists the hyperparameter names
(`conv_blocks`, `filters_i`, `convs_i`, `kernel_size_i`, `batch_norm`,
`dense_layers`, `units_j`, `dropout`, `learning_rate`, `optimizer`) and the
rules, decided once:
- Per-layer values live inside `hp.conditional_scope` of the count that
  activates them, so a trial lists only the layers it has.
- `filters`, `convs` and `kernel_size` are per block (VGG's blocks differ, so
  one global value could not reproduce the entry); `batch_norm` is global.
- The entry's own value is always part of the space: a choice list that lacks
  it gets it added, a range that excludes it is widened to include it.
- Blocks beyond the entry's own copy the last block; their default width
  doubles the previous one, capped at the largest width of the `filters`
  space. Dense layers beyond the entry's own repeat the last width (or take
  the middle of the `units` space when the entry has none).
- A block whose convolutions differ in width (AlexNet block 3: 384, 256, 256)
  keeps its proportions: `filters_3` is the first width, the others scale.
- A scalar in `[search]` (or a `**fixed` value) is `hp.Fixed`: it pins that
  value for every trial.
- Residual entries (`[[stages]]`) also search `stages`, and per stage `stage_blocks_i`
  (residual blocks) and `stage_filters_i` (width). Stages beyond the entry's own copy
  its last stage with stride 2; their default width doubles the previous one, capped
  like `filters`. Entries without stages cannot search them.
- Backbone entries search only the head and the training settings.
"""

import contextlib

import keras_tuner as kt

from cnnzoo.errors import ConfigError, closest
from cnnzoo.tuning.params import (
    LAYER_NAME,
    check_applicable,
    check_param,
    check_value,
    declare,
    largest,
    middle,
    snap,
    values_of,
    widen,
)
from cnnzoo.zoo import config, registry, stats

__all__ = ["CnnzooHyperModel", "hypermodel", "HP_KEYS"]

_COUNTS = {
    "conv_blocks": ("filters", "convs", "kernel_size"),
    "stages": ("stage_blocks", "stage_filters"),
    "dense_layers": ("units",),
}
HP_KEYS = config.SEARCH_KEYS


class CnnzooHyperModel(kt.HyperModel):
    """A keras-tuner `HyperModel` over a zoo entry's `[search]` table.

    Build it with `cnnzoo.hypermodel(name, ...)`. `build(hp)` declares every
    searched value with the entry's own value as default and returns a model
    built by `cnnzoo.zoo.builders.build` and compiled like `cnnzoo.get`.

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
        dtype: precision policy of every trial's model: None (float32),
            `"mixed_bfloat16"` or `"mixed_float16"` (see `cnnzoo.get`).

    Example:

    >>> hm = cnnzoo.hypermodel("digits_cnn", dense_layers=1)
    >>> model = hm.build(keras_tuner.HyperParameters())  # the zoo entry itself
    """

    def __init__(self, name, num_classes=None, input_shape=None, search=None, dtype=None, **fixed):
        from cnnzoo.zoo.precision import check_dtype

        super().__init__(name=f"{name}_hypermodel")
        self.dtype = check_dtype(dtype)
        entry_spec = registry.spec(name)
        overrides, self.fixed = {}, {}
        for key, value in fixed.items():
            m = LAYER_NAME.match(key)
            if key in HP_KEYS or m:
                check_value(m.group(1) if m else key, value, where="fixed")
                self.fixed[key] = value
            elif key in config.OVERRIDE_KEYS and key != "search":
                overrides[key] = value
            else:
                valid = (
                    list(HP_KEYS)
                    + [
                        "filters_<i>",
                        "convs_<i>",
                        "kernel_size_<i>",
                        "stage_blocks_<i>",
                        "stage_filters_<i>",
                        "units_<j>",
                    ]
                    + [k for k in config.OVERRIDE_KEYS if k not in HP_KEYS and k != "search"]
                )
                raise ConfigError(
                    f"`{key}` is neither a hyperparameter nor a config override of `{name}`. "
                    f"Valid keys: {', '.join(valid)}.{closest(key, valid)} Received: {key}={value!r}."
                )
        if num_classes is not None:
            overrides["num_classes"] = num_classes
        if input_shape is not None:
            overrides["input_shape"] = tuple(input_shape)
        if search is not None:
            if not isinstance(search, dict):
                raise ConfigError(
                    f"`search` must be a dict in the `[search]` syntax, e.g. "
                    f"{{'dense_layers': {{'min': 0, 'max': 2}}}}. Received: search={search!r}."
                )
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
        space = {key: check_param(p) for key, p in spec.search.items()}
        given = {**config.to_dict(spec).get("search", {}), **self.fixed}
        check_applicable(spec, list(space) + list(self.fixed), given.get)
        blocks, head = spec.blocks, spec.head
        own = {
            "conv_blocks": [len(blocks)] if blocks else [],
            "stages": [len(spec.stages)] if spec.stages else [],
            "stage_blocks": [st.blocks for st in spec.stages],
            "stage_filters": [st.filters for st in spec.stages],
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
            raise ConfigError(
                f"`search.batch_norm` is one switch for every block, and the blocks of "
                f"`{spec.name}` disagree on it. Received: batch_norm={space['batch_norm']!r}. "
                f"Remove it from the search or make the blocks agree."
            )
        for key, p in space.items():
            for value in own[key]:
                p = widen(p, value)
            space[key] = p
        return space

    def _count_max(self, key):
        """The largest layer count any trial can have for `conv_blocks`/`dense_layers`."""
        if key in self.fixed:
            return self.fixed[key]
        if key in self.space:
            return largest(self.space[key])
        return {"conv_blocks": len(self.base.blocks), "stages": len(self.base.stages)}.get(
            key, len(self.base.head.dense)
        )

    def default(self, name):
        """The default value of hyperparameter `name` (the entry's own where it has one)."""
        spec = self.base
        m = LAYER_NAME.match(name)
        if m:
            key, i = m.group(1), int(m.group(2))
            if key == "units":
                dense = spec.head.dense
                if i <= len(dense):
                    return dense[i - 1]
                if dense:
                    return dense[-1]
                return middle(self.space["units"]) if "units" in self.space else 128
            if key.startswith("stage_"):
                return self._stage_default(key, i)
            block = spec.blocks[min(i, len(spec.blocks)) - 1]
            if key == "filters":
                if i <= len(spec.blocks) or "filters" not in self.space:
                    return block.filters[0]
                return snap(self.space["filters"], 2 * self.default(f"filters_{i - 1}"))
            return block.convs if key == "convs" else block.kernel_size
        return {
            "conv_blocks": len(spec.blocks),
            "stages": len(spec.stages),
            "dense_layers": len(spec.head.dense),
            "batch_norm": spec.blocks[0].batch_norm if spec.blocks else False,
            "dropout": spec.head.dropout,
            "learning_rate": spec.train.learning_rate,
            "optimizer": spec.train.optimizer,
        }[name]

    def _stage_default(self, key, i):
        """`stage_blocks_i`/`stage_filters_i`: the entry's stage i; beyond, the last's blocks and twice the width."""
        stages = self.base.stages
        if i <= len(stages):
            return getattr(stages[i - 1], key[len("stage_") :])
        if key == "stage_blocks":
            return stages[-1].blocks
        wider = 2 * self.default(f"stage_filters_{i - 1}")
        return snap(self.space["stage_filters"], wider) if "stage_filters" in self.space else wider

    def _hp(self, hp, name, key=None):
        """Declares `name` when it is searched or pinned; returns its value (default otherwise)."""
        key = key or name
        for pinned in (name, key):
            if pinned in self.fixed:
                return hp.Fixed(name, self.fixed[pinned])
        if key in self.space:
            return declare(hp, self.space[key], name, self.default(name))
        return self.default(name)

    def _searched(self, key):
        return key in self.space or key in self.fixed

    def _scope(self, hp, count, i):
        if not self._searched(count):
            return contextlib.nullcontext()
        values = [self.fixed[count]] if count in self.fixed else values_of(self.space[count])
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
            if (count == "conv_blocks" and not self.base.blocks) or (count == "stages" and not self.base.stages):
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
                raw.update(
                    filters=widths,
                    kernel_size=int(get(f"kernel_size_{i}")),
                    batch_norm=bool(get("batch_norm")) if self._searched("batch_norm") else own.batch_norm,
                )
                blocks.append(raw)
            changes["blocks"] = blocks
        if spec.stages:
            changes["stages"] = self._stages_for(get)
        dense = [int(get(f"units_{j}")) for j in range(1, int(get("dense_layers")) + 1)]
        # 6 significant digits: drops float noise such as 0.30000000000000004 from stepped ranges
        changes["head"] = {"dense": dense, "dropout": float(f"{get('dropout'):.6g}")}
        changes["train"] = {"learning_rate": float(f"{get('learning_rate'):.6g}"), "optimizer": get("optimizer")}
        return config.apply_overrides(spec, changes)

    def _stages_for(self, get):
        """The `[[stages]]` tables of a trial (`get(name)`: its value of hyperparameter `name`)."""
        own, out = config.to_dict(self.base)["stages"], []
        for i in range(1, int(get("stages")) + 1):
            raw = dict(own[min(i, len(own)) - 1])
            if i > len(own):  # a new stage halves the map as the ones before it
                raw["strides"] = min(2, self.base.stages[-1].kernel_size)
            raw.update(blocks=int(get(f"stage_blocks_{i}")), filters=int(get(f"stage_filters_{i}")))
            out.append(raw)
        return out

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
        from cnnzoo.zoo import builders

        values = self.declare_hyperparameters(hp)
        try:
            spec = self.spec_for(values)
            stats.layer_stats(spec)
        except ConfigError as e:
            raise kt.errors.FailedTrialError(f"{self.entry} with {values}: {e}") from e
        model = builders.build(spec, dtype=self.dtype)
        if compile:
            builders.compile_model(model, spec.train)
            prebuild(model, spec)
        return model

    def hp_names(self):
        """Every hyperparameter name of the space, in declaration order (per-layer ones included)."""
        hp = kt.HyperParameters()
        self.declare_hyperparameters(hp)
        return [p.name for p in hp.space]


def prebuild(model, spec):
    """Creates a compiled model's optimizer and metric variables now, outside `fit`'s traced step.

    Variables created while `fit` traces its train step make it trace twice and keep extra graphs
    alive after the model is gone: with TensorFlow 2.21 a `digits_cnn` trial leaves about 17 MB
    behind that way and about 6 MB with the variables made here, and trains faster
    (`cnnzoo._compat.symbolic_build`: shapes only, no data).
    """
    import numpy as np

    from cnnzoo import _compat

    batch = (np.zeros((1, *spec.input_shape), "float32"), np.zeros((1,), "int64"))
    return _compat.symbolic_build(model, batch)


def hypermodel(name, num_classes=None, input_shape=None, search=None, dtype=None, **fixed):
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
        dtype: None (float32), `"mixed_bfloat16"` or `"mixed_float16"`.

    Returns:
        A `CnnzooHyperModel` (a `keras_tuner.HyperModel`).

    Example:

    >>> hm = cnnzoo.hypermodel("digits_cnn", num_classes=10, learning_rate=1e-3)
    >>> tuner = keras_tuner.RandomSearch(hm, "val_accuracy", max_trials=5)
    """
    return CnnzooHyperModel(name, num_classes=num_classes, input_shape=input_shape, search=search, dtype=dtype, **fixed)
