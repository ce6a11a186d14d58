"""Multi-scale features: a model's feature maps at strides 2, 4, ... 32 (timm's `features_only`).

`cnnzoo.get(name, features_only=True, out_indices=...)` and `features_model(model, out_indices)`
return a `keras.Model` whose outputs are *levels*, and `feature_info(model)` says what each is
(`FeatureInfo`: channels, reduction, layer name). Level `i` is the map at stride `2**(i + 1)` (0 =
stride 2, ... 4 = stride 32) for every architecture, so `out_indices=(1, 2, 3, 4)` is strides 4 to
32 whatever the network (timm's numbering for its ResNets); a network that first downsamples by 4
has no level 0, a stride that is not a power of two takes the index of the power below it, and
stride-1 maps are not levels.

One rule over the graph, for any Functional model: each layer's output stride relative to the
input is computed (strides of convolutions and pooling; other layers by their output shapes), and
a level is the *last* layer at its stride, the one just before the next downsampling, as timm
records its `feature_info`; it must be a layer every path passes through (not the inside of one
branch of a block), and padding and dropout layers are not taken. `ConvBlock`s and nested
Functional models (a keras.applications backbone) are read as one flat graph, which the features
model is: it shares the layers and weights of the model it came from. docs/zoo.md shows what the
rule gives per family. `cnnzoo.get` sets `model.feature_info`, a plain attribute that `model.save`
does not keep: `feature_info(model)` recomputes the same from a loaded graph.
"""

import math
import weakref
from dataclasses import dataclass
from fractions import Fraction

import keras

from cnnzoo.errors import ConfigError
from cnnzoo.utils.checks import is_int
from cnnzoo.zoo.layers import ConvBlock

__all__ = ["FeatureLevel", "FeatureInfo", "feature_info", "features_model", "levels", "deepest"]

_PROBE = 1024  # side of the image a layer of unknown stride is asked about (compute_output_shape)
_STRIDED = (
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
)
# not a level: identity at inference (dropout, noise) or a padded copy of the map before
_NOT_A_LEVEL = (
    keras.layers.Dropout,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.layers.ZeroPadding2D,
)


@dataclass(frozen=True)
class FeatureLevel:
    """One feature map of a network (one entry of timm's `feature_info`).

    Attributes:
        index: the level, `log2(reduction) - 1` (0 = stride 2, 4 = stride 32); None for a
            stride-1 output.
        layer: the name of the layer whose output it is (timm's `module`), e.g. `block3_conv3`,
            `conv4_block6_out`.
        channels: the number of channels (timm's `num_chs`).
        reduction: the stride relative to the input image (timm's `reduction`).
        shape: `(height, width)` of the map at the model's input size (None where unknown).
    """

    index: int
    layer: str
    channels: int
    reduction: int
    shape: tuple = None


@dataclass(frozen=True)
class FeatureInfo:
    """What each output of a features model is: a sequence of `FeatureLevel`, shallow to deep.

    The helpers take timm's `FeatureInfo` names: `channels()`, `reduction()` and `layers()` give
    one value per level (or the one at position `idx`), `get_dicts()` timm's dictionaries.

    Attributes:
        model: the name of the model the levels belong to.
        levels: tuple of `FeatureLevel`.

    Example:

    >>> info = cnnzoo.get("vgg16", features_only=True, input_shape=(64, 64, 3)).feature_info
    >>> info.indices(), info.reduction(), info.channels()
    ([0, 1, 2, 3, 4], [2, 4, 8, 16, 32], [128, 256, 512, 512, 512])
    """

    model: str
    levels: tuple

    def __len__(self):
        return len(self.levels)

    def __iter__(self):
        return iter(self.levels)

    def __getitem__(self, i):
        return self.levels[i]

    def _values(self, field, idx):
        values = [getattr(level, field) for level in self.levels]
        return values if idx is None else values[idx]

    def indices(self):
        """The level of each output (what `out_indices` selected)."""
        return self._values("index", None)

    def channels(self, idx=None):
        """Channels of each output, or of the output at position `idx`."""
        return self._values("channels", idx)

    def reduction(self, idx=None):
        """Stride of each output relative to the input, or of the output at position `idx`."""
        return self._values("reduction", idx)

    def layers(self, idx=None):
        """The layer name of each output, or of the output at position `idx` (timm's `module_name`)."""
        return self._values("layer", idx)

    def get_dicts(self):
        """timm's form: one dict per output with `num_chs`, `reduction`, `module` and `index`."""
        return [
            {"num_chs": lv.channels, "reduction": lv.reduction, "module": lv.layer, "index": lv.index}
            for lv in self.levels
        ]


@dataclass(frozen=True)
class _Record:
    """One layer output met while walking the graph, in topological order."""

    layer: object
    tensor: object
    stride: Fraction  # None: not a feature map, or not traceable to the input
    merge: bool = False  # made from several feature maps (Add, Concatenate)


class _Walk:
    """The model's graph replayed as one flat Functional graph that shares its layers.

    `records` lists every layer output in order with its stride; `inputs` and `outputs` are the
    flat graph's (the model's outputs, in order). `ConvBlock`s are replayed sub-layer by sub-layer
    and nested Functional models layer by layer (`keras.models.clone_model` with the layers
    themselves as the clones, and a `call_function` that records what each call makes).
    """

    def __init__(self, model):
        self.records, self.stride, self.last_use, self.made = [], {}, {}, {}
        if not isinstance(model, keras.Model) or not getattr(model, "inputs", None):
            raise ConfigError(
                f"`model` must be a Functional or Sequential keras.Model (its layers form a graph). "
                f"Received: model={getattr(model, 'name', model)!r} ({type(model).__name__})."
            )
        graph = keras.Model(model.inputs, model.outputs, name=model.name)  # the same graph, uncompiled
        self.inputs = keras.tree.map_structure(
            lambda t: keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t.name), graph.input
        )
        for t in keras.tree.flatten(self.inputs):
            self.stride[id(t)] = Fraction(1) if len(t.shape) == 4 else None
        copy = keras.models.clone_model(graph, self.inputs, clone_function=lambda layer: layer, call_function=self.call)
        self.outputs = list(copy.outputs)
        for t in self.outputs:
            self.last_use[id(t)] = math.inf  # an output is read after everything else

    def call(self, layer, *args, **kwargs):
        if isinstance(layer, ConvBlock):  # a chain of sub-layers: each one's map becomes reachable
            x = args[0]
            for step in layer.steps:
                x = self.call(step, x)
            self.made[layer.name] = x
            return x
        if (
            isinstance(layer, keras.Model)
            and not isinstance(layer, keras.Sequential)
            and getattr(layer, "inputs", None)
        ):
            # the copy's own outputs are re-wired to a new Input (its inputs are not Inputs here): the
            # tensors made by its output layers in this graph are what the layers after it read
            keras.models.clone_model(layer, args[0], clone_function=lambda inner: inner, call_function=self.call)
            outs = [self.made[name] for name in layer.output_names]
            self.made[layer.name] = outs[0] if len(outs) == 1 else outs
            return self.made[layer.name]
        inputs = [t for t in keras.tree.flatten((args, kwargs)) if isinstance(t, keras.KerasTensor)]
        for t in inputs:
            self.last_use[id(t)] = len(self.records)
        known = [(self.stride[id(t)], t) for t in inputs if self.stride.get(id(t)) is not None]
        out = layer(*args, **kwargs)
        for t in keras.tree.flatten(out):
            stride = None
            if known and len(t.shape) == 4:
                before, x = max(known, key=lambda pair: pair[0])
                factor = _factor(layer, x.shape, t.shape) if len(inputs) == 1 else 1
                stride = None if factor is None else before * factor
            self.stride[id(t)] = stride
            self.records.append(_Record(layer, t, stride, merge=len(known) > 1))
        self.made[layer.name] = out
        return out

    def levels(self):
        """`{stride: _Record}`: at each integer stride >= 2, the last record that every path passes
        through; where none does (NASNet's cells each read the two cells before), the widest merge
        (a layer of several inputs: a cell's concatenation), else the last record."""
        found = {}  # stride -> {rank: record}; rank 2: on every path, 1: a merge, 0: any
        horizon = max((self.last_use.get(id(t), -1) for t in keras.tree.flatten(self.inputs)), default=-1)
        for position, record in enumerate(self.records):
            every_path = horizon <= position  # nothing made before it is read after it
            horizon = max(horizon, self.last_use.get(id(record.tensor), position))
            s = record.stride
            if s is None or s.denominator != 1 or s < 2 or isinstance(record.layer, _NOT_A_LEVEL):
                continue
            ranks = found.setdefault(int(s), {})
            ranks[0] = record
            if record.merge and (1 not in ranks or _channels(record) >= _channels(ranks[1])):
                ranks[1] = record
            if every_path:
                ranks[2] = record
        return {s: ranks[max(ranks)] for s, ranks in sorted(found.items())}


def _channels(record):
    return record.tensor.shape[-1] or 0


def _factor(layer, in_shape, out_shape):
    """How much `layer` divides the spatial size (a `Fraction`; below 1 where it upsamples; None: global)."""
    if isinstance(layer, (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)):
        return None  # `keepdims=True` keeps 4 axes, but each unit sees the whole image
    if isinstance(layer, keras.layers.Conv2DTranspose):
        return Fraction(1, int(layer.strides[0]))
    if isinstance(layer, _STRIDED):
        return Fraction(int(layer.strides[0]))
    if isinstance(layer, keras.layers.UpSampling2D):
        return Fraction(1, int(layer.size[0]))
    if isinstance(layer, keras.Sequential):
        factors = [_factor(inner, inner.input.shape, inner.output.shape) for inner in layer.layers]
        return None if None in factors else math.prod(factors, start=Fraction(1))
    if in_shape[1] is not None and in_shape[1] == out_shape[1] and in_shape[1] > 1:
        return Fraction(1)  # a map of more than one row keeps its size only at stride 1
    if isinstance(layer, keras.layers.Layer):  # any other layer: what it makes of a large image (exact)
        probed = _probe(layer, in_shape)
        if probed is not None:
            return None if probed == 1 else _ratio(_PROBE, probed)
    # an operation (`x + 3.0`, `keras.ops.*`), or a layer that cannot say: its shapes here
    return _ratio(in_shape[1], out_shape[1]) if in_shape[1] and out_shape[1] else Fraction(1)


def _probe(layer, in_shape):
    """The height `layer` makes of a `_PROBE`-high image (its shape arithmetic, or a symbolic call), else None."""
    shape = (None, _PROBE, _PROBE, in_shape[-1])
    try:
        return layer.compute_output_shape(shape)[1]
    except NotImplementedError:  # a custom layer (a block of sub-layers) that does not say
        pass
    except (ValueError, TypeError, IndexError):
        return None
    try:
        return layer.compute_output_spec(keras.KerasTensor(shape)).shape[1]
    except (NotImplementedError, ValueError, TypeError, IndexError, AttributeError):
        return None


def _ratio(before, after):
    r = before / after
    return Fraction(round(r)) if r >= 1 else Fraction(1, round(after / before))


_WALKS = weakref.WeakKeyDictionary()


def _walk(model):
    walk = _WALKS.get(model)
    if walk is None:
        walk = _WALKS[model] = _Walk(model)
    return walk


def _level(record):
    stride = record.stride
    index = int(stride).bit_length() - 2 if stride is not None and stride >= 2 else None
    shape = tuple(record.tensor.shape[1:3])
    return FeatureLevel(
        index=index,
        layer=record.layer.name,
        channels=int(record.tensor.shape[-1]),
        reduction=None if stride is None else (int(stride) if stride.denominator == 1 else float(stride)),
        shape=None if None in shape else tuple(int(d) for d in shape),
    )


def levels(model):
    """Every level of `model`: the last map at each stride 2, 4, ... (see the module docstring).

    Args:
        model: a Functional or Sequential `keras.Model` (a zoo model, nested backbones included).

    Returns:
        A `FeatureInfo` with one `FeatureLevel` per stride the network has, shallow to deep.

    Example:

    >>> levels(cnnzoo.get("digits_cnn")).layers()
    ['block2_act2', 'block2_pool']
    """
    return FeatureInfo(model.name, tuple(_level(r) for r in _walk(model).levels().values()))


def deepest(model):
    """`(inputs, tensor)`: the flat graph's input and its deepest level's map (for pooled embeddings)."""
    walk = _walk(model)
    found = walk.levels()
    if not found:
        raise _no_levels(model)
    return walk.inputs, found[max(found)].tensor


def feature_info(model):
    """What a features model's outputs are; for any other model, the levels it has.

    Args:
        model: a `keras.Model`: one from `cnnzoo.get(name, features_only=True)` or
            `features_model` (its outputs are described, in order; a reloaded one too), or a
            classifier (every level it has: what `features_only=True` would give).

    Returns:
        A `FeatureInfo`.

    Example:

    >>> model = cnnzoo.get("bird_classifier", features_only=True, out_indices=(3, 4), input_shape=(64, 64, 3))
    >>> model.save("features.keras")
    >>> cnnzoo.feature_info(cnnzoo.load("features.keras")).reduction()  # doctest: +SKIP
    [16, 32]
    """
    outputs = getattr(model, "outputs", None) or []
    if outputs and all(len(t.shape) == 4 for t in outputs):
        walk = _walk(model)
        by_tensor = {id(r.tensor): r for r in walk.records}
        return FeatureInfo(model.name, tuple(_level(by_tensor[id(t)]) for t in walk.outputs))
    return levels(model)


def features_model(model, out_indices=None):
    """A `keras.Model` whose outputs are the feature maps of `model` at the levels `out_indices`.

    Args:
        model: a zoo model (classic, residual or backbone entry) or any Functional model.
        out_indices: None (every level the model has) or a sequence of levels: level `i` is the
            map at stride `2**(i + 1)`, so `(1, 2, 3, 4)` is strides 4, 8, 16 and 32.

    Returns:
        A Functional `keras.Model` named `<model>_features`, sharing the layers and weights of
        `model`, with one output per level, shallow to deep (a list, even for one level), and
        `feature_info` (a `FeatureInfo`) set. It is not compiled.

    Example:

    >>> features = features_model(cnnzoo.get("bird_classifier", input_shape=(64, 64, 3)), (1, 2, 3, 4))
    >>> [tuple(o.shape) for o in features.outputs]
    [(None, 16, 16, 64), (None, 8, 8, 128), (None, 4, 4, 256), (None, 2, 2, 256)]
    """
    wanted = _check_indices(out_indices)
    walk = _walk(model)
    by_index = {int(s).bit_length() - 2: r for s, r in walk.levels().items()}
    if not by_index:
        raise _no_levels(model)
    chosen = sorted(by_index) if wanted is None else sorted(wanted)
    missing = [i for i in chosen if i not in by_index]
    if missing:
        raise ConfigError(
            f"`out_indices` must name levels that `{model.name}` has: {_describe(by_index)} (level i is the "
            f"feature map at stride 2**(i+1)). Received: out_indices={tuple(wanted)!r}. Use "
            f"out_indices={tuple(i for i in chosen if i in by_index) or tuple(sorted(by_index))!r}, or leave "
            f"it out for every level."
        )
    records = [by_index[i] for i in chosen]
    features = keras.Model(walk.inputs, [r.tensor for r in records], name=f"{model.name}_features")
    features.feature_info = FeatureInfo(features.name, tuple(_level(r) for r in records))
    return features


def _check_indices(out_indices):
    """None, or the levels as a list; a bare int is refused (timm reads one as "the last n")."""
    if out_indices is None:
        return None
    values = list(out_indices) if isinstance(out_indices, (list, tuple)) else None
    if not values or not all(is_int(i) and i >= 0 for i in values) or len(set(values)) != len(values):
        raise ConfigError(
            f"`out_indices` must be None or a tuple of distinct levels >= 0 (0 = stride 2, 1 = stride 4, ... "
            f"4 = stride 32). Received: out_indices={out_indices!r}. For a feature pyramid use "
            f"out_indices=(1, 2, 3, 4); for the stride-32 map alone, (4,)."
        )
    return [int(i) for i in values]


def _describe(by_index):
    """'5 levels: 0..4 at strides 2..32', or the list where levels are missing in between."""
    keys = sorted(by_index)
    strides = [int(by_index[i].stride) for i in keys]
    count = f"{len(keys)} level{'s' if len(keys) != 1 else ''}"
    if keys == list(range(keys[0], keys[-1] + 1)) and len(keys) > 1:
        return f"{count}: {keys[0]}..{keys[-1]} at strides {strides[0]}..{strides[-1]}"
    return f"{count}: " + ", ".join(f"{i} (stride {s})" for i, s in zip(keys, strides))


def _no_levels(model):
    return ConfigError(
        f"`model` must have a feature map [batch, height, width, channels] at a stride of 2 or more for "
        f"features and embeddings; `{model.name}` has none (no strided convolution or pooling reaches its "
        f"outputs). Received: model={model.name!r}."
    )
