"""What a fine-tuning stage does to a zoo model.

`anatomy` finds the parts of a model (its backbone units and its
`ClassifierHead`); `apply_stage` sets `trainable` for one `Stage` under the
BatchNorm policy; `replace_head` swaps the classifier for a new class count;
`stage_model` builds the graph a stage trains, where the frozen bottom of the
network runs in inference mode.
Backbone units ("blocks"), the things `Stage(unfreeze=N)` counts from the top:

- a zoo CNN: its `ConvBlock` layers `block1..N` (and any other layer with
  weights between the input and the head);
- a backbone entry (a nested `keras.applications` model): groups of its
  layers, by layer name. A group starts at a layer whose name contains a
  block marker (`block_16`, `block7a`, `block5`, `conv4_block6`, `mixed9`,
  `expanded_conv_3`, `stage_2_block_1`, keras-hub's `stack0_block1`) different from the current one;
  layers without a marker (`Conv_1`, `top_conv`, `out_relu`, activations)
  join the group before them, and the layers before the first marker form
  a `stem` group. MobileNetV2 has 18 units (stem, expanded_conv,
  block_1..block_16), EfficientNetB0 17 (stem, block1a..block7a), ResNet50
  17. A nested model with no marker at all has one unit per layer with
  weights.
"""

import re
from dataclasses import dataclass

from cnnzoo import _compat
from cnnzoo.errors import ConfigError

__all__ = ["Anatomy", "anatomy", "apply_stage", "replace_head", "stage_model", "batchnorm_layers"]

_GROUP_PATTERNS = re.compile(
    r"(stage_?\d+_block_?\d+"  # ConvNeXt
    r"|conv\d+_block\d+"  # ResNet, DenseNet
    r"|stack\d+_block\d+"  # keras-hub's ResNet (`stack0_block0_1_conv`)
    r"|block_?\d+[a-z]?"  # VGG, Xception, EfficientNet(V2), MobileNetV2
    r"|expanded_conv(?:_\d+)?"  # MobileNetV2's first block, MobileNetV3
    r"|mixed_?\d+)"  # InceptionV3
)


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

    from cnnzoo.zoo.layers import ClassifierHead

    head = model.layers[-1] if getattr(model, "layers", None) else None
    if not isinstance(model, keras.Model) or not isinstance(head, ClassifierHead):
        raise ConfigError(
            f"`model` must be a zoo model ending in a cnnzoo ClassifierHead (build it with "
            f"`cnnzoo.get(name)`), so its head can be replaced and its backbone frozen. "
            f"Received: model={getattr(model, 'name', model)!r} whose last layer is "
            f"{type(head).__name__}."
        )
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

    Reads each layer's first call in a graph (`_compat.first_call`: where the
    layer was first used, i.e. in this model when the model created it).
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return False
    previous = model.inputs[0]
    for layer in [*body, head]:
        inputs, outputs = _compat.first_call(layer)
        if len(inputs) != 1 or inputs[0] is not previous or len(outputs) != 1:
            return False
        previous = outputs[0]
    return previous is model.outputs[0]


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

    return [sub for sub in _compat.flatten_layers(layer) if isinstance(sub, keras.layers.BatchNormalization)]


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
        for layer in parts.chain or parts.model.layers[:-1]:
            for bn in batchnorm_layers(layer):
                bn.trainable = False
    parts.head.trainable = True
    return [name for name, _ in parts.units[n - k :]]


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
    Functional model shares every backbone layer (and weight) with `model`
    (`cnnzoo.zoo.heads.with_new_head`, what `cnnzoo.reset_classifier` does too).
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
    from cnnzoo.zoo.heads import with_new_head  # imports Keras: not at the top of this module
    from cnnzoo.zoo.layers import expose_class_names

    head = anatomy(model).head
    names = list(class_names) if class_names else None
    if head.num_classes == num_classes:
        if names:
            head.class_names = names
        return expose_class_names(model), False
    return with_new_head(model, num_classes, names), True  # with its `class_names`


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
