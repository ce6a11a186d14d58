"""Plots of a fine-tuning run: the learning curve and the confusion matrix.

Figures use matplotlib's object API (`cnnzoo.utils.plotting`: no display needed,
the caller's backend untouched); each PNG is written to a temporary file and
renamed, like every other file of a run.
"""

import numpy as np

from cnnzoo.utils.plotting import figure, save_png

__all__ = ["learning_curve", "confusion_matrix_plot"]


def learning_curve(stage_results, path):
    """Plots loss and accuracy per epoch across stages (stage boundaries marked).

    Args:
        stage_results: the `FinetuneResult.stages` tuple.
        path: where to write the PNG.

    Returns:
        The `Path` written.

    Example:

    >>> plots.learning_curve(result.stages, "runs/birds/learning_curve.png")  # doctest: +SKIP
    """
    fig = figure((11, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    offset = 0
    for s in stage_results:
        n = len(s.history.get("loss", []))
        x = np.arange(offset + 1, offset + n + 1)
        for key, style in (("loss", "-"), ("val_loss", "--")):
            if s.history.get(key):
                ax_loss.plot(x, s.history[key], style, marker="o", ms=3, label=f"{s.index}:{s.stage.name} {key}")
        for key, style in (("accuracy", "-"), ("val_accuracy", "--")):
            if s.history.get(key):
                ax_acc.plot(x, s.history[key], style, marker="o", ms=3, label=f"{s.index}:{s.stage.name} {key}")
        if offset:
            for ax in (ax_loss, ax_acc):
                ax.axvline(offset + 0.5, color="grey", lw=0.8, ls=":")
        offset += n
    for ax, title in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.suptitle("fine-tuning: stages " + ", ".join(f"{s.index}:{s.stage}" for s in stage_results), fontsize=9)
    return save_png(fig, path)


def confusion_matrix_plot(matrix, class_names, path):
    """Plots a confusion matrix (rows: true class, columns: predicted class).

    Args:
        matrix: `[num_classes, num_classes]` counts.
        class_names: labels, in order.
        path: where to write the PNG.

    Returns:
        The `Path` written.

    Example:

    >>> plots.confusion_matrix_plot(result.confusion_matrix, result.class_names, "cm.png")  # doctest: +SKIP
    """
    matrix = np.asarray(matrix)
    n = len(class_names)
    side = min(16, 2 + 0.45 * n)
    fig = figure((side + 1.5, side))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    labels = [str(c) if len(str(c)) <= 14 else str(c)[:13] + "." for c in class_names]
    if n <= 40:
        ax.set_xticks(range(n), labels, rotation=90 if n > 10 else 0, fontsize=8)
        ax.set_yticks(range(n), labels, fontsize=8)
        if n <= 20:
            limit = matrix.max() / 2 if matrix.size else 0
            for i in range(n):
                for j in range(n):
                    if matrix[i, j]:
                        ax.text(
                            j,
                            i,
                            int(matrix[i, j]),
                            ha="center",
                            va="center",
                            fontsize=7,
                            color="white" if matrix[i, j] > limit else "black",
                        )
    total = matrix.sum()
    accuracy = np.trace(matrix) / total if total else float("nan")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"validation confusion matrix ({int(total)} images, accuracy {accuracy:.2%})")
    return save_png(fig, path)
