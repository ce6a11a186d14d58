"""The pictures of an `Interpretation`: the confusion matrix, the top losses, right answers beside mistakes.

Figures use matplotlib's object API (`cnnzoo.utils.plotting`: headless, the
caller's backend untouched). Grad-CAM comes from `cnnzoo.explain.gradcam`, one
batch for all the images of a picture, drawn by
`cnnzoo.explain.gradcam_picture` (enlarged, crisp pixels for small images).
A model without a convolution to read gets the images alone (logged).
"""

import logging

import numpy as np

from cnnzoo.errors import CnnzooError
from cnnzoo.utils.plotting import figure

__all__ = ["confusion_matrix_figure", "top_losses_figure", "examples_figure", "by_turns"]

log = logging.getLogger("cnnzoo")

RIGHT, WRONG = "#1a7f37", "#c62828"


def confusion_matrix_figure(matrix, class_names, what, normalize=False):
    """A confusion matrix (rows: true class, columns: predicted), counts written in the cells up to 20 classes.

    Args:
        matrix: `[classes, classes]` counts.
        class_names: labels, in order.
        what: the images counted, in words (`"validation images"`), for the title.
        normalize: colour each row by its share of the true class.

    Returns:
        A matplotlib `Figure`.

    Example:

    >>> fig = confusion_matrix_figure([[3, 1], [0, 4]], ["a", "b"], "test images")
    """
    matrix = np.asarray(matrix)
    n = len(class_names)
    side = min(16, 2.5 + 0.45 * n)
    fig = figure((side + 1.5, side))
    ax = fig.subplots()
    rows = matrix.sum(axis=1, keepdims=True)
    shown = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0) if normalize else matrix
    image = ax.imshow(shown, cmap="Blues", vmin=0)
    bar = fig.colorbar(image, ax=ax, fraction=0.046)
    bar.set_label("share of the true class" if normalize else "images")
    labels = [_short(c) for c in class_names]
    if n <= 40:
        ax.set_xticks(range(n), labels, rotation=90 if n > 10 else 0, fontsize=8)
        ax.set_yticks(range(n), labels, fontsize=8)
    if n <= 20:
        limit = shown.max() / 2 if shown.size else 0
        for i, j in zip(*np.nonzero(matrix)):
            colour = "white" if shown[i, j] > limit else "black"
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7, color=colour)
    total = int(matrix.sum())
    accuracy = f"accuracy {np.trace(matrix) / total:.2%} ({int(np.trace(matrix))}/{total})" if total else "no images"
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix: {what}\n{accuracy}", fontsize=9)
    return fig


def top_losses_figure(interp, indices, title, gradcam=True):
    """A grid of the images `indices` of an `Interpretation`, each titled true / predicted (probability) / loss."""
    cols = max(1, int(np.ceil(np.sqrt(len(indices)))))
    rows = max(1, int(np.ceil(len(indices) / cols)))
    fig = figure((2.3 * cols + 0.4, 2.6 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    heat = _heatmaps(interp, indices) if gradcam else None
    predicted, losses = interp.predicted, interp.losses
    for ax, k in zip(axes, range(len(indices))):
        i = int(indices[k])
        _draw(ax, interp, i, heat, k)
        p = int(predicted[i])
        ax.set_title(
            f"true {_short(interp.class_names[interp.labels[i]])}\n"
            f"predicted {_short(interp.class_names[p])} {interp.probabilities[i, p]:.0%}\nloss {losses[i]:.2f}",
            fontsize=7,
            color=RIGHT if p == interp.labels[i] else WRONG,
        )
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title + _heat_note(heat), fontsize=9)
    return fig


def examples_figure(interp, right, wrong):
    """Grad-CAM of a row of right answers and a row of mistakes (`Interpretation.examples`); None without
    Grad-CAM (no convolution to read: logged) or images."""
    rows = [(kind, idx) for kind, idx in (("right", right), ("wrong", wrong)) if len(idx)]
    heat = _heatmaps(interp, [int(i) for _, idx in rows for i in idx])
    if heat is None:
        return None
    cols = max(len(idx) for _, idx in rows)
    fig = figure((2.0 * cols + 0.6, 2.4 * len(rows) + 0.6))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    predicted, k = interp.predicted, 0
    for r, (kind, idx) in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            ax.set_axis_off()
            if c >= len(idx):
                continue
            i = int(idx[c])
            _draw(ax, interp, i, heat, k)
            k += 1
            p = int(predicted[i])
            ax.set_title(
                f"true {_short(interp.class_names[interp.labels[i]])}\n"
                f"predicted {_short(interp.class_names[p])} {interp.probabilities[i, p]:.0%}",
                fontsize=7,
                color=RIGHT if kind == "right" else WRONG,
            )
        axes[r][0].text(
            -0.08, 0.5, kind, transform=axes[r][0].transAxes, rotation=90, ha="right", va="center", fontsize=9
        )
    accuracy = interp.accuracy
    fig.suptitle(
        f"Grad-CAM of {interp.model.name} on {interp.description}: {len(right)} right, {len(wrong)} wrong shown "
        f"(mistakes by loss, classes in turn; accuracy {accuracy:.2%})" + _heat_note(heat),
        fontsize=9,
    )
    return fig


def by_turns(indices, classes, keys):
    """`indices` ordered by `keys` (highest first) within each class, taking turns across the classes (the class
    of the first one first), so that no class fills a picture.

    Example:

    >>> by_turns(np.array([5, 6, 7]), np.array([0, 0, 1]), np.array([3.0, 2.0, 1.0])).tolist()
    [5, 7, 6]
    """
    if not len(indices):
        return np.zeros((0,), np.int64)
    order = np.argsort(-keys, kind="stable")
    queues = {}
    for i in order:
        queues.setdefault(int(classes[i]), []).append(int(indices[i]))
    picked, turn = [], 0
    lists = list(queues.values())  # classes in the order of their first (best) member
    while len(picked) < len(indices):
        for queue in lists:
            if turn < len(queue):
                picked.append(queue[turn])
        turn += 1
    return np.array(picked, np.int64)


def _heatmaps(interp, indices):
    """Grad-CAM (`Heatmaps`) of the predicted class of each image, or None without a convolution to read."""
    from cnnzoo.explain.gradcam import heatmaps

    if not len(indices):
        return None
    batch = np.stack([interp.images[int(i)] for i in indices]).astype(np.float32)
    try:
        return heatmaps(interp.model, batch)
    except CnnzooError as e:
        log.warning("no Grad-CAM pictures for %s: %s", interp.model.name, e)
        return None


def _draw(ax, interp, i, heat, k):
    """Image `i` into `ax`: under its Grad-CAM `heat.maps[k]`, or alone."""
    from cnnzoo.explain.gradcam_picture import display_image, gradcam_picture, resize_heat

    image = np.clip(interp.images[i], 0, 255)
    if heat is None:
        rgb, factor = display_image(image)
        ax.imshow(rgb, interpolation="nearest" if factor > 1 else "antialiased")
        return
    gradcam_picture(image, resize_heat(heat.maps[k], image.shape[:2]), ax=ax)


def _heat_note(heat):
    if heat is not None and heat.vanished.any():
        return f"\nGrad-CAM: gradients vanish for {int(heat.vanished.sum())} of these: their maps are noise"
    return ""


def _short(name):
    name = str(name)
    return name if len(name) <= 14 else name[:13] + "."
