"""What `finetune` returns, and `evaluate`: accuracy and confusion matrix through the fast predict path
(`cnnzoo.explain.interpretation`)."""

from dataclasses import dataclass, field
from pathlib import Path

from cnnzoo.errors import ConfigError
from cnnzoo.finetuning.stages import Stage
from cnnzoo.utils.checks import is_int
from cnnzoo.utils.renames import renamed_arguments

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
        interpretation: `cnnzoo.Interpretation` of the final model on the
            validation images (`most_confused()`, `plot_top_losses(...)`), or None.
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
    interpretation: object = field(default=None, repr=False)

    @property
    def history(self):
        """`{"1:head": {"loss": [...], ...}, "2:top2": {...}}`, per stage."""
        return {f"{s.index}:{s.stage.name}": s.history for s in self.stages}


@renamed_arguments(dataset="data")
def evaluate(model, data, num_classes=None, tta=False, batch_size=32, runtime="auto"):
    """Accuracy and confusion matrix of `model` on labelled images, through the fast predict path.

    Every image of `data` is scored (`cnnzoo.interpret` does the same and
    keeps a look at the mistakes).

    Args:
        model: a `keras.Model` classifier or the path of a `.keras` file.
        data: labelled images, as `cnnzoo.interpret` takes them: an
            image-folder path (read whole: a test folder needs nothing else),
            `(x, y)` arrays, a `cnnzoo.data.Arrays` record (its test part), a
            `cnnzoo.data.ImageFolder`, `(x, y, x_val, y_val)` or `(train_ds,
            val_ds)` (the validation part), a tf.data dataset or an iterable of
            `(images, labels)` batches. Was `dataset` (still accepted until
            cnnzoo 0.3, with a `DeprecationWarning`).
        num_classes: optional int; default the model's output size (a value
            that differs from it is an error).
        tta: bool; classify each image by the mean of the probabilities of it
            and its horizontal flip (`cnnzoo.deploy.inference.flip_averaged`):
            only where a flip keeps the class (not digits or text).
        batch_size: int, images per forward pass.
        runtime: `"auto"`: a `.keras` path is scored on its verified ONNX
            export (cached; the compiled Keras call where the `export` extra is
            missing or the export disagrees, with one log line), a `keras.Model`
            in memory on the compiled Keras call; `"tensorflow"` / `"keras"`
            forces Keras; `"onnx"`, `"litert"` (see `cnnzoo.predict`).

    Returns:
        `(accuracy, matrix)`: a float (None for no images) and the
        `[true, predicted]` counts.

    Example:

    >>> accuracy, matrix = cnnzoo.evaluate("runs/demo/run/bird_classifier.keras", "runs/demo/digits/test")
    >>> round(accuracy, 4)  # doctest: +SKIP
    0.9972
    """
    from cnnzoo.explain.inputs import resolve_model
    from cnnzoo.explain.interpretation import interpret

    if not isinstance(model, (str, Path)):  # a path is loaded once, by `interpret`
        model = resolve_model(model)
    interpretation = interpret(model, data, batch_size=batch_size, tta=tta, keep=0, runtime=runtime)
    outputs = int(interpretation.model.outputs[0].shape[-1])
    if num_classes is not None and (not is_int(num_classes) or num_classes != outputs):
        raise ConfigError(
            f"`num_classes` must be None or the model's number of classes ({outputs}). "
            f"Received: num_classes={num_classes!r}. Leave it out."
        )
    return interpretation.accuracy, interpretation.confusion_matrix
