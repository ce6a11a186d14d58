"""BatchNorm statistics that converge within a stage, and a warning when a run ends near chance.

A BatchNormalization layer that trains keeps moving averages of its batch
statistics, `moving = momentum * moving + (1 - momentum) * batch`, and uses
them in inference mode (evaluation, `predict`). After `steps` updates the
initial values (mean 0, variance 1) still weigh `momentum ** steps`:
keras.applications' MobileNetV3 uses momentum 0.999, so after 270 steps 76%
of its statistics are still the initial ones, and a model that fits its
training data 100% answers uniform probabilities in inference mode.

When a stage trains BatchNorm layers whose initial statistics would weigh
more than `MAX_INITIAL_WEIGHT` after the stage's steps, `finetune` does two
things. During `fit`, `converging_batchnorm` lowers their momentum to
`1 - min(0.5, 5 / steps)` (the initial values then weigh about e**-5 < 1%).
That alone is not enough: measured on MobileNetV3-Small from scratch on the
digits, the validation accuracy stays at 10% with it, as the averages mix
statistics of older weights through 50 layers. So after the stage,
`precise_statistics` re-estimates them over the training images (not
augmented) with the final weights ("precise BN": a plain average, weights
untouched): 96% after 2 epochs. Before each epoch's validation, `before_validation`
re-estimates them over `EPOCH_IMAGES` training images, so the history reads what
the model scores. All restore each layer's own momentum, so the saved model keeps
its configuration.
`chance_warnings` names what went wrong when a run ends near chance on the
validation data while it fits its training data.
"""

import contextlib
import logging
import math
import warnings

from cnnzoo.errors import TrainingWarning
from cnnzoo.finetuning.freezing import batchnorm_layers

__all__ = [
    "MAX_INITIAL_WEIGHT",
    "EPOCH_IMAGES",
    "adapted_momentum",
    "converging_batchnorm",
    "precise_statistics",
    "before_validation",
    "chance_warnings",
    "warn",
]

log = logging.getLogger("cnnzoo.finetuning")

MAX_INITIAL_WEIGHT = 0.01  # initial statistics may weigh at most this much at the end of a stage
EPOCH_IMAGES = 256  # training images each re-estimate before an epoch's validation reads
ADAPT = True  # tests switch it off to reproduce the unadapted run


def adapted_momentum(momentum, steps):
    """The momentum a layer gets for `steps` updates, or None when its own converges.

    Example:

    >>> adapted_momentum(0.999, 270)
    0.9814814814814815
    >>> adapted_momentum(0.9, 270) is None
    True
    """
    steps = max(1, int(steps))
    if momentum <= 0 or momentum**steps <= MAX_INITIAL_WEIGHT:
        return None
    return min(momentum, 1.0 - min(0.5, 5.0 / steps))


@contextlib.contextmanager
def converging_batchnorm(model, steps, stage_name=""):
    """Within the block, every BatchNorm layer of `model` that trains forgets its initial statistics in `steps`.

    Set it after `apply_stage` and before `fit` builds its training function
    (the momentum is read when the step is traced).

    Args:
        model: the `keras.Model` being trained (after `apply_stage`).
        steps: int, the training steps the stage will take.
        stage_name: for the log line.

    Yields:
        The list of `(layer, own momentum, momentum used)` changed.
    """
    changed = []
    if ADAPT:
        for bn in batchnorm_layers(model):
            if not bn.trainable:  # inference mode: its statistics are not updated
                continue
            new = adapted_momentum(float(bn.momentum), steps)
            if new is not None:
                changed.append((bn, bn.momentum, new))
                bn.momentum = new
    if changed:
        olds = sorted({float(old) for _, old, _ in changed})
        log.info(
            "stage %s: %d BatchNorm layers with momentum %s would keep %.0f%% of their initial statistics "
            "after %d steps: momentum %.4g for this stage (precise BatchNorm statistics)",
            stage_name,
            len(changed),
            "/".join(f"{m:g}" for m in olds),
            100 * max(olds) ** max(1, steps),
            steps,
            changed[0][2],
        )
    try:
        yield changed
    finally:
        for bn, old, _ in changed:
            bn.momentum = old


def precise_statistics(model, dataset, steps, stage_name=""):
    """Re-estimates the moving statistics of `model`'s training BatchNorm layers over `dataset` ("precise BN").

    Done when the stage's `steps` were too few for a layer's momentum
    (`adapted_momentum` not None): a lowered momentum alone still leaves
    statistics averaged over older weights, which a deep network from scratch
    (MobileNetV3) does not survive. Every batch runs through `model` in
    training mode, weights untouched, with momentum `k / (k + 1)` at batch `k`:
    the moving statistics become the plain average over the data. Layers'
    momentum is restored. Not done under a `tf.distribute` strategy (the
    lowered momentum of `converging_batchnorm` serves there).

    Args:
        model: the model the stage trained (`stage_model`, whose frozen bottom
            runs in inference mode).
        dataset: batches of `(images, labels)` or images, ideally not augmented.
        steps: int, the training steps the stage took.
        stage_name: for the log line.

    Returns:
        The number of layers re-estimated.
    """
    import tensorflow as tf

    layers = [
        bn for bn in batchnorm_layers(model) if bn.trainable and adapted_momentum(float(bn.momentum), steps) is not None
    ]
    if not ADAPT or not layers or dataset is None or tf.distribute.has_strategy():
        return 0
    images = _reestimate(layers, model, dataset)
    log.info(
        "stage %s: re-estimated the moving statistics of %d BatchNorm layers over %d training images "
        "(momentum %s too high for %d steps)",
        stage_name,
        len(layers),
        images,
        "/".join(sorted({f"{m:g}" for m in (bn.momentum for bn in layers)})),
        steps,
    )
    return len(layers)


def before_validation(model, changed, dataset, max_images=EPOCH_IMAGES):
    """Callbacks for a stage's `fit`: precise statistics before each epoch's validation.

    Without them the per-epoch `val_accuracy` of a network whose statistics
    lag its weights (MobileNetV3 from scratch) reads chance every epoch, while
    the model `finetune` returns, re-estimated after the stage, scores 97%:
    the history, a user's `EarlyStopping` and the epoch checkpoints would all
    see the stale statistics. Re-estimated over at most `max_images` training
    images (precise BN needs a few hundred), after the EMA weights are swapped
    in, only for the layers `converging_batchnorm` changed, not under a
    `tf.distribute` strategy.

    Args:
        model: the model `fit` trains.
        changed: what `converging_batchnorm` yielded.
        dataset: batches of training images, ideally not augmented.
        max_images: int, the images each re-estimate reads.

    Returns:
        A list of zero or one `keras.callbacks.Callback`.
    """
    import keras
    import tensorflow as tf

    if not ADAPT or not changed or dataset is None or tf.distribute.has_strategy():
        return []
    layers = [bn for bn, _, _ in changed]

    class PreciseBatchNormBeforeValidation(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            _reestimate(layers, model, dataset, max_images)

    return [PreciseBatchNormBeforeValidation()]


def _reestimate(layers, model, dataset, max_images=None):
    """Runs `dataset` through `model` in training mode with momentum `k / (k + 1)` at batch `k` (the plain
    average); returns the images read. The layers' momentum is restored."""
    own = [bn.momentum for bn in layers]
    images = 0
    try:
        for k, batch in enumerate(dataset):
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            for bn in layers:
                bn.momentum = k / (k + 1)
            model(x, training=True)
            images += int(x.shape[0])
            if max_images is not None and images >= max_images:
                break
    finally:
        for bn, momentum in zip(layers, own):
            bn.momentum = momentum
    return images


def chance_warnings(results, val_accuracy, num_classes, model=None):
    """Messages for a run that fits its training data but is near chance on its validation data.

    Near chance: validation accuracy below `min(1.5 / num_classes, 1 / num_classes + 0.1)`
    while the last epoch's training accuracy is above 0.9.

    Args:
        results: the run's `StageResult`s (their `history`).
        val_accuracy: the final model's validation accuracy, or None (then the
            last epoch's `val_accuracy` is used).
        num_classes: int.
        model: the trained model; BatchNorm layers in it name them as the likely cause.

    Returns:
        A tuple of str (empty for a healthy run).
    """
    train = [v for r in results for v in r.history.get("accuracy", [])]
    if val_accuracy is None:
        history = [v for r in results for v in r.history.get("val_accuracy", [])]
        val_accuracy = history[-1] if history else None
    if not train or val_accuracy is None or num_classes < 2:
        return ()
    chance = 1.0 / num_classes
    if not (train[-1] > 0.9 and val_accuracy < min(1.5 * chance, chance + 0.1)) or math.isnan(val_accuracy):
        return ()
    has_bn = model is not None and bool(batchnorm_layers(model))
    cause = (
        "BatchNormalization moving statistics that have not converged: the model fits in training mode but "
        "its inference-mode statistics are still near their initial values (high BatchNorm momentum, too "
        "few steps), or overfitting"
        if has_bn
        else "overfitting, or validation data unlike the training data"
    )
    return (
        f"validation accuracy {val_accuracy:.2%} is near chance ({chance:.2%} for {num_classes} classes) while "
        f"the last epoch's training accuracy is {train[-1]:.2%}. Likely cause: {cause}. Fix: train more epochs, "
        f"lower the BatchNorm momentum (e.g. 0.9) of a model trained from scratch, use pretrained weights "
        f'(`weights="imagenet"`), or augment the data (`augment=True`).',
    )


def warn(messages):
    """Emits each message as a `cnnzoo.TrainingWarning` and a log warning."""
    for message in messages:
        log.warning("%s", message)
        warnings.warn(message, TrainingWarning, stacklevel=4)
