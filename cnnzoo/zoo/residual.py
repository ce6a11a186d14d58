"""Residual stages: the `[[stages]]` of a zoo config become a nested Functional model named `stages`.

A zoo model stays a chain (`preprocess`, the conv blocks, `stages`, `head`), so fine-tuning,
feature maps and Grad-CAM read it as they read a keras.applications backbone: the layers inside
are named `stage2_block1_conv1`, `stage2_block1_bn1`, ..., `stage2_block1_add`, `stage2_block1_out`,
and fine-tuning counts each residual block as one unit. The layers and their order are what
`cnnzoo.zoo.stats` counts (its rows name them), so parameters and FLOPs agree by construction.
"""

import keras
from keras import layers

from cnnzoo.zoo.layers import ZeroPadChannels

__all__ = ["stages_model", "BN_EPSILON"]

BN_EPSILON = 1e-5  # torchvision's, so that its ResNet weights compute the same here


def stages_model(spec, input_shape, dtype=None):
    """The residual stages of `spec` as a Functional model.

    Args:
        spec: a `ModelSpec` with `stages`.
        input_shape: (height, width, channels) of the feature map the stages take (the stem's output).
        dtype: None or a precision policy name for every layer (see `cnnzoo.zoo.precision`).

    Returns:
        A `keras.Model` named `stages`, from the stem's feature map to the last block's output.

    Example:

    >>> stages_model(cnnzoo.spec("resnet18"), (56, 56, 64)).output.shape
    (None, 7, 7, 512)
    """
    inputs = keras.Input(shape=tuple(input_shape), name="stages_input")
    x = inputs
    for i, stage in enumerate(spec.stages, 1):
        for j in range(1, stage.blocks + 1):
            x = residual_block(x, stage, f"stage{i}_block{j}", stage.strides if j == 1 else 1, dtype)
    return keras.Model(inputs, x, name="stages")


def residual_block(x, stage, prefix, stride, dtype=None):
    """One residual block of `stage` on the tensor `x`: main branch + shortcut, then the activation.

    Args:
        x: a symbolic tensor `[batch, height, width, channels]`.
        stage: the block's `ResidualStage` (block type, widths, shortcut, activation).
        prefix: the layers' name prefix (`stage2_block1`).
        stride: int, the stride of this block (the stage's for its first block, else 1).
        dtype: None or a precision policy name.

    Returns:
        The block's output tensor.
    """
    k, out = stage.kernel_size, stage.out_channels
    if stage.block == "basic":
        convs = [(k, stride, stage.filters), (k, 1, out)]
    else:
        convs = [(1, 1, stage.filters), (k, stride, stage.filters), (1, 1, out)]
    y = x
    for j, (kernel, s, filters) in enumerate(convs, 1):
        padding = "same"
        if s > 1:  # pad kernel // 2 on every side, as torchvision: both paths stay centred on the same pixel
            y = layers.ZeroPadding2D(kernel // 2, name=f"{prefix}_pad", dtype=dtype)(y)
            padding = "valid"
        y = _conv_bn(y, filters, kernel, s, padding, f"{prefix}_conv{j}", f"{prefix}_bn{j}", stage, dtype)
        if j < len(convs):
            y = layers.Activation(stage.activation, name=f"{prefix}_act{j}", dtype=dtype)(y)
    shortcut = x
    if stride > 1 or x.shape[-1] != out:
        if stage.shortcut == "projection":
            names = f"{prefix}_shortcut_conv", f"{prefix}_shortcut_bn"
            shortcut = _conv_bn(x, out, 1, stride, "valid", *names, stage, dtype)
        else:
            if stride > 1:  # x[:, ::stride, ::stride]
                shortcut = layers.MaxPooling2D(1, stride, name=f"{prefix}_shortcut_pool", dtype=dtype)(shortcut)
            if x.shape[-1] != out:
                shortcut = ZeroPadChannels(out, name=f"{prefix}_shortcut_pad", dtype=dtype)(shortcut)
    y = layers.Add(name=f"{prefix}_add", dtype=dtype)([y, shortcut])
    return layers.Activation(stage.activation, name=f"{prefix}_out", dtype=dtype)(y)


def _conv_bn(x, filters, kernel, stride, padding, conv_name, bn_name, stage, dtype):
    """A convolution without bias (He initialised) and its BatchNormalization."""
    x = layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding=padding,
        use_bias=False,
        kernel_initializer="he_normal",
        name=conv_name,
        dtype=dtype,
    )(x)
    return layers.BatchNormalization(momentum=stage.bn_momentum, epsilon=BN_EPSILON, name=bn_name, dtype=dtype)(x)
