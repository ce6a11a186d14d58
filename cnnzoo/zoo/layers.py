"""Custom Keras layers of the zoo, serializable under the `cnnzoo>` namespace.

A model made of these layers saves to `.keras` and loads again anywhere cnnzoo
is installed (`cnnzoo.load(path)`), safe mode included: no Lambda layers.
"""

import keras
from keras import layers, ops

from cnnzoo.zoo.config_tables import Block

__all__ = [
    "Preprocess",
    "ConvBlock",
    "ClassifierHead",
    "ZeroPadChannels",
    "class_names_of",
    "pretrained_of",
    "expose_class_names",
]

_CAFFE_MEAN = (103.939, 116.779, 123.68)  # BGR
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package="cnnzoo")
class Preprocess(layers.Layer):
    """Turns raw 0-255 pixels into what the network expects, inside the model.

    Args:
        mode: one of `"none"`, `"rescale_0_1"` (x / 255), `"rescale_-1_1"`
            (x / 127.5 - 1), `"caffe"` (RGB to BGR, ImageNet mean subtracted,
            as keras.applications VGG) or `"torch"` (x / 255, ImageNet mean and
            standard deviation).

    Example:

    >>> Preprocess("rescale_0_1")(np.full((1, 2, 2, 3), 255.0))  # all ones
    """

    MODES = ("none", "rescale_0_1", "rescale_-1_1", "caffe", "torch")

    def __init__(self, mode="rescale_0_1", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"`mode` must be one of {self.MODES}. Received: mode={mode!r}.")
        self.mode = mode

    def build(self, input_shape):
        if self.mode in ("caffe", "torch") and input_shape[-1] != 3:
            raise ValueError(
                f"`mode={self.mode!r}` needs 3-channel RGB input. "
                f"Received: input_shape={tuple(input_shape)}. Use 'rescale_0_1' instead."
            )

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        if self.mode == "rescale_0_1":
            return x / 255.0
        if self.mode == "rescale_-1_1":
            return x / 127.5 - 1.0
        if self.mode == "caffe":
            return ops.flip(x, axis=-1) - ops.convert_to_tensor(_CAFFE_MEAN, dtype=self.compute_dtype)
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_TORCH_MEAN, dtype=self.compute_dtype)
            std = ops.convert_to_tensor(_TORCH_STD, dtype=self.compute_dtype)
            return (x / 255.0 - mean) / std
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


class _Steps(layers.Layer):
    """A layer that runs its sub-layers `self.steps` in order (set in `__init__`)."""

    def build(self, input_shape):
        shape = tuple(input_shape)
        for step in self.steps:
            step.build(shape)
            shape = step.compute_output_shape(shape)

    def call(self, x, training=None):
        for step in self.steps:
            if isinstance(step, (layers.BatchNormalization, layers.Dropout)):
                x = step(x, training=training)
            else:
                x = step(x)
        return x

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for step in self.steps:
            shape = step.compute_output_shape(shape)
        return shape


@keras.saving.register_keras_serializable(package="cnnzoo")
class ConvBlock(_Steps):
    """`len(filters)` convolutions (each optionally batch-normalised), then pooling.

    Sub-layers are named like keras.applications (`block1_conv1`, `block1_pool`),
    so weights line up layer for layer with the reference models.

    Args:
        filters: int or list of ints, one per convolution.
        kernel_size: int, square kernel side.
        strides: int, stride of the first convolution.
        padding: `"same"` or `"valid"`.
        activation: activation name.
        batch_norm: bool; conv (no bias) -> BatchNormalization -> activation.
        bn_momentum: float, BatchNormalization momentum; 0.9 (not Keras' 0.99) so
            that the moving statistics are usable after a few hundred steps.
        pool: `"max"`, `"avg"` or `"none"`.
        pool_size: int.
        pool_strides: int; 0 means equal to `pool_size`.
        pool_padding: `"valid"` or `"same"`.
        dropout: float, dropout rate after the pooling (0 for none).

    Example:

    >>> block = ConvBlock([64, 64], name="block1")
    >>> block(np.zeros((1, 32, 32, 3))).shape
    (1, 16, 16, 64)
    """

    def __init__(
        self,
        filters,
        kernel_size=3,
        strides=1,
        padding="same",
        activation="relu",
        batch_norm=False,
        bn_momentum=Block.bn_momentum,
        pool="max",
        pool_size=2,
        pool_strides=0,
        pool_padding="valid",
        dropout=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = [int(filters)] if isinstance(filters, int) else [int(f) for f in filters]
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.padding = padding
        self.activation = activation
        self.batch_norm = bool(batch_norm)
        self.bn_momentum = float(bn_momentum)
        self.pool = pool
        self.pool_size = int(pool_size)
        self.pool_strides = int(pool_strides)
        self.pool_padding = pool_padding
        self.dropout = float(dropout)
        self.steps = []
        self._add_steps()

    def _add_steps(self):
        """The sub-layers, in order: each convolution (with BatchNorm and activation), pooling, dropout."""
        prefix, dt = self.name, self.dtype_policy  # sub-layers share this layer's precision policy
        padding, activation, pool = self.padding, self.activation, self.pool
        for j, f in enumerate(self.filters, 1):
            self.steps.append(
                layers.Conv2D(
                    f,
                    self.kernel_size,
                    strides=self.strides if j == 1 else 1,
                    padding=padding,
                    activation=None if self.batch_norm else activation,
                    use_bias=not self.batch_norm,
                    name=f"{prefix}_conv{j}",
                    dtype=dt,
                )
            )
            if self.batch_norm:
                self.steps.append(
                    layers.BatchNormalization(momentum=self.bn_momentum, name=f"{prefix}_bn{j}", dtype=dt)
                )
                self.steps.append(layers.Activation(activation, name=f"{prefix}_act{j}", dtype=dt))
        if pool != "none":
            cls = layers.MaxPooling2D if pool == "max" else layers.AveragePooling2D
            self.steps.append(
                cls(
                    self.pool_size,
                    strides=self.pool_strides or self.pool_size,
                    padding=self.pool_padding,
                    name=f"{prefix}_pool",
                    dtype=dt,
                )
            )
        if self.dropout:
            self.steps.append(layers.Dropout(self.dropout, name=f"{prefix}_dropout", dtype=dt))

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "activation": self.activation,
            "batch_norm": self.batch_norm,
            "bn_momentum": self.bn_momentum,
            "pool": self.pool,
            "pool_size": self.pool_size,
            "pool_strides": self.pool_strides,
            "pool_padding": self.pool_padding,
            "dropout": self.dropout,
        }


@keras.saving.register_keras_serializable(package="cnnzoo")
class ClassifierHead(_Steps):
    """Flatten or global pooling, hidden dense layers with dropout, softmax.

    Carries the class names in its config, so a saved model knows its labels.
    Its sub-layers take its precision policy, except the softmax (`predictions`),
    which stays float32 under a mixed policy.
    Dropout follows each hidden dense layer (or the flatten, when there is
    none), as in VGG and the Keras MNIST example.

    Args:
        num_classes: int, size of the softmax; 0 for none: the head's output is then the pooled
            features (embeddings, `cnnzoo.get(name, num_classes=0)`), float32 under a mixed policy.
        dense: list of ints, units of the hidden layers (`fc1`, `fc2`, ...).
        dropout: float, dropout rate (0 for none).
        activation: activation of the hidden layers.
        pooling: `"flatten"`, `"avg"` or `"max"`.
        class_names: optional list of `num_classes` label strings.
        pretrained: whether the model this head ends holds learned weights:
            False when `cnnzoo.get` built it without weights, True when it
            loaded weights or `cnnzoo.finetune` trained it, None when unknown
            (models saved before cnnzoo recorded it). Saved with the model, so
            `cnnzoo.finetune` knows whether to fine-tune or train from scratch.

    Example:

    >>> head = ClassifierHead(3, dense=[16], class_names=["a", "b", "c"])
    >>> head(np.zeros((2, 4, 4, 8))).shape
    (2, 3)
    """

    def __init__(
        self,
        num_classes,
        dense=(),
        dropout=0.0,
        activation="relu",
        pooling="flatten",
        class_names=None,
        pretrained=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.dense = [int(u) for u in dense]
        self.dropout = float(dropout)
        self.activation = activation
        self.pooling = pooling
        if class_names is not None and len(class_names) != self.num_classes:
            raise ValueError(
                f"`class_names` must have `num_classes` ({self.num_classes}) entries. "
                f"Received: class_names={list(class_names)!r}."
            )
        self.class_names = list(class_names) if class_names else None
        self.pretrained = None if pretrained is None else bool(pretrained)
        pool = {"flatten": layers.Flatten, "avg": layers.GlobalAveragePooling2D, "max": layers.GlobalMaxPooling2D}[
            pooling
        ]
        dt = self.dtype_policy
        # the softmax (or, with no classes, the pooled features) stays float32 under mixed precision:
        # probabilities keep their precision, losses do not overflow
        low = dt.compute_dtype in ("float16", "bfloat16")
        pool_dt = "float32" if low and not self.num_classes and not self.dense else dt
        self.steps = [pool(name="flatten" if pooling == "flatten" else f"global_{pooling}_pool", dtype=pool_dt)]
        for i, units in enumerate(self.dense, 1):
            self.steps.append(layers.Dense(units, activation=activation, name=f"fc{i}", dtype=dt))
            if self.dropout:
                self.steps.append(layers.Dropout(self.dropout, name=f"dropout{i}", dtype=dt))
        if self.dropout and not self.dense:
            self.steps.append(layers.Dropout(self.dropout, name="dropout", dtype=dt))
        if self.num_classes:
            self.steps.append(
                layers.Dense(self.num_classes, activation="softmax", name="predictions", dtype="float32" if low else dt)
            )

    def compute_output_spec(self, x, training=None):
        return keras.KerasTensor(self.compute_output_shape(x.shape), dtype=self.steps[-1].compute_dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "dense": self.dense,
            "dropout": self.dropout,
            "activation": self.activation,
            "pooling": self.pooling,
            "class_names": self.class_names,
            "pretrained": self.pretrained,
        }


@keras.saving.register_keras_serializable(package="cnnzoo")
class ZeroPadChannels(layers.Layer):
    """Pads the channel axis with zeros up to `channels`: the parameter-free shortcut of a
    residual block that widens (He et al. 2015, option A; `shortcut = "zero_pad"` in a zoo config).

    Args:
        channels: int, the number of output channels (at least the input's).

    Example:

    >>> ZeroPadChannels(32)(np.ones((1, 8, 8, 16))).shape
    (1, 8, 8, 32)
    """

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)

    def build(self, input_shape):
        if input_shape[-1] > self.channels:
            raise ValueError(
                f"`channels` must be at least the input's ({input_shape[-1]}): zero padding cannot drop "
                f"channels. Received: channels={self.channels}."
            )

    def call(self, x):
        extra = self.channels - x.shape[-1]
        return ops.pad(x, [[0, 0]] * (len(x.shape) - 1) + [[0, extra]]) if extra else x

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.channels)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


def pretrained_of(model):
    """Whether a zoo model holds learned weights: True, False, or None when it does not say.

    Reads the flag its `ClassifierHead` carries (see `ClassifierHead`).

    Example:

    >>> pretrained_of(cnnzoo.get("digits_cnn")), pretrained_of(cnnzoo.get("digits_cnn", weights="digits"))
    (False, True)
    """
    heads = [layer for layer in model.layers if isinstance(layer, ClassifierHead)]
    return heads[-1].pretrained if heads else None


def class_names_of(model):
    """Returns the label strings of a zoo model (its last `ClassifierHead`).

    Models without a `ClassifierHead` get `"0"`, `"1"`, ... for each output.

    Example:

    >>> class_names_of(cnnzoo.get("digits_cnn"))[:3]
    ['0', '1', '2']
    """
    heads = [layer for layer in model.layers if isinstance(layer, ClassifierHead)]
    if heads and heads[-1].class_names:
        return list(heads[-1].class_names)
    return [str(i) for i in range(int(model.outputs[0].shape[-1]))]


def expose_class_names(model):
    """Sets `model.class_names` to its `ClassifierHead`'s label strings (None when it has none); returns `model`.

    The names live in the head layer (saved with it); the attribute is a
    plain copy that `cnnzoo.get`, `cnnzoo.load` and fine-tuning set on the
    models they return. A model without a `ClassifierHead` is left alone; a
    model read with plain `keras.saving.load_model` has no attribute
    (`class_names_of` reads any zoo model).

    Example:

    >>> cnnzoo.get("tiny_vgg", input_shape=(32, 32, 3), class_names=["owl", "wren"]).class_names
    ['owl', 'wren']
    """
    heads = [layer for layer in model.layers if isinstance(layer, ClassifierHead)]
    if heads:
        names = heads[-1].class_names
        # a plain list, set past Keras's attribute tracking (it is data, not a layer or a variable)
        object.__setattr__(model, "class_names", list(names) if names else None)
    return model
