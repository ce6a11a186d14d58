"""Receptive fields: how much of the image each layer's units see.

A 3x3 convolution sees 3x3 pixels; stacked on it, another 3x3 sees 5x5, and a
2x2 max-pool doubles the step between neighbouring units, so each later layer
grows the field faster. That is the primer's "spatial hierarchy": early layers
answer about edges in a few pixels, late ones about parts covering most of the
image. The numbers come from the layer arithmetic (`cnnzoo.zoo.stats`), without
TensorFlow for a name or a spec; a built model is read from its layers' configs,
keras.applications backbones included.
"""

from cnnzoo.errors import ConfigError
from cnnzoo.utils.renames import renamed_arguments
from cnnzoo.zoo import config, registry, stats
from cnnzoo.zoo.stats import UNKNOWN, ReceptiveField, receptive_step

__all__ = ["receptive_fields", "ReceptiveField"]


@renamed_arguments(name_or_model="model")
def receptive_fields(model, input_shape=None):
    """The receptive field of every layer: size and jump (stride) in input pixels.

    Args:
        model: a zoo model name, a `ModelSpec`, or a built `keras.Model` (a
            zoo model, one loaded from a `.keras` file, or a plain Keras CNN).
            Was `name_or_model` (still accepted until cnnzoo 0.3, with a
            `DeprecationWarning`).
        input_shape: optional (height, width, channels) for a name or spec;
            sizes and jumps do not depend on it, the starts of "same"-padded
            strided layers do.

    Returns:
        A dict layer name -> `ReceptiveField` (`size`, `jump`, `start`), in
        model order. For a name or spec, the rows of `cnnzoo info` (a
        backbone entry's backbone is unknown: None). For a built model, the
        conv, pool, normalisation and dense layers, those inside `ConvBlock`s
        and nested backbones (named `backbone/LAYER`) included; flatten,
        global pooling and what follows them see the whole input (`jump` None),
        and so does everything after a squeeze-and-excitation block
        (EfficientNet, MobileNetV3), which pools the whole feature map.
        Branches that merge (Add, Concatenate) give the union of their fields.

    Example:

    >>> fields = receptive_fields("vgg16")
    >>> fields["block5_conv3"].size, fields["block5_pool"].size
    (196, 212)
    """
    if isinstance(model, str):
        return stats.receptive_fields(registry.spec(model), input_shape)
    if isinstance(model, config.ModelSpec):
        return stats.receptive_fields(model, input_shape)
    if hasattr(model, "layers") and hasattr(model, "inputs"):
        if input_shape is not None:
            raise ConfigError(
                f"`input_shape` applies to a model name or spec; a built model has its own "
                f"({tuple(model.inputs[0].shape[1:])}). Received: input_shape={input_shape!r}."
            )
        return _from_model(model)
    raise ConfigError(
        f"`model` must be a zoo model name, a ModelSpec or a built keras.Model. "
        f"Received: {type(model).__name__} {model!r:.80}."
    )


# ------------------------------------------------------------ built models

_SKIP = (
    "InputLayer",
    "Activation",
    "ReLU",
    "LeakyReLU",
    "PReLU",
    "ELU",
    "Softmax",
    "Dropout",
    "SpatialDropout2D",
    "GaussianNoise",
    "GaussianDropout",
    "Rescaling",
    "Normalization",
    "Preprocess",
)
_WHOLE = ("Flatten", "GlobalAveragePooling2D", "GlobalMaxPooling2D")


def _from_model(model):
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4:
        raise ConfigError(
            f"`model` must take images (batch, height, width, channels). Received: a model with input shape {shape}."
        )
    out = {}
    _walk(model, ReceptiveField(1, 1, (0.0, 0.0)), shape[1:3], max(shape[1:3]), out, "")
    return out


def _walk(model, field, hw, side, out, prefix):
    """Follows a Functional model's graph (a chain where the graph is not public); returns the output field."""
    known = {id(t): (field, hw) for t in model.inputs}
    last = (field, hw)
    for layer in model.layers:
        name = type(layer).__name__
        if name == "InputLayer":
            continue
        ins = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
        # a nested model's `input` is its own: follow the chain there
        found = [known.get(id(t), last) for t in ins]
        if len(found) > 1:
            field, hw = _merge([f for f, _ in found]), found[0][1]
        else:
            field, hw = found[0]
        if hasattr(layer, "layers") and hasattr(layer, "inputs"):  # a nested model (a keras.applications backbone)
            inner = {}
            field = _walk(layer, field, hw, side, inner, "")
            out.update({f"{prefix}{layer.name}/{k}": v for k, v in inner.items()})
            record = True
        elif hasattr(layer, "steps"):  # ConvBlock, ClassifierHead: sub-layers run in order
            for step in layer.steps:
                field, hw, record = _apply(step, field, hw, side)
                if record:
                    out[f"{prefix}{step.name}"] = field
            record = False
        else:
            field, hw, record = _apply(layer, field, hw, side)
        if record:
            out[f"{prefix}{layer.name}"] = field
        output_shape = tuple(layer.output.shape) if not isinstance(layer.output, (list, tuple)) else ()
        if len(output_shape) == 4 and None not in output_shape[1:3]:
            hw = output_shape[1:3]
        known[id(layer.output)] = last = (field, hw)
    return field


def _apply(layer, field, hw, side):
    """(field, (height, width), whether to record a row) after one layer."""
    name = type(layer).__name__
    if name in _SKIP:
        return field, hw, False
    if name in _WHOLE or field.whole:
        return ReceptiveField(side), hw, True
    cfg = layer.get_config()
    if name == "ZeroPadding2D":
        (top, bottom), (left, right) = cfg["padding"]
        if field.start is None:
            return field, (hw[0] + top + bottom, hw[1] + left + right), True
        start = (field.start[0] - top * field.jump, field.start[1] - left * field.jump)
        return ReceptiveField(field.size, field.jump, start), (hw[0] + top + bottom, hw[1] + left + right), True
    kernel = cfg.get("kernel_size", cfg.get("pool_size"))
    if kernel is None:  # BatchNormalization, Dense on pixels, Reshape, ...: position by position
        return field, hw, name not in ("Reshape",)
    kernel = _pair(kernel)
    strides = _pair(cfg.get("strides") or kernel)
    dilation = _pair(cfg.get("dilation_rate", 1))
    if len(kernel) != 2:
        return UNKNOWN, hw, True
    padding = cfg.get("padding", "valid")
    if len(set(kernel)) > 1 or len(set(strides)) > 1 or len(set(dilation)) > 1 or padding not in ("same", "valid"):
        return UNKNOWN, hw, True  # a field that is not square: not described by one size
    k, s, d = kernel[0], strides[0], dilation[0]
    new = receptive_step(field, hw, k, s, padding, d)
    keff = d * (k - 1) + 1
    size = tuple(-(-n // s) if padding == "same" else (n - keff) // s + 1 for n in hw)
    return new, size, True


def _pair(value):
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def _merge(fields):
    """Add, Multiply, Concatenate: the union of the inputs' fields (whole if one is whole)."""
    if any(f.whole for f in fields):
        return next(f for f in fields if f.whole)
    if any(f.size is None for f in fields) or len({f.jump for f in fields}) > 1:
        return UNKNOWN
    lo = [min(f.start[a] - (f.size - 1) / 2 for f in fields) for a in (0, 1)]
    hi = [max(f.start[a] + (f.size - 1) / 2 for f in fields) for a in (0, 1)]
    size = int(round(max(h - low for low, h in zip(lo, hi)))) + 1
    return ReceptiveField(size, fields[0].jump, tuple((low + h) / 2 for low, h in zip(lo, hi)))
