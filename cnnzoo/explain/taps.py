"""Reading a model's inner feature maps, sub-layers and nested backbones included.

A zoo model is a chain: `preprocess`, then `ConvBlock`s (`block1`, ...) or a
`keras.applications` backbone nested as the layer `backbone`, then `head`. The
Keras graph only knows the top-level layers, so a `keras.Model(inputs,
layer.output)` cannot reach `block1_conv1` inside a `ConvBlock`. `run` executes
the chain eagerly instead, step by step through each block's sub-layers (their
public `steps`) and through a nested model with a sub-model of its own graph,
keeping the tensors asked for. A model that is not a chain is read through its
graph: its top-level layers only.

Everything `run` returns is differentiable (Grad-CAM, activation maximisation;
`cnnzoo.backend.gradients`): with respect to the input, under a TensorFlow
`GradientTape` or PyTorch autograd; with respect to a captured map as a
function argument (JAX) through `offsets`, which adds a (zero) tensor to that
layer's output before the layers after it read it. Inside a graph (a nested
backbone, a model that is not a chain) a copy of the graph, sharing its layers,
adds it.
"""

import threading
import weakref
from dataclasses import dataclass

import numpy as np

from cnnzoo import _compat
from cnnzoo.errors import ConfigError, closest

__all__ = ["Tap", "taps", "run", "input_size", "default_gradcam_layer", "first_conv"]


@dataclass(frozen=True)
class Tap:
    """One layer whose output is a feature map `[batch, height, width, channels]`.

    Attributes:
        name: the layer's name (`block1_conv1`, `Conv1`, `out_relu`).
        kind: `"conv"`, `"pool"` or `"other"` (BatchNormalization, activations, ...).
        shape: the output shape without the batch axis, `(height, width, channels)`.
        parent: the name of the block or nested model it sits in, or None (top level).
        layer: the Keras layer.
    """

    name: str
    kind: str
    shape: tuple
    parent: str
    layer: object


def _kind(layer):
    import keras

    convs = (
        keras.layers.Conv2D,
        keras.layers.DepthwiseConv2D,
        keras.layers.SeparableConv2D,
        keras.layers.Conv2DTranspose,
    )
    pools = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
    return "conv" if isinstance(layer, convs) else "pool" if isinstance(layer, pools) else "other"


def _is_elementwise(layer):
    """Position by position on a map of the same size; a residual `Add` too, so that Grad-CAM of a
    ResNet reads a block's output (`stage4_block2_out`, `conv5_block3_out`), shortcut included."""
    import keras

    return isinstance(
        layer,
        (
            keras.layers.Add,
            keras.layers.BatchNormalization,
            keras.layers.Activation,
            keras.layers.ReLU,
            keras.layers.LeakyReLU,
            keras.layers.ELU,
            keras.layers.PReLU,
        ),
    )


class _Plan:
    """How to run a model step by step: `entries` is a list of (layer, how), how in plain/steps/nested."""

    def __init__(self, model):
        import keras

        from cnnzoo.zoo.layers import ClassifierHead, ConvBlock

        self.chain = _chain(model)
        self.entries, self.taps = [], []
        layers = self.chain if self.chain is not None else [layer for layer in model.layers if not _is_input(layer)]
        for layer in layers:
            if self.chain is not None and isinstance(layer, (ConvBlock, ClassifierHead)):
                self.entries.append((layer, "steps"))
                shape = tuple(layer.input.shape)
                for step in layer.steps:
                    shape = tuple(step.compute_output_shape(shape))
                    self._add(step, shape, layer.name)
            elif self.chain is not None and isinstance(layer, keras.Model):
                self.entries.append((layer, "nested"))
                for inner in layer.layers:
                    if not _is_input(inner):
                        self._add(inner, tuple(inner.output.shape), layer.name)
                self._add(layer, tuple(layer.outputs[0].shape), None)
            else:
                self.entries.append((layer, "plain"))
                self._add(layer, tuple(layer.output.shape), None)
        self.by_name = {}
        for tap in self.taps:
            self.by_name.setdefault(tap.name, tap)
        self.submodels = {}

    def _add(self, layer, shape, parent):
        if len(shape) == 4:
            self.taps.append(Tap(layer.name, _kind(layer), tuple(shape[1:]), parent, layer))


def _is_input(layer):
    import keras

    return isinstance(layer, keras.layers.InputLayer)


def _chain(model):
    """The model's layers in order when each one feeds the next (a zoo model), else None."""
    import keras

    layers = [layer for layer in model.layers if not _is_input(layer)]
    if isinstance(model, keras.Sequential):
        return layers
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return None
    previous = model.inputs[0]
    for layer in layers:
        try:
            inputs, outputs = _compat.first_call(layer)
        except (AttributeError, IndexError):
            return None
        if len(inputs) != 1 or inputs[0] is not previous or len(outputs) != 1:
            return None
        previous = outputs[0]
    return layers if previous is model.outputs[0] else None


_PLANS = weakref.WeakKeyDictionary()


def _plan(model):
    plan = _PLANS.get(model)
    if plan is None:
        plan = _PLANS[model] = _Plan(model)
    return plan


def taps(model):
    """Every feature-map layer of `model`, in the order the forward pass reaches them.

    Args:
        model: a `keras.Model` (a zoo model: `ConvBlock` sub-layers and the
            layers of a nested `backbone` are included).

    Returns:
        A list of `Tap`.

    Example:

    >>> [t.name for t in taps(cnnzoo.get("tiny_vgg")) if t.kind != "other"][:3]
    ['block1_conv1', 'block1_conv2', 'block1_pool']
    """
    return list(_plan(model).taps)


def find(model, name, key="layers"):
    """The `Tap` named `name`, or a `ConfigError` naming `key` and the layers there are."""
    plan = _plan(model)
    tap = plan.by_name.get(name) if isinstance(name, str) else None
    if tap is None:
        names = list(plan.by_name)
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise ConfigError(
            f"`{key}` must name layers of `{model.name}` whose output is a feature map "
            f"[batch, height, width, channels] ({shown}).{closest(name, names)} "
            f"Received: {key}={name!r}."
        )
    return tap


def first_conv(model):
    """The first convolution `Tap` of `model`, or a `ConfigError` when it has none."""
    for tap in _plan(model).taps:
        if tap.kind == "conv":
            return tap
    raise ConfigError(
        f"`model` must have a 2-D convolution layer. Received: model={model.name!r} "
        f"(no Conv2D/DepthwiseConv2D/SeparableConv2D inside)."
    )


def default_gradcam_layer(model):
    """The last convolution's feature map, after its BatchNormalization/activation (and residual add) when those
    follow it."""
    found = _plan(model).taps
    last = None
    for i, tap in enumerate(found):
        if tap.kind == "conv":
            last = i
    if last is None:
        first_conv(model)  # raises
    j = last
    while (
        j + 1 < len(found)
        and found[j + 1].parent == found[last].parent
        and found[j + 1].shape[:2] == found[last].shape[:2]
        and _is_elementwise(found[j + 1].layer)
    ):
        j += 1
    return found[j]


def input_size(model):
    """`((height, width), channels)` of a model taking fixed-size images, else a `ConfigError`."""
    shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else ()
    if len(shape) != 4 or shape[3] not in (1, 3) or None in shape[1:]:
        raise ConfigError(
            f"`model` must take fixed-size images [batch, height, width, 1 or 3]. Received: model input shape {shape}."
        )
    return (int(shape[1]), int(shape[2])), int(shape[3])


def run(model, x, capture, stop=False, logits=False, offsets=None):
    """Runs `model` on `x` eagerly (inference mode), keeping the outputs of the layers in `capture`.

    Args:
        model: a `keras.Model`.
        x: a float32 tensor or array, the model's input (0-255 pixels for a zoo model).
        capture: layer names (from `taps`).
        stop: stop as soon as every captured layer has run (the output is then None).
        logits: when the model ends in a softmax (a `Dense` with a softmax
            activation, or a softmax `Activation`), return the scores before it.
        offsets: optional dict name -> tensor, for names in `capture`: added to
            that layer's output (cast to its dtype) before the captured value
            is kept and the next layer reads it.

    Returns:
        `(captured, output)`: a dict name -> tensor, and the model's output.

    Example:

    >>> maps, probs = run(model, batch, ["block1_conv1"])  # doctest: +SKIP
    """
    plan = _plan(model)
    wanted = {name: find(model, name, "layers") for name in capture}
    offsets = dict(offsets or {})
    captured = {}
    if plan.chain is None:  # read through the graph: top-level layers only
        names = list(wanted)
        nested = [n for n, t in wanted.items() if t.parent is not None]
        if nested:
            raise ConfigError(
                f"`layers` must be top-level layers for `{model.name}`, which is not a chain of "
                f"layers (its nested layers cannot be reached). Received: layers={nested!r}."
            )
        outs = _call_submodel(plan, model, tuple(names), not stop, offsets, x)
        captured = dict(zip(names, outs))
        return captured, (None if stop else outs[-1])
    by_parent = {}
    for name, tap in wanted.items():
        by_parent.setdefault(tap.parent if tap.parent is not None else tap.name, []).append(name)
    last = plan.entries[-1][0] if plan.entries else None
    for layer, how in plan.entries:
        if how == "steps":
            for step in layer.steps:
                pre = _pre_softmax(step, x) if logits and layer is last and step is layer.steps[-1] else None
                x = pre if pre is not None else step(x, training=False)
                if step.name in wanted and wanted[step.name].layer is step:
                    x = captured[step.name] = _shifted(x, offsets.get(step.name))
                if stop and len(captured) == len(wanted):
                    return captured, None
        elif how == "nested" and layer.name in by_parent and any(wanted[n].parent for n in by_parent[layer.name]):
            inner = tuple(n for n in by_parent[layer.name] if wanted[n].parent == layer.name)
            outs = _call_submodel(plan, layer, inner, True, offsets, x)
            captured.update(zip(inner, outs[:-1]))
            x = outs[-1]
        else:
            pre = _pre_softmax(layer, x) if logits and layer is last else None
            x = pre if pre is not None else layer(x, training=False)
        if layer.name in wanted and wanted[layer.name].layer is layer:
            x = captured[layer.name] = _shifted(x, offsets.get(layer.name))
        if stop and len(captured) == len(wanted):
            return captured, None
    return captured, x


def _shifted(x, offset):
    from keras import ops

    return x if offset is None else x + ops.cast(offset, x.dtype)


def _pre_softmax(layer, x):
    """The scores `layer` turns into probabilities, when it ends in a softmax; else None."""
    import keras
    from keras import ops

    softmax = keras.activations.softmax
    if isinstance(layer, keras.layers.Activation) and layer.activation is softmax:
        return x
    if isinstance(layer, keras.layers.Dense) and layer.activation is softmax:
        y = ops.matmul(ops.cast(x, layer.kernel.dtype), layer.kernel)
        return y + layer.bias if layer.use_bias else y
    return None


def _call_submodel(plan, model, names, with_output, offsets, x):
    """The outputs of `names` (then the model's own output, `with_output`), offsets added inside the graph."""
    shifted = tuple(n for n in names if n in offsets)
    submodel, slots = _submodel(plan, model, names, with_output, shifted)
    for n in shifted:
        slots[n].value = offsets[n]
    try:
        outs = submodel(x, training=False)
    finally:
        for slot in slots.values():
            slot.value = None  # no tensor (nor JAX tracer) outlives the call
    return list(outs) if isinstance(outs, (list, tuple)) else [outs]


def _submodel(plan, model, names, with_output, shifted=()):
    """`(keras.Model, slots)`: `model`'s graph up to `names`; with `shifted`, a copy that adds `slots[name].value`."""
    import keras

    key = (model.name, names, with_output, shifted)
    if key not in plan.submodels:
        if shifted:
            plan.submodels[key] = _shifting_submodel(model, names, with_output, shifted)
        else:
            outputs = [model.get_layer(n).output for n in names] + (list(model.outputs) if with_output else [])
            inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs  # called on one tensor
            plan.submodels[key] = keras.Model(inputs, outputs), {}
    return plan.submodels[key]


class _Slot(threading.local):
    """What a `_shift` layer adds while a call runs in this thread: a tensor, or None (nothing)."""

    value = None


def _shifting_submodel(model, names, with_output, shifted):
    """A copy of `model`'s graph, sharing its layers, where each layer in `shifted` is followed by an added slot."""
    import keras

    slots = {n: _Slot() for n in shifted}
    reached = {}

    def call(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        if layer.name in slots:
            out = _shift(slots[layer.name])(out)
        reached.setdefault(layer.name, out)  # a shared layer: its first call, as `get_layer(name).output`
        return out

    copy = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)
    outputs = [reached[n] for n in names] + (list(copy.outputs) if with_output else [])
    return keras.Model(copy.inputs[0] if len(copy.inputs) == 1 else copy.inputs, outputs), slots


def _shift(slot):
    """A weightless layer adding `slot.value` (cast to its input's dtype) when one is set."""
    import keras

    class Shift(keras.layers.Layer):
        def call(self, x):
            return _shifted(x, slot.value)

    return Shift()


def to_numpy(tensor):
    """A tensor of any Keras backend (gradient-tracking ones too) as a NumPy array."""
    from keras import ops

    return np.asarray(ops.convert_to_numpy(tensor))
