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
def plot_feature_maps(maps, out, max_channels=64):
    """Writes one PNG grid per layer: each channel of the feature map as a small gray image.

    Args:
        maps: what `feature_maps` returns (for a batch, the first image is drawn).
        out: the directory to write into (created if missing). Was `out_dir`
            (still accepted until cnnzoo 0.3, with a `DeprecationWarning`).
        max_channels: int, most channels drawn per layer (the first ones).

    Returns:
        A dict `{layer name: Path of its PNG}` (`<out>/<layer name>.png`).

    Example:

    >>> cnnzoo.explain.plot_feature_maps(maps, "figures/robin")  # doctest: +SKIP
    {'block1_conv1': PosixPath('figures/robin/block1_conv1.png'), ...}
    """
    from cnnzoo.utils.plotting import save_png, tile_grid

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
        fig, axes = tile_grid(n)
        for c, ax in enumerate(axes[:n]):
            ax.imshow(arr[..., c], cmap="viridis", interpolation="nearest")
            ax.set_title(str(c), fontsize=7)
        shown = f"{n} of {arr.shape[-1]} channels" if n < arr.shape[-1] else f"{n} channels"
        fig.suptitle(f"{name}: {arr.shape[0]}x{arr.shape[1]}, {shown}", fontsize=10)
        written[name] = save_png(fig, out / f"{_safe(name)}.png")
    return written


def _safe(name):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(name)) or "layer"
