"""Plots of a fine-tuning run: the learning curve and the confusion matrix (drawn by
`cnnzoo.explain.interpretation_plots`, as `cnnzoo.interpret` draws it).

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


def confusion_matrix_plot(matrix, class_names, path, what="validation images"):
    """Plots a confusion matrix (rows: true class, columns: predicted class).

    Args:
        matrix: `[num_classes, num_classes]` counts.
        class_names: labels, in order.
        path: where to write the PNG.
        what: the images counted, in words, for the title.

    Returns:
        The `Path` written.

    Example:

    >>> plots.confusion_matrix_plot(result.confusion_matrix, result.class_names, "cm.png")  # doctest: +SKIP
    """
    from cnnzoo.explain.interpretation_plots import confusion_matrix_figure

    return save_png(confusion_matrix_figure(matrix, class_names, what), path)
