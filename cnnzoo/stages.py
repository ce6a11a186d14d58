"""Fine-tuning stages as data, and what a stage does to a model.

A `Stage` says which part of the network trains, for how many epochs and at
which learning rate. `auto_stages` picks a schedule from the dataset size.
`Anatomy` finds the parts of a zoo model (its backbone units and its
`ClassifierHead`); `apply_stage` sets `trainable` for one stage under the
BatchNorm policy; `replace_head` swaps the classifier for a new class count;
`stage_model` builds the graph a stage trains, where the frozen bottom of the
network runs in inference mode.

Backbone units ("blocks"), the things `Stage(unfreeze=N)` counts from the top:

- a zoo CNN: its `ConvBlock` layers `block1..N` (and any other layer with
  weights between the input and the head);
- a backbone entry (a nested `keras.applications` model): groups of its
  layers, by layer name. A group starts at a layer whose name contains a
  block marker (`block_16`, `block7a`, `block5`, `conv4_block6`, `mixed9`,
  `expanded_conv_3`, `stage_2_block_1`) different from the current one;
  layers without a marker (`Conv_1`, `top_conv`, `out_relu`, activations)
  join the group before them, and the layers before the first marker form
  a `stem` group. MobileNetV2 has 18 units (stem, expanded_conv,
  block_1..block_16), EfficientNetB0 17 (stem, block1a..block7a), ResNet50
  17. A nested model with no marker at all has one unit per layer with
  weights.
"""

import math
import re
from dataclasses import asdict, dataclass

from cnnzoo.config import OPTIMIZERS
from cnnzoo.errors import ConfigError, closest

__all__ = ["Stage", "SCHEDULES", "as_stages", "auto_stages", "Anatomy", "anatomy", "apply_stage",
           "replace_head", "stage_model", "batchnorm_layers"]

SCHEDULES = ("cosine", "constant")
_STAGE_RE = re.compile(r"^(head|all|top(\d+)):(\d+)(?::([0-9.eE+-]+))?$")
_GROUP_PATTERNS = re.compile(
    r"(stage_?\d+_block_?\d+"  # ConvNeXt
    r"|conv\d+_block\d+"  # ResNet, DenseNet
    r"|block_?\d+[a-z]?"  # VGG, Xception, EfficientNet(V2), MobileNetV2
    r"|expanded_conv(?:_\d+)?"  # MobileNetV2's first block, MobileNetV3
    r"|mixed_?\d+)"  # InceptionV3
)


@dataclass(frozen=True)
class Stage:
    """One fine-tuning stage: what trains, how long, how fast.

    Args:
        unfreeze: `0` trains the head only (backbone frozen, running in
            inference mode); an int `N` trains the top `N` backbone units
            and the head; `"all"` trains everything.
        epochs: int >= 1.
        learning_rate: float > 0, the stage's initial learning rate.
        schedule: `"cosine"` (decay to 1% over the stage) or `"constant"`.
        optimizer: one of `"adam"`, `"adamw"`, `"sgd"`, `"rmsprop"`, `"nadam"`.

    Example:

    >>> stages = [Stage(0, epochs=5, learning_rate=1e-3), Stage(2, epochs=3, learning_rate=1e-4)]
    >>> Stage.parse("top2:3:1e-4") == stages[1]
    True
    """

    unfreeze: object = 0
    epochs: int = 5
    learning_rate: float = 1e-3
    schedule: str = "cosine"
    optimizer: str = "adam"

    def __post_init__(self):
        u = self.unfreeze
        if not (u == "all" or (isinstance(u, int) and not isinstance(u, bool) and u >= 0)):
            raise ConfigError(f"`unfreeze` must be 0 (head only), a number of top backbone units, or 'all'. "
                              f"Received: unfreeze={u!r}.")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"`epochs` of a stage must be an integer >= 1. Received: epochs={self.epochs!r}.")
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr <= 10:
            raise ConfigError(f"`learning_rate` of a stage must be a number in (0, 10]. "
                              f"Received: learning_rate={lr!r}.")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"`schedule` must be one of {', '.join(map(repr, SCHEDULES))}."
                              f"{closest(self.schedule, SCHEDULES)} Received: schedule={self.schedule!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"`optimizer` must be one of {', '.join(map(repr, OPTIMIZERS))}."
                              f"{closest(self.optimizer, OPTIMIZERS)} Received: optimizer={self.optimizer!r}.")
        object.__setattr__(self, "learning_rate", float(lr))

    @property
    def name(self):
        """`"head"`, `"topN"` or `"all"`."""
        return "head" if self.unfreeze == 0 else "all" if self.unfreeze == "all" else f"top{self.unfreeze}"

    def to_dict(self):
        return asdict(self)

    def __str__(self):
        return f"{self.name}:{self.epochs}:{self.learning_rate:g}"

    @classmethod
    def parse(cls, text):
        """Reads `"head:5:1e-3"`, `"top2:3:1e-4"`, `"all:2:1e-5"` (learning rate optional)."""
        match = _STAGE_RE.match(str(text).strip())
        if not match:
            raise ConfigError(f"A stage must read `head|topN|all:EPOCHS[:LEARNING_RATE]`, e.g. 'head:5:1e-3' or "
                              f"'top2:3:1e-4'. Received: stage={text!r}.")
        kind, top, epochs, lr = match.groups()
        unfreeze = 0 if kind == "head" else "all" if kind == "all" else int(top)
        try:
            rate = float(lr) if lr else (1e-3 if unfreeze == 0 else 1e-4)
        except ValueError:
            raise ConfigError(f"The learning rate of a stage must be a number. Received: stage={text!r}.") from None
        return cls(unfreeze, int(epochs), rate)


def as_stages(stages):
    """Turns stages given as data into a tuple of `Stage`.

    Args:
        stages: a `Stage`, a dict of `Stage` fields, a string such as
            `"head:5:1e-3,top2:3:1e-4"`, or a list of these.

    Returns:
        A tuple of `Stage`.

    Example:

    >>> as_stages([{"unfreeze": 0, "epochs": 2}, "all:1:1e-5"])
    (Stage(unfreeze=0, epochs=2, ...), Stage(unfreeze='all', epochs=1, learning_rate=1e-05, ...))
    """
    if isinstance(stages, (Stage, dict, str)):
        stages = [stages]
    if isinstance(stages, str) or not hasattr(stages, "__iter__"):
        raise ConfigError(f"`stages` must be 'auto', a Stage, a dict or a list of them. Received: stages={stages!r}.")
    out = []
    for s in stages:
        if isinstance(s, Stage):
            out.append(s)
        elif isinstance(s, dict):
            unknown = set(s) - set(Stage.__dataclass_fields__)
            if unknown:
                raise ConfigError(f"`stages` entries take the keys {', '.join(Stage.__dataclass_fields__)}. "
                                  f"Received: {sorted(unknown)} in {s!r}.")
            out.append(Stage(**s))
        elif isinstance(s, str):
            out.extend(Stage.parse(part) for part in s.split(",") if part.strip())
        else:
            raise ConfigError(f"Each stage must be a Stage, a dict or a 'head:5:1e-3' string. Received: {s!r}.")
    if not out:
        raise ConfigError("`stages` must hold at least one stage. Received: stages=[].")
    return tuple(out)


def auto_stages(num_train, num_units, pretrained=True, epochs=None):
    """The schedule `stages="auto"` picks.

    A pretrained backbone (transfer learning, the Keras guide's recipe):

    | training images | stages                                                  |
    |-----------------|---------------------------------------------------------|
    | < 500           | head 10 epochs at 1e-3                                  |
    | 500 - 4,999     | head 5 at 1e-3, then the top third of the units 5 at 1e-4 |
    | >= 5,000        | head 3 at 1e-3, top third 3 at 1e-4, all 3 at 1e-5      |

    A backbone trained from scratch (`pretrained=False`) has nothing to keep:
    one stage trains everything at 1e-3, 15 epochs below 5,000 images, 10
    below 50,000, else 5.

    Args:
        num_train: int, training images.
        num_units: int, backbone units (see the module docstring).
        pretrained: bool, whether the backbone holds learned weights.
        epochs: optional int replacing every stage's epoch count.

    Returns:
        A tuple of `Stage`.

    Example:

    >>> [str(s) for s in auto_stages(2000, 5)]
    ['head:5:0.001', 'top2:5:0.0001']
    """
    top = max(1, math.ceil(num_units / 3))
    if not pretrained:
        plan = [Stage("all", 15 if num_train < 5000 else 10 if num_train < 50000 else 5, 1e-3)]
    elif num_train < 500 or num_units == 0:
        plan = [Stage(0, 10, 1e-3)]
    elif num_train < 5000:
        plan = [Stage(0, 5, 1e-3), Stage(top, 5, 1e-4)]
    else:
        plan = [Stage(0, 3, 1e-3), Stage(top, 3, 1e-4), Stage("all", 3, 1e-5)]
    if epochs is not None:
        plan = [Stage(s.unfreeze, epochs, s.learning_rate, s.schedule, s.optimizer) for s in plan]
    return tuple(plan)


# ------------------------------------------------------------------ anatomy


@dataclass
class Anatomy:
    """The parts of a zoo model that fine-tuning needs.

    Attributes:
        model: the Functional model.
        head: its `ClassifierHead` (the last layer).
        chain: the layers from the input to the head when the model is a
            single chain (every zoo model is), else None.
        units: list of `(name, [layers])`, bottom to top.
        containers: nested models holding grouped units.
    """

    model: object
    head: object
    chain: list
    units: list
    containers: list

    @property
    def unit_names(self):
        return [name for name, _ in self.units]


def anatomy(model):
    """Finds the head, the layer chain and the backbone units of a zoo model.

    Args:
        model: a Functional `keras.Model` whose last layer is a `ClassifierHead`.

    Returns:
        An `Anatomy`; `unit_names` lists the units bottom to top (see the
        module docstring for how nested backbones are grouped).

    Example:

    >>> anatomy(cnnzoo.get("bird_classifier", input_shape=(64, 64, 3))).unit_names
    ['block1', 'block2', 'block3', 'block4', 'block5']
    """
    import keras

    from cnnzoo.layers import ClassifierHead

    head = model.layers[-1] if getattr(model, "layers", None) else None
    if not isinstance(model, keras.Model) or not isinstance(head, ClassifierHead):
        raise ConfigError(f"`model` must be a zoo model ending in a cnnzoo ClassifierHead (build it with "
                          f"`cnnzoo.get(name)`), so its head can be replaced and its backbone frozen. "
                          f"Received: model={getattr(model, 'name', model)!r} whose last layer is "
                          f"{type(head).__name__}.")
    body = [layer for layer in model.layers[:-1] if not isinstance(layer, keras.layers.InputLayer)]
    chain = body if _is_chain(model, body, head) else None
    units, containers = [], []
    for layer in body:
        if not layer.weights:
            continue
        if isinstance(layer, keras.Model) and chain is not None:
            containers.append(layer)
            units.extend(_groups(layer))
        else:
            units.append((layer.name, [layer]))
    return Anatomy(model, head, chain, units, containers)


def _is_chain(model, body, head):
    """True when input -> body[0] -> ... -> head, each layer fed only by the one before.

    Reads each layer's first call in a graph (Keras's inbound node 0: where the
    layer was first used, i.e. in this model when the model created it).
    """
    try:
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            return False
        previous = model.inputs[0]
        for layer in [*body, head]:
            node = layer._inbound_nodes[0]
            if len(node.input_tensors) != 1 or node.input_tensors[0] is not previous or len(node.output_tensors) != 1:
                return False
            previous = node.output_tensors[0]
        return previous is model.outputs[0]
    except (AttributeError, IndexError):  # a Keras without these internals: train the model as it is
        return False


def _groups(nested):
    """Groups a nested model's weighted layers into units by layer name (module docstring)."""
    groups, key = [], None
    for layer in nested.layers:
        match = _GROUP_PATTERNS.search(layer.name)
        if match and match.group(1) != key:
            key = match.group(1)
            groups.append((key, []))
        elif not groups:
            groups.append(("stem", []))
        groups[-1][1].append(layer)
    groups = [(name, layers) for name, layers in groups if any(lay.weights for lay in layers)]
    if len(groups) < 2:
        groups = [(layer.name, [layer]) for layer in nested.layers if layer.weights]
    return groups


def batchnorm_layers(layer):
    """Every BatchNormalization layer inside `layer`, nested models and blocks included.

    Args:
        layer: a Keras layer or model.

    Returns:
        A list of `keras.layers.BatchNormalization`.

    Example:

    >>> len(batchnorm_layers(cnnzoo.get("bird_classifier", input_shape=(64, 64, 3))))
    5
    """
    import keras

    flat = layer._flatten_layers(include_self=True, recursive=True)
    return [sub for sub in flat if isinstance(sub, keras.layers.BatchNormalization)]


def apply_stage(parts, stage, freeze_batchnorm=True):
    """Sets `trainable` for one stage under the BatchNorm policy.

    The head always trains; the top `stage.unfreeze` units train; the rest is
    frozen. With `freeze_batchnorm`, every BatchNormalization layer below the
    head stays `trainable=False` in every stage, which in Keras 3 means it
    runs in inference mode (moving statistics used and never updated) -- the
    Keras transfer-learning advice for a pretrained backbone. Recompile after.

    Args:
        parts: the model's `Anatomy`.
        stage: a `Stage`.
        freeze_batchnorm: bool.

    Returns:
        The names of the units that train (bottom to top).

    Example:

    >>> apply_stage(anatomy(model), Stage(2))
    ['block4', 'block5']
    """
    n = len(parts.units)
    k = n if stage.unfreeze == "all" else min(stage.unfreeze, n)
    for container in parts.containers:  # setting a container's flag resets its children: do it first
        _set_trainable(container, k > 0)
    for i, (_, layers) in enumerate(parts.units):
        for layer in layers:
            _set_trainable(layer, i >= n - k)
    if freeze_batchnorm:
        for layer in (parts.chain or parts.model.layers[:-1]):
            for bn in batchnorm_layers(layer):
                bn.trainable = False
    parts.head.trainable = True
    return [name for name, _ in parts.units[n - k:]]


def _set_trainable(layer, value):
    """Sets `trainable` on a layer and every sub-layer.

    Keras (TF backend) skips an assignment of the value an attribute already
    holds, so `block.trainable = True` on a trainable block would leave a
    sub-layer frozen earlier (a BatchNormalization) frozen. Flipping first
    makes the setter run, and it propagates to all sub-layers.
    """
    layer.trainable = not value
    layer.trainable = value


def replace_head(model, num_classes, class_names=None):
    """Gives `model` a new, randomly initialised head when the class count differs.

    The new `ClassifierHead` has the old one's configuration (pooling, hidden
    layers, dropout) and is called on the old head's input, so the returned
    Functional model shares every backbone layer (and weight) with `model`.
    With the same class count the head is kept and only its class names are
    updated.

    Args:
        model: a zoo model ending in `ClassifierHead`.
        num_classes: int.
        class_names: optional list of `num_classes` labels.

    Returns:
        `(model, replaced)`: the model to train and whether the head is new.

    Example:

    >>> birds, replaced = replace_head(cnnzoo.get("bird_classifier"), 3, ["heron", "owl", "robin"])
    >>> birds.output_shape, replaced
    ((None, 3), True)
    """
    import keras

    from cnnzoo.layers import ClassifierHead

    head = anatomy(model).head
    names = list(class_names) if class_names else None
    if head.num_classes == num_classes:
        if names:
            head.class_names = names
        return model, False
    new_head = ClassifierHead(num_classes, dense=head.dense, dropout=head.dropout, activation=head.activation,
                              pooling=head.pooling, class_names=names, name=head.name)
    outputs = new_head(head.input)
    return keras.Model(model.inputs, outputs, name=model.name), True


def stage_model(parts):
    """The model a stage trains: the same layers, the frozen bottom in inference mode.

    Keras 3 overrides a `training=False` given when a layer was called in a
    Functional graph with the `training=True` of `fit`, so Dropout in a frozen
    block would still fire. Here every layer of the frozen prefix of the chain
    is wrapped in `InferenceMode`, which always calls it with
    `training=False`. Models that are not a single chain train as they are.

    Args:
        parts: the model's `Anatomy`, after `apply_stage`.

    Returns:
        A Functional `keras.Model` sharing every layer with `parts.model`.

    Example:

    >>> [layer.name for layer in stage_model(parts).layers][:3]
    ['image', 'frozen_preprocess', 'frozen_block1']
    """
    import keras

    if parts.chain is None:
        return parts.model
    first = parts.model.inputs[0]
    inputs = keras.Input(shape=tuple(first.shape[1:]), dtype=first.dtype, name="image")
    x, frozen = inputs, True
    for layer in parts.chain:
        frozen = frozen and not layer.trainable_weights
        x = _inference_mode(layer)(x) if frozen else layer(x)
    return keras.Model(inputs, parts.head(x), name=parts.model.name)


_WRAPPER = None


def _inference_mode(layer):
    global _WRAPPER
    if _WRAPPER is None:
        import keras

        class InferenceMode(keras.layers.Layer):
            """Calls a frozen layer with `training=False`, whatever `fit` passes."""

            def __init__(self, layer, **kwargs):
                super().__init__(name=f"frozen_{layer.name}", **kwargs)
                self.layer = layer

            def call(self, x):
                return self.layer(x, training=False)

            def compute_output_shape(self, input_shape):
                return self.layer.compute_output_shape(input_shape)

        _WRAPPER = InferenceMode
    return _WRAPPER(layer)
