"""Plots of a fine-tuning run: the learning curve and the confusion matrix (drawn by
`cnnzoo.explain.interpretation_plots`, as `cnnzoo.interpret` draws it).

Figures use matplotlib's object API (`cnnzoo.utils.plotting`: no display needed,
the caller's backend untouched); each PNG is written to a temporary file and
renamed, like every other file of a run.
"""

import numpy as np

from cnnzoo.utils.plotting import figure, save_png

__all__ = ["learning_curve", "learning_curve_figure", "confusion_matrix_plot", "loss_gap_note", "train_only_effects"]


def learning_curve(stage_results, path, train_only=()):
    """Plots loss and accuracy per epoch across stages (stage boundaries marked, whole epochs on the axis).

    Where the training loss ends above the validation loss, a note on the
    loss panel says why, when `train_only` names the causes: training
    batches are scored with label smoothing (and MixUp/CutMix), augmented and
    run through dropout, validation batches are not.

    Args:
        stage_results: the `FinetuneResult.stages` tuple.
        path: where to write the PNG.
        train_only: what acts on training batches only, one phrase each
            (`train_only_effects` lists them for a run).

    Returns:
        The `Path` written.

    Example:

    >>> plots.learning_curve(result.stages, "runs/birds/learning_curve.png")  # doctest: +SKIP
    """
    return save_png(learning_curve_figure(stage_results, train_only), path)


def learning_curve_figure(stage_results, train_only=()):
    """The figure `learning_curve` writes: a `matplotlib.figure.Figure`, panels loss and accuracy."""
    import matplotlib.ticker

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
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # epochs are whole
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    note = loss_gap_note(stage_results, train_only)
    if note:
        ax_loss.text(  # under the panel, where it hides no curve (the PNG is cropped to fit it)
            0, -0.16, note, transform=ax_loss.transAxes, fontsize=8, va="top",
            bbox={"boxstyle": "round", "facecolor": "lightyellow", "edgecolor": "grey"},
        )  # fmt: skip
    fig.suptitle("fine-tuning: stages " + ", ".join(f"{s.index}:{s.stage}" for s in stage_results), fontsize=9)
    return fig


def loss_gap_note(stage_results, train_only):
    """The learning curve's note when training loss ends above validation loss; None otherwise.

    Args:
        stage_results: the `FinetuneResult.stages` tuple.
        train_only: phrases naming what acts on training batches only.

    Returns:
        str or None.
    """
    last = next(
        (s.history for s in reversed(stage_results) if s.history.get("loss") and s.history.get("val_loss")), None
    )
    if not train_only or last is None or not last["loss"][-1] > last["val_loss"][-1]:
        return None
    return (
        f"training loss ({last['loss'][-1]:.2f}) above validation loss ({last['val_loss'][-1]:.2f}): expected,\n"
        f"training batches only get {', '.join(train_only)}"
    )


def train_only_effects(recipe, augmented, model, num_classes):
    """What raises the training loss but not the validation loss in a run, one phrase each.

    Args:
        recipe: the run's `cnnzoo.Recipe`.
        augmented: bool, whether training batches are augmented (`Inputs.augmented`).
        model: the trained `keras.Model` (its dropout layers).
        num_classes: int, for the least training loss label smoothing allows.

    Returns:
        A tuple of str, e.g. `("label smoothing 0.1 (loss >= 0.50)", "augmentation", "dropout")`.

    Example:

    >>> train_only_effects(cnnzoo.Recipe(), True, model, 10)  # doctest: +SKIP
    ('label smoothing 0.1 (loss >= 0.50)', 'augmentation', 'dropout')
    """
    import keras

    from cnnzoo import _compat

    effects = []
    if recipe.label_smoothing:
        floor = _smoothed_floor(recipe.label_smoothing, num_classes)
        effects.append(f"label smoothing {recipe.label_smoothing:g} (loss >= {floor:.2f})")
    effects += [f"{name} {alpha:g}" for name, alpha in (("MixUp", recipe.mixup), ("CutMix", recipe.cutmix)) if alpha]
    if augmented:
        effects.append("augmentation")
    if any(isinstance(layer, keras.layers.Dropout) and layer.rate > 0 for layer in _compat.flatten_layers(model)):
        effects.append("dropout")
    return tuple(effects)


def _smoothed_floor(smoothing, num_classes):
    """The least cross-entropy against smoothed targets: their entropy."""
    if num_classes < 2:
        return 0.0
    high = 1 - smoothing + smoothing / num_classes
    low = smoothing / num_classes
    return float(-high * np.log(high) - (num_classes - 1) * low * np.log(low))


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
