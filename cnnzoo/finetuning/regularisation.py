"""Regularisation in the fine-tuning recipe: label smoothing, MixUp/CutMix, weight EMA.

`Regularisation` holds `finetune`'s options and says what each stage needs:

- its **training batches**: with label smoothing, MixUp or CutMix, integer
  labels become one-hot (then mixed) targets (`cnnzoo.data.mixing`);
  validation batches keep their integer labels, always.
- its **loss and metric**: `cross_entropy` is plain cross-entropy that takes
  either form: label distributions (training, smoothed by `label_smoothing`
  through `keras.losses.categorical_crossentropy`) or integer labels
  (validation: `sparse_categorical_crossentropy`, unsmoothed). So `val_loss`
  means what it meant without regularisation and compares across runs;
  `loss` includes the smoothing and the mixing. `accuracy` compares the
  prediction with the label (the larger share, for mixed targets).
- its **optimizer**: `use_ema=True` with `ema_momentum`; `SwapEMAWeights`
  puts the averaged weights in the model for each validation, and
  `finalize` leaves them in it when the stage ends (also after a resume that
  had no epoch left to run), so the stage checkpoint, the BatchNorm
  re-estimation and the saved model all use them. The averages are optimizer
  variables: epoch checkpoints hold them, and a resumed stage continues them.
"""

from dataclasses import dataclass

from cnnzoo.data.mixing import check_alpha, soft_targets
from cnnzoo.errors import ConfigError
from cnnzoo.utils.checks import is_number

__all__ = ["Regularisation", "cross_entropy", "label_accuracy", "ema_momentum_for"]


@dataclass(frozen=True)
class Regularisation:
    """`finetune`'s regularisation options, checked.

    Args:
        label_smoothing: float in [0, 1): share of each target spread evenly over the classes.
        mixup: float alpha >= 0 of MixUp (0: off).
        cutmix: float alpha >= 0 of CutMix (0: off).
        ema: False (or 0), True (momentum from the stage length, see
            `ema_momentum_for`) or a momentum in (0, 1).

    Example:

    >>> Regularisation(label_smoothing=0.1, mixup=0.2).soft
    True
    """

    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    ema: object = False

    def __post_init__(self):
        ls = self.label_smoothing
        if not is_number(ls) or not 0 <= ls < 1:
            raise ConfigError(
                f"`label_smoothing` must be a number in [0, 1), e.g. 0.1. Received: label_smoothing={ls!r}."
            )
        object.__setattr__(self, "label_smoothing", float(ls))
        object.__setattr__(self, "mixup", check_alpha(self.mixup, "mixup"))
        object.__setattr__(self, "cutmix", check_alpha(self.cutmix, "cutmix"))
        ema = self.ema
        if ema is None or (is_number(ema) and ema == 0):
            ema = False  # 0 is off, as for mixup and cutmix
        if not (isinstance(ema, bool) or (is_number(ema) and 0 < ema < 1)):
            raise ConfigError(
                f"`ema` must be False, True (momentum from the stage length) or a momentum in "
                f"(0, 1), e.g. 0.99. Received: ema={self.ema!r}."
            )
        object.__setattr__(self, "ema", ema if isinstance(ema, bool) else float(ema))

    @property
    def mixed(self):
        """Whether training batches are mixed (MixUp or CutMix): they then need images, not cached features."""
        return bool(self.mixup or self.cutmix)

    @property
    def soft(self):
        """Whether training targets are label distributions rather than integer labels."""
        return bool(self.label_smoothing or self.mixed)

    @property
    def active(self):
        return bool(self.soft or self.ema)

    def fingerprint(self):
        """The options that change a run, for its fingerprint (empty when none is on)."""
        return {
            k: v
            for k, v in (
                ("label_smoothing", self.label_smoothing),
                ("mixup", self.mixup),
                ("cutmix", self.cutmix),
                ("ema", self.ema),
            )
            if v
        }

    def training_batches(self, dataset, num_classes, seed=0):
        """The stage's training dataset: as given, or with one-hot (and mixed) targets."""
        if not self.soft:
            return dataset
        return soft_targets(dataset, num_classes, mixup=self.mixup, cutmix=self.cutmix, seed=seed)

    def compile_args(self, steps):
        """Keyword arguments for `compile_model` in a stage of `steps` training steps."""
        args = {}
        if self.soft:
            args.update(loss=cross_entropy(self.label_smoothing), metrics=[label_accuracy()])
        if self.ema:
            args["ema_momentum"] = ema_momentum_for(steps) if self.ema is True else self.ema
        return args

    def callbacks(self):
        """Callbacks for a stage's `fit`: validation on the averaged weights."""
        if not self.ema:
            return []
        import keras

        return [keras.callbacks.SwapEMAWeights(swap_on_epoch=False)]

    def finalize(self, model):
        """Puts the averaged weights into `model` (no-op without EMA; idempotent)."""
        optimizer = getattr(model, "optimizer", None)
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
        if self.ema and optimizer is not None and getattr(optimizer, "use_ema", False) and optimizer.built:
            optimizer.finalize_variable_values(model.trainable_variables)


def ema_momentum_for(steps):
    """The momentum `ema=True` uses for a stage of `steps` steps: an average over about a tenth of
    the stage, `1 - 10 / steps`, kept in [0.9, 0.9999].

    Keras' average has no warm-up: a momentum of 0.999 over 300 steps would
    keep much of the initial weights in the average.

    Example:

    >>> ema_momentum_for(540)
    0.9814814814814815
    """
    return float(min(0.9999, max(0.9, 1.0 - 10.0 / max(int(steps), 1))))


def cross_entropy(label_smoothing=0.0):
    """Cross-entropy taking integer labels (unsmoothed) or label distributions (smoothed by `label_smoothing`).

    Example:

    >>> model.compile("adam", loss=cross_entropy(0.1), metrics=[label_accuracy()])  # doctest: +SKIP
    """
    import keras

    def cross_entropy(y_true, y_pred):  # Keras wraps a function (and names the loss `loss` in the logs)
        if _distributions(y_true, y_pred):  # static shapes: one branch per traced graph
            return keras.losses.categorical_crossentropy(y_true, y_pred, label_smoothing=label_smoothing)
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred)

    return cross_entropy


def label_accuracy():
    """Accuracy named `accuracy`, for integer labels or label distributions (their largest share)."""
    import keras

    def accuracy(y_true, y_pred):
        if _distributions(y_true, y_pred):
            y_true = keras.ops.argmax(y_true, axis=-1)
        return keras.metrics.sparse_categorical_accuracy(y_true, y_pred)

    return keras.metrics.MeanMetricWrapper(accuracy, name="accuracy")


def _distributions(y_true, y_pred):
    """Whether `y_true` holds label distributions `[B, K]` rather than integer labels `[B]` or `[B, 1]`."""
    return len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == y_pred.shape[-1] != 1
