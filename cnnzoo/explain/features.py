"""Feature maps: what each conv and pool layer of a model outputs for one image, and their pictures."""

import re
from pathlib import Path

import numpy as np

from cnnzoo.errors import ConfigError
from cnnzoo.explain import taps as _taps
from cnnzoo.explain.inputs import model_batch, resolve_model
from cnnzoo.utils.checks import check_int
from cnnzoo.utils.renames import renamed_arguments

__all__ = ["feature_maps", "plot_feature_maps"]


def feature_maps(model, image, layers=None):
    """The feature maps of a model's conv and pooling layers for one image (or a batch).

    Early layers respond to edges and colours, later ones to textures and
    parts; pooling layers keep where a feature was strong, at a coarser scale.
    Layers inside `ConvBlock`s (`block1_conv1`, `block1_pool`, ...) and inside
    a `keras.applications` backbone nested as the layer `backbone` are
    included, in the order the forward pass reaches them.

    Args:
        model: a `keras.Model` taking fixed-size images (a zoo model), or the
            path of a `.keras` file.
        image: a file path, a PIL image or an array `[H, W]`/`[H, W, C]` with
            0-255 values, converted and resized to the model's input as
            `cnnzoo.predict` does; a list or a 4-D array is a batch.
        layers: None for every convolution and pooling layer, or a list of
            layer names whose output is a feature map (any of them: a
            BatchNormalization or activation too).

    Returns:
        A dict `{layer name: float32 array}`, in forward order; each array is
        `[height, width, channels]` for one image (`[N, height, width,
        channels]` for a batch), the layer's output shape.

    Example:

    >>> maps = cnnzoo.explain.feature_maps(model, "robin.jpg", layers=["block1_conv1", "block1_pool"])
    >>> {name: m.shape for name, m in maps.items()}  # doctest: +SKIP
    {'block1_conv1': (64, 64, 32), 'block1_pool': (32, 32, 32)}
    """
    model = resolve_model(model)
    if layers is None:
        names = [t.name for t in _taps.taps(model) if t.kind in ("conv", "pool")]
        if not names:
            raise ConfigError(
                f"`model` must have convolution or pooling layers to show feature maps. Received: model={model.name!r}."
            )
    else:
        if isinstance(layers, str) or not isinstance(layers, (list, tuple)) or not layers:
            raise ConfigError(f"`layers` must be None or a non-empty list of layer names. Received: layers={layers!r}.")
        order = {t.name: i for i, t in enumerate(_taps.taps(model))}
        for name in layers:
            _taps.find(model, name, "layers")
        names = sorted(dict.fromkeys(layers), key=order.__getitem__)
    batch, single = model_batch(model, image)
    captured, _ = _taps.run(model, batch, names, stop=True)
    out = {}
    for name in names:
        arr = _taps.to_numpy(captured[name]).astype(np.float32)
        out[name] = arr[0] if single else arr
    return out


@renamed_arguments(out_dir="out")
def plot_feature_maps(maps, out, max_channels=64, title=None):
    """Writes one PNG per layer: each channel of the feature map as a small image, on one colour scale.

    Every tile of a layer shares the layer's colour scale (shown by a colour
    bar), so strong and silent channels look it. A map of 1x1 positions (after
    global pooling) has nothing to show in space: its channels are drawn as
    bars instead.

    Args:
        maps: what `feature_maps` returns (for a batch, the first image is drawn).
        out: the directory to write into (created if missing). Was `out_dir`
            (still accepted until cnnzoo 0.3, with a `DeprecationWarning`).
        max_channels: int, most channels drawn per layer (the first ones).
        title: optional text put above each layer's title (e.g. the image and
            what the model predicts for it).

    Returns:
        A dict `{layer name: Path of its PNG}` (`<out>/<layer name>.png`).

    Example:

    >>> cnnzoo.explain.plot_feature_maps(maps, "figures/robin")  # doctest: +SKIP
    {'block1_conv1': PosixPath('figures/robin/block1_conv1.png'), ...}
    """
    from cnnzoo.utils.plotting import save_png

    max_channels = check_int(max_channels, "max_channels")
    if not isinstance(maps, dict) or not maps:
        raise ConfigError(
            f"`maps` must be the non-empty dict that `feature_maps` returns. "
            f"Received: maps of type {type(maps).__name__}."
        )
    out = Path(out)
    written = {}
    for name, arr in maps.items():
        arr = np.asarray(arr, np.float32)
        if arr.ndim == 4:
            arr = arr[0]
        if arr.ndim != 3:
            raise ConfigError(
                f"`maps` must hold feature maps [height, width, channels]. "
                f"Received: maps[{name!r}] of shape {arr.shape}."
            )
        n = min(arr.shape[-1], max_channels)
        fig = _channel_bars(arr, n) if arr.shape[0] * arr.shape[1] == 1 else _channel_tiles(arr, n)
        shown = f"{n} of {arr.shape[-1]} channels" if n < arr.shape[-1] else f"{n} channels"
        head = f"{title}\n" if title else ""
        fig.suptitle(f"{head}{name}: {arr.shape[0]}x{arr.shape[1]}, {shown}", fontsize=10)
        written[name] = save_png(fig, out / f"{_safe(name)}.png")
    return written


def _channel_tiles(arr, n):
    """A grid of the first `n` channels on one colour scale, with its colour bar; at least 224 px wide."""
    import math

    from cnnzoo.utils.plotting import tile_grid

    cols = max(1, math.ceil(math.sqrt(n)))
    fig, axes = tile_grid(n, cell=max(1.3, 2.6 / cols))
    shown = arr[..., :n]
    low, high = float(shown.min()), float(shown.max())
    if high <= low:
        high = low + 1.0  # a constant map: one colour, the scale still readable
    image = None
    for c, ax in enumerate(axes[:n]):
        image = ax.imshow(arr[..., c], cmap="viridis", vmin=low, vmax=high, interpolation="nearest")
        ax.set_title(str(c), fontsize=7)
    bar = fig.colorbar(image, ax=axes, fraction=0.046 if n > 1 else 0.1, pad=0.02)
    bar.ax.tick_params(labelsize=7)
    return fig


def _channel_bars(arr, n):
    """A 1x1 map: one bar per channel (its value), instead of `n` one-pixel tiles."""
    from cnnzoo.utils.plotting import figure

    values = arr.reshape(-1)[:n]
    fig = figure((min(12.0, max(4.0, 0.12 * n + 1.5)), 3.2))
    ax = fig.subplots()
    ax.bar(np.arange(n), values, width=0.8, color="#3b6ea8")
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_xlabel("channel")
    ax.set_ylabel("value")
    ax.set_xlim(-0.8, n - 0.2)
    ax.set_title("1x1 positions: one value per channel", fontsize=8)
    return fig


def _safe(name):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(name)) or "layer"
