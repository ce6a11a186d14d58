"""What `finetune` returns, and `evaluate`: accuracy and confusion matrix through the fast predict path."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnzoo.deploy.inference import flip_averaged, predictor
from cnnzoo.finetuning.stages import Stage

__all__ = ["StageResult", "FinetuneResult", "evaluate"]


@dataclass(frozen=True)
class StageResult:
    """What one stage did: its `Stage`, per-epoch metrics, and how it ran."""

    index: int
    stage: Stage
    history: dict  # metric -> list of per-epoch values (epochs before a crash included)
    units: tuple  # names of the backbone units it trained
    feature_cache: bool
    seconds: float


@dataclass(frozen=True)
class FinetuneResult:
    """What `finetune` returns.

    Attributes:
        model: the fine-tuned `keras.Model` (class names stored in its head).
        model_path: `Path` of the saved `.keras` file.
        run_dir: `Path` of the run directory (checkpoints, state, plots).
        stages: tuple of `StageResult`, in order.
        best_val_accuracy: highest validation accuracy of any epoch, or None.
        val_accuracy: validation accuracy of the final model, or None.
        class_names: tuple of str.
        skipped: tuple of `(path, reason)` for image files left out.
        plots: dict name -> `Path` of the PNGs written.
        confusion_matrix: `[true, predicted]` counts on the validation data, or None.
        resumed: bool, whether this call continued an interrupted run.
        warnings: tuple of str, what looks wrong with the result (also emitted
            as `cnnzoo.TrainingWarning`), e.g. validation accuracy near chance.
    """

    model: object
    model_path: Path
    run_dir: Path
    stages: tuple
    best_val_accuracy: float
    val_accuracy: float
    class_names: tuple
    skipped: tuple
    plots: dict = field(default_factory=dict)
    confusion_matrix: object = None
    resumed: bool = False
    warnings: tuple = ()

    @property
    def history(self):
        """`{"1:head": {"loss": [...], ...}, "2:top2": {...}}`, per stage."""
        return {f"{s.index}:{s.stage.name}": s.history for s in self.stages}


def evaluate(model, dataset, num_classes, tta=False):
    """Accuracy and confusion matrix of `model` on a dataset, through the fast predict path.

    Args:
        model: a `keras.Model`.
        dataset: batches of `(images, labels)`, e.g. an `ImageFolder`'s `train`.
        num_classes: int.
        tta: bool; classify each image by the mean of the probabilities of it
            and its horizontal flip (`cnnzoo.deploy.inference.flip_averaged`):
            only where a flip keeps the class (not digits or text).

    Returns:
        `(accuracy, matrix)`: a float (None for an empty dataset) and the
        `[true, predicted]` counts.

    Example:

    >>> test = cnnzoo.data.image_folder("digits/test", image_size=32, validation_split=0, shuffle=False)
    >>> accuracy, matrix = evaluate(result.model, test.train, 10)  # doctest: +SKIP
    """
    fn = predictor(model)
    cm = np.zeros((num_classes, num_classes), np.int64)
    for x, y in dataset:
        x = np.asarray(x, np.float32)
        predicted = np.argmax(flip_averaged(fn, x) if tta else fn(x), axis=1)
        np.add.at(cm, (np.asarray(y, np.int64), predicted), 1)
    total = cm.sum()
    return (float(np.trace(cm) / total) if total else None), cm
