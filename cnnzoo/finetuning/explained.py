"""Grad-CAM of a fine-tuned model on a few validation images, some right and some wrong.

Written by `cnnzoo.finetune` (with `plots=True`) as `gradcam.png` next to the
learning curve and the confusion matrix: where the model looked when it was
right, and when it was wrong.
"""

import logging

import numpy as np

from cnnzoo.errors import CnnzooError
from cnnzoo.utils.plotting import figure, save_png

__all__ = ["gradcam_examples", "pick_examples"]

log = logging.getLogger("cnnzoo")


def gradcam_examples(model, dataset, class_names, path, count=8, limit=512):
    """Plots Grad-CAM overlays of validation images: a row of right predictions, a row of wrong ones.

    Args:
        model: the fine-tuned `keras.Model`.
        dataset: batches of `(images, labels)` (0-255 pixels at the model's
            input size), e.g. the run's validation pipeline.
        class_names: labels, in order.
        path: where to write the PNG.
        count: int, images shown: up to half of them wrong (when the model
            gets that many wrong), the rest right.
        limit: int, most validation images read to pick them from.

    Returns:
        `{"gradcam": Path}`, or `{}` when there is nothing to show or the model
        has no convolution to read (the reason is logged; the run is not failed
        by its pictures).

    Example:

    >>> gradcam_examples(result.model, validation, result.class_names, "runs/birds/gradcam.png")  # doctest: +SKIP
    {'gradcam': PosixPath('runs/birds/gradcam.png')}
    """
    from keras import ops

    from cnnzoo.deploy.inference import predictor
    from cnnzoo.explain.gradcam import grad_cam, overlay

    xs, ys, seen = [], [], 0
    for x, y in dataset:  # batches of any backend's tensors (or NumPy), as NumPy
        xs.append(np.asarray(ops.convert_to_numpy(x), np.float32))
        ys.append(np.asarray(ops.convert_to_numpy(y), np.int64).reshape(-1))
        seen += len(ys[-1])
        if seen >= limit:
            break
    if not seen:
        return {}
    x, y = np.concatenate(xs)[:limit], np.concatenate(ys)[:limit]
    probs = np.asarray(ops.convert_to_numpy(predictor(model)(x)), np.float32)
    predicted = np.argmax(probs, axis=1)
    right, wrong = pick_examples(predicted, y, count)
    chosen = np.concatenate([right, wrong]).astype(int)
    try:
        heats = grad_cam(model, x[chosen])
    except CnnzooError as e:
        log.warning("no Grad-CAM pictures for %s: %s", model.name, e)
        return {}
    rows = [("right", right), ("wrong", wrong)]
    rows = [(kind, idx) for kind, idx in rows if len(idx)]
    cols = max(len(idx) for _, idx in rows)
    fig = figure((1.9 * cols + 0.6, 2.2 * len(rows) + 0.5))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    heat_of = dict(zip(chosen.tolist(), heats))
    for r, (kind, idx) in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            ax.set_axis_off()
            if c >= len(idx):
                continue
            i = int(idx[c])
            ax.imshow(overlay(np.clip(x[i], 0, 255), heat_of[i]), interpolation="nearest")
            p = int(predicted[i])
            ax.set_title(
                f"true {_short(class_names, y[i])}\npredicted {_short(class_names, p)} {probs[i, p]:.0%}",
                fontsize=7,
                color="#1a7f37" if kind == "right" else "#c62828",
            )
        axes[r][0].text(
            -0.08, 0.5, kind, transform=axes[r][0].transAxes, rotation=90, ha="right", va="center", fontsize=9
        )
    fig.suptitle(
        f"Grad-CAM of {model.name} on validation images ({len(right)} right, {len(wrong)} wrong shown; "
        f"{int((predicted == y).sum())}/{len(y)} right)",
        fontsize=9,
    )
    return {"gradcam": save_png(fig, path)}


def pick_examples(predicted, labels, count):
    """`(right, wrong)` indices: up to `count // 2` wrong predictions, right ones for the rest, in data order."""
    predicted, labels = np.asarray(predicted).reshape(-1), np.asarray(labels).reshape(-1)
    wrong = np.flatnonzero(predicted != labels)[: count // 2]
    right = np.flatnonzero(predicted == labels)[: count - len(wrong)]
    return right, wrong


def _short(names, k):
    name = str(names[int(k)]) if 0 <= int(k) < len(names) else str(int(k))
    return name if len(name) <= 14 else name[:13] + "."
