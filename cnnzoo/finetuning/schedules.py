"""How a stage's learning rate becomes an optimizer: schedules and per-unit rates.

- `learning_rate_schedule`: a stage's rate over its steps, as a built-in
  (serializable) Keras schedule: `"cosine"` (`CosineDecay` to 1%),
  `"one_cycle"` (`CosineDecay` with a linear warm-up from rate/25 over the
  first 25% of the steps, then cosine annealing to rate/1e5: fastai's
  `fit_one_cycle` with its `pct_start=0.25`, `div=25`, `div_final=1e5`, the
  warm-up linear where fastai's is a half cosine) or `"constant"`.
- Per-unit rates (`Stage(learning_rate=(lo, hi))`): the lowest trained
  backbone unit learns at `lo`, the head at `hi`, the units between at
  geometrically spaced rates (fastai's `slice(lo, hi)`, timm's layer decay).
  The learning rate itself is scaled per variable, not the gradient: Adam,
  RMSprop and Nadam are invariant to the gradient's scale, so a scaled
  gradient would change nothing there. `compile_stage` compiles with the
  zoo recipe (`cnnzoo.zoo.builders.compile_model`), then gives the model
  the same optimizer as a subclass whose public `update_step(gradient,
  variable, learning_rate)` multiplies `learning_rate` (the schedule's value
  at this step) by the variable's factor. Its variables are the base
  optimizer's, so epoch checkpoints save and restore them unchanged (resume),
  a `mixed_float16` model gets it inside a `LossScaleOptimizer`, and every
  optimizer of `cnnzoo.zoo.config.OPTIMIZERS` works. AdamW's decoupled weight
  decay stays at the base rate.
"""

import math

from cnnzoo.errors import ConfigError

__all__ = [
    "learning_rate_schedule",
    "unit_scales",
    "per_unit",
    "compile_stage",
    "final_rate",
    "ONE_CYCLE_WARMUP",
    "ONE_CYCLE_DIV",
    "ONE_CYCLE_DIV_FINAL",
]

ONE_CYCLE_WARMUP = 0.25  # share of the steps spent warming up (fastai's pct_start)
ONE_CYCLE_DIV = 25.0  # the warm-up starts at rate / 25
ONE_CYCLE_DIV_FINAL = 1e5  # and the annealing ends at rate / 1e5

_CLASSES = {}


def learning_rate_schedule(stage, steps_per_epoch, rate=None):
    """A stage's learning rate over its `stage.epochs * steps_per_epoch` steps.

    Args:
        stage: a `Stage`.
        steps_per_epoch: int.
        rate: the peak rate, default `stage.peak_rate` (pass the found rate of
            an `"auto"` stage).

    Returns:
        A float (`"constant"`) or a `keras.optimizers.schedules.CosineDecay`.

    Example:

    >>> learning_rate_schedule(Stage("all", 4, 1e-3, "one_cycle"), 25)(0)  # rate / 25 at step 0
    <tf.Tensor: shape=(), dtype=float32, numpy=4e-05>
    """
    import keras

    rate = stage.peak_rate if rate is None else float(rate)
    if rate is None:
        raise ConfigError(
            f"An 'auto' stage needs its found rate: run `cnnzoo.find_lr` or let `finetune` find it. "
            f"Received: stage={str(stage)!r}."
        )
    total = max(1, stage.epochs * steps_per_epoch)
    if stage.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(rate, decay_steps=total, alpha=0.01)
    if stage.schedule == "one_cycle":
        warmup = round(ONE_CYCLE_WARMUP * total) if total > 1 else 0
        return keras.optimizers.schedules.CosineDecay(
            rate / ONE_CYCLE_DIV,
            decay_steps=max(1, total - warmup),
            alpha=1 / ONE_CYCLE_DIV_FINAL,
            warmup_target=rate,
            warmup_steps=warmup,
        )
    return rate


def unit_scales(parts, stage):
    """The learning-rate factor of each trainable variable of a stage with a `(lo, hi)` rate.

    The top `k` units train (as `freezing.apply_stage` sets them): trained
    unit `j` (0 = the lowest) gets `(lo / hi) ** (1 - j / k)`, the head 1.

    Args:
        parts: the model's `Anatomy`, after `freezing.apply_stage`.
        stage: a `Stage`.

    Returns:
        A list of `(variable, factor)` for every trainable variable of the
        model; empty when the stage has one rate or trains the head only.

    Example:

    >>> [round(f, 3) for v, f in unit_scales(parts, Stage("all", 1, (1e-4, 1e-2)))][:1]  # doctest: +SKIP
    [0.01]
    """
    rate = stage.learning_rate
    n = len(parts.units)
    k = n if stage.unfreeze == "all" else min(stage.unfreeze, n)
    if not isinstance(rate, tuple) or k == 0:
        return []
    lo, hi = rate
    factor = {}
    for j, (_, layers) in enumerate(parts.units[n - k :]):
        for layer in layers:
            for v in layer.trainable_weights:
                factor[id(v)] = (v, (lo / hi) ** (1 - j / k))
    return [factor.get(id(v), (v, 1.0)) for v in parts.model.trainable_weights]


def per_unit(optimizer, scales):
    """The same optimizer (same class, configuration and variables) with per-variable rate factors.

    Args:
        optimizer: a Keras optimizer, or a `LossScaleOptimizer` around one
            (its inner optimizer is replaced; the loss scaling is kept).
        scales: `(variable, factor)` pairs from `unit_scales`.

    Returns:
        A new optimizer; `optimizer` itself when `scales` is empty.

    Example:

    >>> model.optimizer = per_unit(model.optimizer, unit_scales(parts, stage))  # doctest: +SKIP
    """
    import keras

    if not scales:
        return optimizer
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        config = optimizer.get_config()
        return keras.optimizers.LossScaleOptimizer(
            per_unit(optimizer.inner_optimizer, scales),
            initial_scale=config["initial_scale"],
            dynamic_growth_steps=config["dynamic_growth_steps"],
            name=config.get("name"),
        )
    new = _per_unit_class(type(optimizer)).from_config(optimizer.get_config())  # schedule, EMA, clipping kept
    new.set_unit_factors(scales)
    return new


def _per_unit_class(base):
    """`base` with `update_step` scaling the learning rate by the variable's factor (one class per base).

    The subclass derives from the public Keras class in `base`'s ancestry (`keras.optimizers.Adam`...): on
    PyTorch, `keras.optimizers.Adam()` makes the backend's own subclass, which updates every variable at once
    with `torch._foreach` calls and never calls `update_step`, so the factors would be ignored; a subclass of
    the public class is left alone there and steps each variable through `update_step`.
    """
    import keras

    if getattr(base, "per_unit_rates", False):
        base = base.__mro__[1]
    base = next((c for c in base.__mro__ if getattr(keras.optimizers, c.__name__, None) is c), base)
    if base in _CLASSES:
        return _CLASSES[base]

    class PerUnit(base):
        per_unit_rates = True

        def set_unit_factors(self, scales):
            """Sets the factor of each variable: `(variable, factor)` pairs (`unit_scales`)."""
            import tensorflow as tf

            strategy = tf.distribute.get_strategy()
            table = {}
            for v, factor in scales:  # the Keras variable, its tf.Variable, and each replica's copy
                for obj in (v, getattr(v, "value", v), *strategy.experimental_local_results(getattr(v, "value", v))):
                    table[id(obj)] = float(factor)
            self.__dict__["unit_factors"] = table  # a plain dict, not tracked as optimizer state
            self.__dict__["unit_keep"] = [v for v, _ in scales]  # keeps the ids above valid

        def update_step(self, gradient, variable, learning_rate):
            factor = self.unit_factors.get(id(variable))
            if factor is None:  # a variable the table does not know: a Keras change, never a silent 1.0
                raise ConfigError(
                    f"Per-unit learning rates cannot find variable {getattr(variable, 'name', variable)!r} "
                    f"in their table; this Keras version passes other objects to `update_step`. "
                    f"Use one learning rate per stage. Received: variable={variable!r}."
                )
            if factor != 1.0:
                learning_rate = learning_rate * factor
            return super().update_step(gradient, variable, learning_rate)

    PerUnit.__name__ = PerUnit.__qualname__ = f"PerUnit{base.__name__}"
    _CLASSES[base] = PerUnit
    return PerUnit


def compile_stage(model, stage, parts, steps_per_epoch, *, rate=None, steps_per_execution=1, **options):
    """Compiles the model a stage trains: its optimizer, schedule and per-unit rates.

    Args:
        model: the model `fit` runs (`freezing.stage_model(parts)` or the
            feature-cache head model), after `freezing.apply_stage`.
        stage: a `Stage`.
        parts: the full model's `Anatomy`.
        steps_per_epoch: int.
        rate: the peak rate when `stage.learning_rate` is `"auto"` (found).
        steps_per_execution: int.
        **options: passed to `compile_model` (`loss`, `metrics`,
            `ema_momentum`: the regularisation of `finetuning.regularisation`).

    Returns:
        `model`, compiled.

    Example:

    >>> compile_stage(freezing.stage_model(parts), Stage("all", 3, (1e-5, 1e-3)), parts, 40)  # doctest: +SKIP
    """
    from cnnzoo.backend import training as training_backend
    from cnnzoo.zoo.builders import compile_model

    compile_model(
        model,
        optimizer=stage.optimizer,
        learning_rate=learning_rate_schedule(stage, steps_per_epoch, rate),
        jit_compile=training_backend.jit_compile(),  # TensorFlow: off (XLA is slower on CPU); JAX: on
        steps_per_execution=steps_per_execution,
        **options,
    )
    trainable = {id(v) for v in model.trainable_weights}
    scales = [(v, f) for v, f in unit_scales(parts, stage) if id(v) in trainable]
    if scales and any(f != 1.0 for _, f in scales):
        model.optimizer = per_unit(model.optimizer, scales)
    return model


def final_rate(plan, state=None):
    """The learning rate the saved model is compiled with: the last stage's peak (found, for "auto")."""
    stage = plan[-1]
    if stage.peak_rate is not None:
        return stage.peak_rate
    found = (state.data.get("learning_rates") or {}).get(str(len(plan))) if state is not None else None
    return float(found) if found and math.isfinite(found) else 1e-3
