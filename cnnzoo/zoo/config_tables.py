"""The `[[blocks]]`, `[[stages]]`, `[head]`, `[backbone]` and `[train]` tables of a zoo config.

`Block`, `ResidualStage`, `Head`, `Backbone` and `Train` hold every default of an architecture
and of its compile settings (each written here and nowhere else); the values
they may take are the constants below. `cnnzoo.zoo.config` reads a config's
tables with the `parse_*` functions here and exports the dataclasses as its
own; the `[search]` and `[weights]` tables are in `cnnzoo.zoo.config_sections`.
No TensorFlow or Keras here.
"""

import dataclasses
import re
from dataclasses import dataclass, field

from cnnzoo.errors import ConfigError
from cnnzoo.zoo.config_rules import (
    MAX_CONVS,
    MAX_SIZE,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_keys,
    check_str,
    fail,
    where,
)

__all__ = [
    "Block",
    "ResidualStage",
    "Head",
    "Backbone",
    "Train",
    "parse_block",
    "parse_stage",
    "parse_head",
    "parse_backbone",
    "parse_train",
    "ACTIVATIONS",
    "POOLS",
    "RESIDUAL_BLOCKS",
    "SHORTCUTS",
    "PADDINGS",
    "HEAD_POOLING",
    "OPTIMIZERS",
]

ACTIVATIONS = (
    "relu",
    "relu6",
    "leaky_relu",
    "elu",
    "selu",
    "gelu",
    "swish",
    "silu",
    "mish",
    "tanh",
    "sigmoid",
    "softplus",
    "linear",
    "hard_swish",
)
POOLS = ("max", "avg", "none")
PADDINGS = ("same", "valid")
HEAD_POOLING = ("flatten", "avg", "max")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "nadam")
RESIDUAL_BLOCKS = {"basic": 1, "bottleneck": 4}  # block type -> its default expansion (output / inner width)
# "projection": a 1x1 conv + BatchNorm where the shape changes (He et al. 2015, option B; torchvision);
# "zero_pad": no parameters, the input subsampled and its channels padded with zeros (option A, the CIFAR nets)
SHORTCUTS = ("projection", "zero_pad")
MAX_EXPANSION = 64


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
class ResidualStage:
    """A residual stage (`[[stages]]`): `blocks` residual blocks; the first strides and changes the width.

    A `"basic"` block is two `kernel_size` convolutions; a `"bottleneck"` block a 1x1 conv to `filters`,
    a `kernel_size` conv and a 1x1 conv to `filters * expansion` (the stride on the middle conv, as
    torchvision's ResNet v1.5). Each conv is followed by BatchNorm; the activation follows each but the
    last, which is added to the shortcut first. The shortcut is the identity where the shape stays.
    """

    filters: int = 64
    blocks: int = 2
    block: str = "basic"
    strides: int = 1
    kernel_size: int = 3
    expansion: int = 1
    shortcut: str = "projection"
    activation: str = "relu"
    bn_momentum: float = 0.9

    @property
    def out_channels(self):
        return self.filters * self.expansion


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
    min_size: int = 32  # the smallest square input side the application accepts


@dataclass(frozen=True)
class Train:
    """Compile defaults used by `cnnzoo.get(..., compile=True)`."""

    optimizer: str = "adam"
    learning_rate: float = 1e-3


def parse_block(table, i, source):
    """The `Block` of `[[blocks]]` table number `i` (from 0), validated; `filters` may be one int and `convs`."""
    key = f"blocks[{i}]"
    check_keys(table, {f.name for f in dataclasses.fields(Block)} | {"convs"}, key, source)
    d = Block()
    filters = table.get("filters", list(d.filters))
    convs = table.get("convs")
    if isinstance(filters, list):
        if not filters:
            fail(where(source), f"{key}.filters", "must not be empty", filters)
        filters = tuple(check_int(f, f"{key}.filters", source) for f in filters)
        if convs is not None and check_int(convs, f"{key}.convs", source, hi=MAX_CONVS) != len(filters):
            fail(where(source), f"{key}.convs", f"must equal the length of `filters` ({len(filters)})", convs)
    else:
        n = 1 if convs is None else check_int(convs, f"{key}.convs", source, hi=MAX_CONVS)
        filters = (check_int(filters, f"{key}.filters", source),) * n
    return Block(
        filters=filters,
        kernel_size=check_int(table.get("kernel_size", d.kernel_size), f"{key}.kernel_size", source, hi=MAX_SIZE),
        strides=check_int(table.get("strides", d.strides), f"{key}.strides", source, hi=MAX_SIZE),
        padding=check_choice(table.get("padding", d.padding), f"{key}.padding", source, PADDINGS),
        activation=check_choice(table.get("activation", d.activation), f"{key}.activation", source, ACTIVATIONS),
        batch_norm=check_bool(table.get("batch_norm", d.batch_norm), f"{key}.batch_norm", source),
        bn_momentum=check_float(
            table.get("bn_momentum", d.bn_momentum), f"{key}.bn_momentum", source, 0.0, 1.0, hi_open=True
        ),
        pool=check_choice(table.get("pool", d.pool), f"{key}.pool", source, POOLS),
        pool_size=check_int(table.get("pool_size", d.pool_size), f"{key}.pool_size", source, hi=MAX_SIZE),
        pool_strides=check_int(
            table.get("pool_strides", d.pool_strides), f"{key}.pool_strides", source, lo=0, hi=MAX_SIZE
        ),
        pool_padding=check_choice(table.get("pool_padding", d.pool_padding), f"{key}.pool_padding", source, PADDINGS),
        dropout=check_float(table.get("dropout", d.dropout), f"{key}.dropout", source, 0.0, 1.0, hi_open=True),
    )


def parse_stage(table, i, source):
    """The `ResidualStage` of `[[stages]]` table number `i` (from 0), validated; `filters` and `blocks` are required."""
    key = f"stages[{i}]"
    check_keys(table, {f.name for f in dataclasses.fields(ResidualStage)}, key, source)
    for required in ("filters", "blocks"):
        if required not in table:
            raise ConfigError(
                f"`{key}.{required}` is required in a residual stage{where(source)} but missing. "
                f"Received: {key}={table!r}. Add e.g. `{required} = {2 if required == 'blocks' else 64}`."
            )
    d = ResidualStage()
    block = check_choice(table.get("block", d.block), f"{key}.block", source, tuple(RESIDUAL_BLOCKS))
    kernel = check_int(table.get("kernel_size", d.kernel_size), f"{key}.kernel_size", source, hi=MAX_SIZE)
    if kernel % 2 == 0:
        fail(where(source), f"{key}.kernel_size", "must be odd (the padding is centred, as in ResNet)", kernel)
    strides = table.get("strides", d.strides)
    if isinstance(strides, int) and not isinstance(strides, bool) and strides > kernel:
        fail(
            where(source),
            f"{key}.strides",
            f"must be <= `kernel_size` ({kernel}): a larger stride skips pixels the block never sees",
            strides,
            " ResNets use 1 or 2.",
        )
    expansion = table.get("expansion", RESIDUAL_BLOCKS[block])
    if block == "basic" and expansion != 1:
        fail(
            where(source),
            f"{key}.expansion",
            "must be 1 for a basic block (only bottleneck blocks expand their output)",
            expansion,
            ' Use block = "bottleneck" or remove `expansion`.',
        )
    return ResidualStage(
        filters=check_int(table["filters"], f"{key}.filters", source),
        blocks=check_int(table["blocks"], f"{key}.blocks", source, hi=MAX_CONVS),
        block=block,
        strides=check_int(strides, f"{key}.strides", source, hi=MAX_SIZE),
        kernel_size=kernel,
        expansion=check_int(expansion, f"{key}.expansion", source, hi=MAX_EXPANSION),
        shortcut=check_choice(table.get("shortcut", d.shortcut), f"{key}.shortcut", source, SHORTCUTS),
        activation=check_choice(table.get("activation", d.activation), f"{key}.activation", source, ACTIVATIONS),
        bn_momentum=check_float(
            table.get("bn_momentum", d.bn_momentum), f"{key}.bn_momentum", source, 0.0, 1.0, hi_open=True
        ),
    )


def parse_head(table, source):
    """The `Head` of the `[head]` table, validated."""
    check_keys(table, {f.name for f in dataclasses.fields(Head)}, "head", source)
    d = Head()
    dense = table.get("dense", list(d.dense))
    if not isinstance(dense, (list, tuple)):
        fail(where(source), "head.dense", "must be a list of positive integers (one per hidden layer)", dense)
    return Head(
        pooling=check_choice(table.get("pooling", d.pooling), "head.pooling", source, HEAD_POOLING),
        dense=tuple(check_int(u, "head.dense", source) for u in dense),
        dropout=check_float(table.get("dropout", d.dropout), "head.dropout", source, 0.0, 1.0, hi_open=True),
        activation=check_choice(table.get("activation", d.activation), "head.activation", source, ACTIVATIONS),
    )


def parse_backbone(table, source):
    """The `Backbone` of the `[backbone]` table, validated."""
    check_keys(table, {f.name for f in dataclasses.fields(Backbone)}, "backbone", source)
    app = check_str(table.get("application", ""), "backbone.application", source)
    if not re.match(r"^[A-Z][A-Za-z0-9]*$", app):
        fail(where(source), "backbone.application", "must name a keras.applications model, e.g. 'MobileNetV2'", app)
    kwargs = table.get("kwargs", {})
    if not isinstance(kwargs, dict):
        fail(where(source), "backbone.kwargs", "must be a table of keyword arguments", kwargs)
    return Backbone(
        application=app,
        kwargs=dict(kwargs),
        params=check_int(table.get("params", 0), "backbone.params", source, lo=0),
        flops=check_int(table.get("flops", 0), "backbone.flops", source, lo=0),
        channels=check_int(table.get("channels", 0), "backbone.channels", source, lo=0),
        reduction=check_int(table.get("reduction", 32), "backbone.reduction", source, lo=1),
        min_size=check_int(table.get("min_size", 32), "backbone.min_size", source, lo=1),
    )


def parse_train(table, source):
    """The `Train` of the `[train]` table, validated."""
    check_keys(table, {f.name for f in dataclasses.fields(Train)}, "train", source)
    d = Train()
    return Train(
        optimizer=check_choice(table.get("optimizer", d.optimizer), "train.optimizer", source, OPTIMIZERS),
        learning_rate=check_float(
            table.get("learning_rate", d.learning_rate), "train.learning_rate", source, 0.0, 10.0
        ),
    )
