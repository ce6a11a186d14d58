"""What filters respond to: first-layer kernels as pictures, deeper ones by activation maximisation."""

from pathlib import Path

import numpy as np

from cnnzoo.backend.gradients import feature_map_and_gradient
from cnnzoo.errors import ConfigError
from cnnzoo.explain import taps as _taps
from cnnzoo.explain.inputs import resolve_model
from cnnzoo.utils.checks import check_int, is_int

__all__ = ["filters"]


def filters(model, layer=None, out=None, max_filters=16, indices=None, steps=30, step_size=4.0, seed=0):
    """Pictures of what a layer's filters detect.

    For the first convolution the kernels themselves are pictures: each
    `[k, k, 3]` kernel is shown as an RGB tile (gray for one input channel),
    scaled to [0, 1] on its own; they are typically edges and colour blobs.
    For any deeper layer, activation maximisation: starting from gray noise,
    `steps` steps of gradient ascent on the input pixels make an image that
    excites the filter's mean activation strongly; textures and parts emerge.

    Args:
        model: a `keras.Model` taking fixed-size images (a zoo model), or the
            path of a `.keras` file.
        layer: None for the first convolution, or the name of a layer whose
            output is a feature map (`block3_conv2`, `block_5_expand`).
        out: optional path of a PNG grid of the tiles (written atomically).
        max_filters: int, how many filters to show (the first ones) when
            `indices` is None.
        indices: optional list of filter (channel) indices to show.
        steps: int, gradient-ascent steps (activation maximisation only).
        step_size: float, pixel change per step, in 0-255 units, of the
            normalised gradient.
        seed: int, seed of the starting noise.

    Returns:
        A float32 array `[n, height, width, channels]` of tiles in [0, 1]:
        kernels `[n, k, k, 3 or 1]`, or images at the model's input size.

    Example:

    >>> tiles = cnnzoo.explain.filters(model, out="first_layer.png")   # kernels
    >>> deep = cnnzoo.explain.filters(model, "block3_conv1", max_filters=8, out="block3.png")
    >>> deep.shape  # doctest: +SKIP
    (8, 64, 64, 3)
    """
    model = resolve_model(model)
    first = _taps.first_conv(model)
    tap = first if layer is None else _taps.find(model, layer, "layer")
    channels = int(tap.shape[-1])
    if indices is None:
        chosen = list(range(min(check_int(max_filters, "max_filters"), channels)))
    elif isinstance(indices, (list, tuple)) and indices and all(is_int(i) and 0 <= i < channels for i in indices):
        chosen = [int(i) for i in indices]
    else:
        raise ConfigError(
            f"`indices` must be None or a non-empty list of filter indices from 0 to {channels - 1} "
            f"(`{tap.name}` has {channels} filters). Received: indices={indices!r}."
        )
    if tap is first and _has_plain_kernel(tap.layer):
        tiles = _kernel_tiles(tap.layer, chosen)
    else:
        steps = check_int(steps, "steps")
        if isinstance(step_size, bool) or not isinstance(step_size, (int, float)) or not step_size > 0:
            raise ConfigError(f"`step_size` must be a positive number. Received: step_size={step_size!r}.")
        tiles = _maximise(model, tap.name, chosen, steps, float(step_size), check_int(seed, "seed", lo=0))
    if out is not None:
        _plot(tiles, chosen, tap.name, out)
    return tiles


def _kernel_tiles(layer, chosen):
    import keras

    kernel = np.asarray(layer.get_weights()[0], np.float32)  # [kh, kw, in, out]; depthwise: [kh, kw, in, mult]
    if isinstance(layer, keras.layers.DepthwiseConv2D):  # output channel c = in * mult + m sees one input channel
        kernel = kernel.reshape(kernel.shape[0], kernel.shape[1], 1, -1)
    kernel = np.moveaxis(kernel, -1, 0)
    tiles = kernel[chosen]
    if tiles.shape[-1] not in (1, 3):
        tiles = tiles.mean(axis=-1, keepdims=True)
    lo = tiles.min(axis=(1, 2, 3), keepdims=True)
    span = tiles.max(axis=(1, 2, 3), keepdims=True) - lo
    return np.divide(tiles - lo, span, out=np.full_like(tiles, 0.5), where=span > 0).astype(np.float32)


def _has_plain_kernel(layer):
    import keras

    return isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)) and not isinstance(
        layer, keras.layers.Conv2DTranspose
    )


def _linear_source(model, name):
    """`(input layer name, conv)` for a conv with a built-in activation inside a `ConvBlock`, else `(None, None)`."""
    import keras

    from cnnzoo.zoo.layers import ConvBlock

    found = _taps.taps(model)
    i = next(i for i, t in enumerate(found) if t.name == name)
    tap = found[i]
    linear = keras.activations.get("linear")
    if (
        tap.kind != "conv"
        or i == 0
        or type(tap.layer) is not keras.layers.Conv2D
        or tap.layer.activation is linear
        or tap.parent is None
        or not isinstance(model.get_layer(tap.parent), ConvBlock)
    ):
        return None, None
    block = model.get_layer(tap.parent)
    j = block.steps.index(tap.layer)
    # its input: the step before it in the block, or what feeds the block (the previous top-level map)
    before = block.steps[j - 1].name if j else found[i - 1].name
    return (before, tap.layer) if found[i - 1].name == before else (None, None)


def _maximise(model, name, chosen, steps, step_size, seed):
    from keras import ops

    size, channels = _taps.input_size(model)
    before, conv = _linear_source(model, name)
    rng = np.random.default_rng(seed)
    images = 128.0 + rng.uniform(-20.0, 20.0, (len(chosen), *size, channels)).astype(np.float32)
    picks = np.asarray(chosen, np.int32)[:, None]

    def forward(x, offset):  # the "tensor" differentiated is the input itself
        x = x if offset is None else x + offset
        if conv is None:
            captured, _ = _taps.run(model, x, [name], stop=True)
            act = ops.cast(captured[name], "float32")  # [n, h, w, c]
        else:  # before its ReLU: a filter that is silent on the noise still gets a gradient
            captured, _ = _taps.run(model, x, [before], stop=True)
            act = conv.convolution_op(ops.cast(captured[before], conv.kernel.dtype), conv.kernel)
            act = act + conv.bias if conv.use_bias else act
        # each image's own filter: its mean activation, one score per image
        return x, ops.take_along_axis(ops.mean(ops.cast(act, "float32"), axis=(1, 2)), picks, axis=1)

    for _ in range(steps):
        _, grad, _ = feature_map_and_gradient(forward, images, images.shape)
        std = grad.std(axis=(1, 2, 3), keepdims=True)
        images = np.clip(images + step_size * grad / (std + 1e-8), 0.0, 255.0).astype(np.float32)
    # show the pattern, not the gray start: centre on the mean, +-3 standard deviations fill [0, 1]
    mean = images.mean(axis=(1, 2, 3), keepdims=True)
    std = images.std(axis=(1, 2, 3), keepdims=True)
    return np.clip(0.5 + (images - mean) / (6.0 * std + 1e-8), 0.0, 1.0).astype(np.float32)


def _plot(tiles, chosen, name, out):
    from cnnzoo.utils.plotting import save_png, tile_grid

    n = len(tiles)
    fig, axes = tile_grid(n, cell=1.2)
    for i, ax in enumerate(axes[:n]):
        tile = tiles[i]
        ax.imshow(
            tile[..., 0] if tile.shape[-1] == 1 else tile,
            cmap="gray" if tile.shape[-1] == 1 else None,
            vmin=0.0,
            vmax=1.0,
            interpolation="nearest",
        )
        ax.set_title(str(chosen[i]), fontsize=7)
    fig.suptitle(f"{name}: {n} filters", fontsize=10)
    return save_png(fig, Path(out))
