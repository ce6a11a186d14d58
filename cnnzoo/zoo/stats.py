"""Shapes, parameter counts and FLOPs of a spec, by arithmetic alone.

`cnnzoo info` and `cnnzoo list` use this, so it never imports TensorFlow. The
numbers equal what Keras reports for the built model (tests check every zoo
entry). FLOPs count 2 per multiply-accumulate of convolutions and dense layers
(the convention behind "VGG16: 30.9 GFLOPs"); bias adds, activations,
normalisation and pooling are not counted.

Receptive fields follow the standard recurrence over the layers (Dumoulin and
Visin 2016; Araujo et al. 2019): a layer with kernel k and stride s turns the
field size r, jump j and start c of its input into r + (k-1)j, js and
c + ((k-1)/2 - p)j, where p is the padding before the first row (TensorFlow's
"same" padding puts the odd pixel after the last row). Sizes are the
theoretical field, not clipped to the image: VGG-16 `block5_pool` sees 212 px.
A residual block adds two paths; its output's field is the union of theirs,
which is the main branch's (the longest path: the shortcut's is centred on
the same pixel and smaller), so ResNet-18's last stage sees 435 px.
"""

import math
from dataclasses import dataclass

from cnnzoo.errors import ConfigError

__all__ = [
    "ReceptiveField",
    "LayerStat",
    "layer_stats",
    "receptive_fields",
    "receptive_step",
    "union",
    "count_params",
    "count_trainable_params",
    "count_flops",
    "min_input_size",
    "summary",
]


@dataclass(frozen=True)
class ReceptiveField:
    """The input region one output unit of a layer sees, in input pixels.

    Attributes:
        size: side of the (square) field; the theoretical field, which may
            exceed the image. None when unknown (a keras.applications backbone).
        jump: input pixels between the fields of neighbouring output units
            (the layer's total stride). None where a unit sees the whole input
            (flatten, global pooling, dense: then `size` is the input's larger side).
        start: (row, column) of the centre of the first output unit's field,
            in input pixel coordinates (pixel centres at 0, 1, ...); half
            pixels happen after even kernels, negative values from padding.
    """

    size: int = None
    jump: int = None
    start: tuple = None

    @property
    def whole(self):
        """True where each unit sees the whole input (flatten, global pooling, dense)."""
        return self.size is not None and self.jump is None

    def to_dict(self):
        return {"size": self.size, "jump": self.jump, "start": None if self.start is None else list(self.start)}


UNKNOWN = ReceptiveField()


@dataclass(frozen=True)
class LayerStat:
    """One layer: `params` counts every weight, `non_trainable` those of them Keras does not train
    (a BatchNormalization layer's moving mean and variance)."""

    name: str
    kind: str
    output_shape: tuple
    params: int
    flops: int
    receptive_field: ReceptiveField = UNKNOWN
    non_trainable: int = 0


def _pad_before(size, k, s, padding):
    if padding != "same":
        return 0
    return max((math.ceil(size / s) - 1) * s + k - size, 0) // 2


def receptive_step(field, sizes, kernel, stride, padding, dilation=1):
    """One layer of the receptive-field recurrence.

    Args:
        field: the input's `ReceptiveField` (`ReceptiveField(1, 1, (0.0, 0.0))`
            for the image itself).
        sizes: (height, width) of the layer's input feature map.
        kernel: int, square kernel (or pool) side.
        stride: int.
        padding: `"same"` or `"valid"`.
        dilation: int, the kernel's dilation rate.

    Returns:
        The output's `ReceptiveField` (unknown stays unknown).
    """
    if field.size is None or field.jump is None:
        return field
    k = dilation * (kernel - 1) + 1
    start = tuple(
        c + ((k - 1) / 2 - _pad_before(n, k, stride, padding)) * field.jump for c, n in zip(field.start, sizes)
    )
    return ReceptiveField(field.size + (k - 1) * field.jump, field.jump * stride, start)


def _out(size, k, s, padding):
    if padding == "same":
        return math.ceil(size / s)
    return (size - k) // s + 1


def layer_stats(spec, input_shape=None, num_classes=None):
    """Lists each layer of `spec` with output shape, parameters and FLOPs.

    Args:
        spec: a `ModelSpec`.
        input_shape: (height, width, channels); defaults to the spec's.
        num_classes: defaults to the spec's.

    Returns:
        A list of `LayerStat`, in model order.

    Example:

    >>> [s.name for s in layer_stats(cnnzoo.spec("lenet5"))][:2]  # doctest: +SKIP
    ['block1_conv1', 'block1_pool']
    """
    h, w, c = input_shape or spec.input_shape
    num_classes = num_classes or spec.num_classes
    rows = []

    def too_small(layer):
        raise ConfigError(
            f"`input_shape` is too small for `{spec.name}`: the feature map vanishes at `{layer}`. "
            f"Use at least {min_input_size(spec)}x{min_input_size(spec)}. Received: input_shape={(h0, w0, c0)}."
        )

    h0, w0, c0 = h, w, c
    rf = ReceptiveField(1, 1, (0.0, 0.0))
    if spec.backbone is not None:
        rf = UNKNOWN
        rows.append(_backbone_stat(spec, h0, w0))
        h, w, c = rows[-1].output_shape
    for i, b in enumerate(spec.blocks, 1):
        (h, w, c), rf = _block_stats(rows, i, b, (h, w, c), rf, too_small)
    for i, stage in enumerate(spec.stages, 1):
        for j in range(1, stage.blocks + 1):
            (h, w, c), rf = _residual_stats(rows, f"stage{i}_block{j}", stage, j == 1, (h, w, c), rf)
    whole = ReceptiveField(max(h0, w0))  # from here on, every unit sees the whole input
    rows += _head_stats(spec.head, (h, w, c), num_classes, whole)
    return rows


def _backbone_stat(spec, h, w):
    """The `LayerStat` of a backbone, from its cached counts (FLOPs scaled by the input's area)."""
    bb = spec.backbone
    area = (h * w) / (spec.input_shape[0] * spec.input_shape[1])
    shape = (math.ceil(h / bb.reduction), math.ceil(w / bb.reduction), bb.channels)
    return LayerStat("backbone", bb.application, shape, bb.params, int(round(bb.flops * area)), UNKNOWN)


def _block_stats(rows, i, b, shape, rf, too_small):
    """Appends the rows of block `i` (`b`, a `Block`) to `rows`; returns its output shape and receptive field.
    `too_small(layer)` raises where the feature map vanishes."""
    h, w, c = shape
    for j, f in enumerate(b.filters, 1):
        s = b.strides if j == 1 else 1
        rf = receptive_step(rf, (h, w), b.kernel_size, s, b.padding)
        h, w = _out(h, b.kernel_size, s, b.padding), _out(w, b.kernel_size, s, b.padding)
        if h < 1 or w < 1:
            too_small(f"block{i}_conv{j}")
        k2 = b.kernel_size * b.kernel_size
        bias = 0 if b.batch_norm else f  # a conv followed by BatchNorm has no bias
        rows.append(LayerStat(f"block{i}_conv{j}", "Conv2D", (h, w, f), k2 * c * f + bias, 2 * k2 * c * f * h * w, rf))
        c = f
        if b.batch_norm:
            rows.append(_batch_norm(f"block{i}_bn{j}", (h, w, c), rf))
    if b.pool != "none":
        ps = b.pool_strides or b.pool_size
        rf = receptive_step(rf, (h, w), b.pool_size, ps, b.pool_padding)
        h, w = _out(h, b.pool_size, ps, b.pool_padding), _out(w, b.pool_size, ps, b.pool_padding)
        if h < 1 or w < 1:
            too_small(f"block{i}_pool")
        kind = "MaxPooling2D" if b.pool == "max" else "AveragePooling2D"
        rows.append(LayerStat(f"block{i}_pool", kind, (h, w, c), 0, 0, rf))
    return (h, w, c), rf


def _batch_norm(name, shape, rf):
    """A BatchNormalization row: gamma and beta train, the moving mean and variance do not."""
    return LayerStat(name, "BatchNormalization", shape, 4 * shape[-1], 0, rf, non_trainable=2 * shape[-1])


def _residual_stats(rows, prefix, stage, first, shape, rf):
    """Appends the rows of one residual block (the first of its stage strides); returns its output shape and field.

    A strided conv is padded by `kernel // 2` on every side first (ZeroPadding2D, then a "valid" conv, as
    torchvision pads), so both paths stay centred on the same pixel."""
    h, w, c = shape
    stride, out = stage.strides if first else 1, stage.out_channels
    k = stage.kernel_size
    if stage.block == "basic":
        convs = [(k, stride, stage.filters), (k, 1, out)]
    else:
        convs = [(1, 1, stage.filters), (k, stride, stage.filters), (1, 1, out)]
    main, (mh, mw, mc) = rf, shape
    for j, (kernel, s, f) in enumerate(convs, 1):
        padding = "same"
        if s > 1:
            p, padding = kernel // 2, "valid"
            main = ReceptiveField(main.size, main.jump, tuple(x - p * main.jump for x in main.start))
            mh, mw = mh + 2 * p, mw + 2 * p
            rows.append(LayerStat(f"{prefix}_pad", "ZeroPadding2D", (mh, mw, mc), 0, 0, main))
        main = receptive_step(main, (mh, mw), kernel, s, padding)
        mh, mw = _out(mh, kernel, s, padding), _out(mw, kernel, s, padding)
        k2 = kernel * kernel
        rows.append(LayerStat(f"{prefix}_conv{j}", "Conv2D", (mh, mw, f), k2 * mc * f, 2 * k2 * mc * f * mh * mw, main))
        rows.append(_batch_norm(f"{prefix}_bn{j}", (mh, mw, f), main))
        mc = f
    short = rf
    if stride > 1 or c != out:
        short = receptive_step(rf, (h, w), 1, stride, "valid")
        if stage.shortcut == "projection":
            rows.append(
                LayerStat(f"{prefix}_shortcut_conv", "Conv2D", (mh, mw, out), c * out, 2 * c * out * mh * mw, short)
            )
            rows.append(_batch_norm(f"{prefix}_shortcut_bn", (mh, mw, out), short))
        else:
            if stride > 1:
                rows.append(LayerStat(f"{prefix}_shortcut_pool", "MaxPooling2D", (mh, mw, c), 0, 0, short))
            if c != out:
                rows.append(LayerStat(f"{prefix}_shortcut_pad", "ZeroPadChannels", (mh, mw, out), 0, 0, short))
    field = union(main, short)
    rows.append(LayerStat(f"{prefix}_add", "Add", (mh, mw, out), 0, 0, field))
    return (mh, mw, out), field


def union(*fields):
    """The field of a layer that merges its inputs (Add, Concatenate): the smallest square covering theirs.

    Args:
        *fields: `ReceptiveField`s with one jump (the merged maps have one size).

    Returns:
        A `ReceptiveField`; unknown when one input is unknown.

    Example:

    >>> union(ReceptiveField(5, 1, (2.0, 2.0)), ReceptiveField(1, 1, (2.0, 2.0)))
    ReceptiveField(size=5, jump=1, start=(2.0, 2.0))
    """
    if any(f.size is None or f.jump is None for f in fields) or len({f.jump for f in fields}) > 1:
        return UNKNOWN
    lo = [min(f.start[a] - (f.size - 1) / 2 for f in fields) for a in (0, 1)]
    hi = [max(f.start[a] + (f.size - 1) / 2 for f in fields) for a in (0, 1)]
    size = int(round(max(b - a for a, b in zip(lo, hi)))) + 1
    return ReceptiveField(size, fields[0].jump, tuple((a + b) / 2 for a, b in zip(lo, hi)))


def _head_stats(head, shape, num_classes, whole):
    """The rows of the head: flatten or global pooling, the hidden dense layers, the predictions."""
    h, w, c = shape
    if head.pooling == "flatten":
        features = h * w * c
        rows = [LayerStat("flatten", "Flatten", (features,), 0, 0, whole)]
    else:
        features = c
        rows = [LayerStat(f"global_{head.pooling}_pool", "GlobalPooling2D", (c,), 0, 0, whole)]
    for i, units in enumerate(head.dense, 1):
        rows.append(LayerStat(f"fc{i}", "Dense", (units,), features * units + units, 2 * features * units, whole))
        features = units
    params, flops = features * num_classes + num_classes, 2 * features * num_classes
    rows.append(LayerStat("predictions", "Dense", (num_classes,), params, flops, whole))
    return rows


def receptive_fields(spec, input_shape=None):
    """The receptive field of every layer of `spec`, by arithmetic alone.

    Args:
        spec: a `ModelSpec`.
        input_shape: (height, width, channels); defaults to the spec's (the
            sizes and jumps do not depend on it, the starts of "same"-padded
            strided layers do).

    Returns:
        A dict layer name -> `ReceptiveField`, in model order, with the rows
        of `layer_stats`. A backbone entry's backbone row is unknown (None).

    Example:

    >>> receptive_fields(cnnzoo.zoo.registry.spec("vgg16"))["block5_pool"].size  # doctest: +SKIP
    212
    """
    return {r.name: r.receptive_field for r in layer_stats(spec, input_shape)}


def count_params(spec, input_shape=None, num_classes=None):
    """Total parameters (trainable and not) of the model `spec` builds."""
    return sum(r.params for r in layer_stats(spec, input_shape, num_classes))


def count_trainable_params(spec, input_shape=None, num_classes=None):
    """Trainable parameters: `count_params` less the BatchNorm moving statistics (what PyTorch counts).

    None for an entry with a keras.applications backbone: its cached numbers hold the total only.

    Example:

    >>> count_trainable_params(cnnzoo.spec("resnet18"))  # torchvision's resnet18: 11,689,512
    11689512
    """
    if spec.backbone is not None:
        return None
    return sum(r.params - r.non_trainable for r in layer_stats(spec, input_shape, num_classes))


def count_flops(spec, input_shape=None, num_classes=None):
    """Forward FLOPs for one image (2 per multiply-accumulate)."""
    return sum(r.flops for r in layer_stats(spec, input_shape, num_classes))


def min_input_size(spec):
    """The smallest square side the architecture accepts (for tests and errors)."""
    if spec.backbone is not None:
        return spec.backbone.min_size
    size = 1
    while size < 4096:
        h = size
        ok = True
        for b in spec.blocks:
            for j in range(b.convs):
                h = _out(h, b.kernel_size, b.strides if j == 0 else 1, b.padding)
                ok = ok and h >= 1
            if b.pool != "none":
                h = _out(h, b.pool_size, b.pool_strides or b.pool_size, b.pool_padding)
                ok = ok and h >= 1
        if ok:
            return size
        size += 1
    return size


def summary(spec, input_shape=None, num_classes=None):
    """A dict with the numbers `cnnzoo info` shows (JSON-ready)."""
    rows = layer_stats(spec, input_shape, num_classes)
    return {
        "params": sum(r.params for r in rows),
        "trainable_params": None if spec.backbone is not None else sum(r.params - r.non_trainable for r in rows),
        "flops": sum(r.flops for r in rows),
        "layers": [
            {
                "name": r.name,
                "kind": r.kind,
                "output_shape": list(r.output_shape),
                "params": r.params,
                "flops": r.flops,
                "receptive_field": r.receptive_field.to_dict(),
            }
            for r in rows
        ],
    }
