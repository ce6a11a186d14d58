"""Headless figures with matplotlib's object API.

`figure()` makes a `matplotlib.figure.Figure` that is not attached to pyplot, so
no backend is chosen or switched in the caller's process (a notebook keeps its
inline backend, a GUI program its window backend) and no global figure list
grows; `save_png` writes it atomically.
"""

from pathlib import Path

from cnnzoo.utils.files import atomic_save

__all__ = ["figure", "save_png", "tile_grid"]


def figure(figsize=(6.4, 4.8)):
    """A new matplotlib `Figure` that pyplot does not manage.

    Args:
        figsize: (width, height) in inches.

    Returns:
        A `matplotlib.figure.Figure`; add axes with `fig.subplots(...)`.

    Example:

    >>> fig = figure((4, 3)); ax = fig.subplots(); ax.plot([1, 2])  # doctest: +SKIP
    """
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def save_png(fig, path, dpi=110):
    """Writes `fig` as a PNG at `path` atomically; returns the `Path`.

    Example:

    >>> save_png(fig, "runs/x/curve.png")  # doctest: +SKIP
    """
    return atomic_save(Path(path), lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png"))


def tile_grid(n, cell=1.3):
    """A near-square grid of `n` image tiles: `(fig, axes)`, every axis off, `axes[:n]` to draw in.

    Example:

    >>> fig, axes = tile_grid(16); axes[0].imshow(tile)  # doctest: +SKIP
    """
    import math

    cols = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    fig = figure((cell * cols + 0.4, cell * rows + 0.6))
    axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes:
        ax.set_axis_off()
    return fig, axes
