"""Grad-CAM as a picture one can read: enlarged, titled, with a colour scale and a note when it misleads.

`grad_cam(out=)`, `cnnzoo explain` and `cnnzoo serve`'s `POST /explain` draw
it. An 8x8 digit becomes a 224x224 picture of crisp pixels (nearest-neighbour,
by a whole factor) under a smooth heatmap; a photo is drawn at up to 800
pixels. The title names the class explained and its probability, a colour bar
gives the scale, and a red note says when the map means nothing: vanishing
gradients (`Heatmaps.vanished` in `cnnzoo.explain.gradcam`) or no region that
raises the score. `overlay` (the heatmap blended over an image, at the image's
size) and `resize_heat` are here too.
"""

import math

import numpy as np

from cnnzoo.errors import ConfigError, DataError
from cnnzoo.explain.inputs import original, save_rgb_png
from cnnzoo.utils.plotting import figure

__all__ = ["gradcam_picture", "overlay", "resize_heat", "display_image", "figure_rgb", "note_for", "MIN_SIDE"]

MIN_SIDE = 224  # the long side of a picture, in pixels, at least
MAX_SIDE = 800
DPI = 110


def display_image(image, min_side=MIN_SIDE):
    """`(rgb, factor)`: an image as uint8 RGB, enlarged by a whole `factor` (nearest) to at least `min_side` pixels.

    Example:

    >>> display_image(np.zeros((8, 8), "uint8"))[0].shape
    (224, 224, 3)
    """
    rgb = original(image)
    factor = max(1, math.ceil(min_side / max(rgb.shape[:2])))
    if factor > 1:
        rgb = np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)
    return rgb, factor


def note_for(heat, strength=None, vanished=False):
    """The warning a picture carries, or None: vanishing gradients, or no region that raises the score."""
    if vanished:
        return f"gradients vanish (|grad x act| {strength:.1g}): this map is noise, not evidence"
    if not np.any(np.asarray(heat) > 0):
        return "no region raises this class's score (the map is empty)"
    return None


def gradcam_picture(
    image, heat, label=None, probability=None, layer=None, strength=None, vanished=False, ax=None, colormap="jet"
):
    """Draws a Grad-CAM heatmap over its image, readable at any image size.

    Args:
        image: the image explained (path, PIL image or array, 0-255), at any size.
        heat: its heatmap `[h, w]` in [0, 1] (as `grad_cam` returns it).
        label: the class explained, for the title.
        probability: the model's probability of that class.
        layer: the feature-map layer read.
        strength: `Heatmaps.strength` of this map (how much the score
            depends on the feature map), for the note.
        vanished: bool, the gradients vanish (`Heatmaps.vanished`): the
            picture says the map is noise.
        ax: a matplotlib axis to draw into (a grid of pictures); None makes a
            figure of its own, with a colour bar.
        colormap: a matplotlib colormap name.

    Returns:
        The matplotlib `Figure` (write it with `cnnzoo.utils.plotting.save_png`,
        or turn it into pixels with `figure_rgb`).

    Example:

    >>> fig = gradcam_picture("robin.jpg", heat, label="robin", probability=0.93)  # doctest: +SKIP
    """
    rgb, factor = display_image(image)
    big = overlay(rgb, resize_heat(np.clip(np.asarray(heat, np.float32), 0, 1), rgb.shape[:2], renormalise=False))
    own = ax is None
    if own:
        h, w = rgb.shape[:2]
        scale = min(MAX_SIDE, max(h, w)) / max(h, w) / DPI
        fig = figure((w * scale + 1.1, h * scale + 0.9))
        ax = fig.subplots()
    ax.imshow(big, interpolation="nearest" if factor > 1 else "antialiased")
    ax.set_axis_off()
    title = "Grad-CAM" if label is None else f"Grad-CAM for {label!r}"
    if probability is not None:
        title += f" ({probability:.1%})"
    ax.set_title(title + (f"\nlayer {layer}" if layer and own else ""), fontsize=9 if own else 7)
    note = note_for(heat, strength, vanished)
    if note:
        ax.text(0.5, -0.02, note, transform=ax.transAxes, ha="center", va="top", fontsize=7, color="#c62828", wrap=True)
    if own:
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        bar = ax.figure.colorbar(
            ScalarMappable(Normalize(0, 1), colormap), ax=ax, fraction=0.046, pad=0.03, ticks=[0, 0.5, 1]
        )
        bar.set_label("share of the peak", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    return ax.figure


def figure_rgb(fig, dpi=DPI):
    """A figure rendered as a uint8 RGB array `[H, W, 3]` (what `cnnzoo serve`'s `/explain` sends).

    Example:

    >>> figure_rgb(gradcam_picture(image, heat)).shape  # doctest: +SKIP
    (330, 390, 3)
    """
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, bbox_inches="tight", format="png")
    buffer.seek(0)
    with Image.open(buffer) as im:
        return np.asarray(im.convert("RGB"))


def resize_heat(heat, size, renormalise=True):
    """A heatmap resized (bilinear) to `size` = (height, width); its peak 1 again unless `renormalise=False`."""
    from PIL import Image

    h, w = int(size[0]), int(size[1])
    if heat.shape == (h, w):
        return heat.astype(np.float32)
    resized = np.asarray(
        Image.fromarray(np.ascontiguousarray(heat, np.float32)).resize((w, h), Image.Resampling.BILINEAR)
    )
    resized = np.clip(resized, 0.0, None)
    if not renormalise:  # an overlay of the heatmap the caller gave
        return np.clip(resized, 0.0, 1.0).astype(np.float32)
    peak = resized.max() if heat.max() > 0 else 0.0  # bilinear resizing can lower the peak: 1 again
    return (resized / peak if peak > 0 else np.zeros_like(resized)).astype(np.float32)


def overlay(image, heatmap, alpha=0.4, out=None, colormap="jet"):
    """Blends a heatmap, coloured, over an image.

    Args:
        image: a file path, a PIL image or an array `[H, W]`/`[H, W, C]` (0-255).
        heatmap: an array `[h, w]` with values in [0, 1] (as `grad_cam`
            returns), resized to the image when the sizes differ.
        alpha: float in [0, 1], the heatmap's weight.
        out: optional path of a PNG to write (atomically).
        colormap: a matplotlib colormap name.

    Returns:
        A uint8 RGB array `[H, W, 3]`.

    Example:

    >>> picture = cnnzoo.explain.overlay("robin.jpg", heat, out="robin_gradcam.png")  # doctest: +SKIP
    """
    import matplotlib

    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"`alpha` must be a number from 0 to 1. Received: alpha={alpha!r}.")
    if colormap not in matplotlib.colormaps:
        raise ConfigError(
            f"`colormap` must be a matplotlib colormap name (e.g. 'jet', 'viridis'). Received: colormap={colormap!r}."
        )
    rgb = original(image)
    heat = np.asarray(heatmap, np.float32)
    if heat.ndim != 2 or not np.all(np.isfinite(heat)):
        raise DataError(
            f"`heatmap` must be a finite 2-D array [height, width] (values in [0, 1]). "
            f"Received: heatmap of shape {heat.shape}."
        )
    heat = resize_heat(np.clip(heat, 0.0, 1.0), rgb.shape[:2], renormalise=False)
    colour = matplotlib.colormaps[colormap](heat)[..., :3] * 255.0
    blended = np.clip((1.0 - alpha) * rgb + alpha * colour, 0, 255).round().astype(np.uint8)
    if out is not None:
        save_rgb_png(blended, out)
    return blended
