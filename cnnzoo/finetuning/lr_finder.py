"""The learning-rate finder: `cnnzoo.find_lr(model, data)`.

An exponential sweep (Smith 2015, as fastai's `lr_find`): train one batch at
each of `steps` rates from `start` to `end`, record the loss, smooth it (an
exponential moving average with bias correction, beta 0.98), and stop once
the smoothed loss exceeds `diverge` times its minimum. The suggestion is
fastai's "valley" rule: the longest stretch over which the smoothed loss
keeps falling, 1/3 + 1/6 of the way down it (its default since fastai 2.5,
because the steepest-gradient point of a noisy curve jumps around and often
lands an order of magnitude too low or on a spike). The first 10% of the
points and the last 5 (the blow-up) are left out of the rule, as in fastai.

The weights (BatchNorm statistics included), the layers' `trainable` flags
and the caller's random state are as before when it returns; the sweep
trains a separate compiled graph, so a given model keeps its own optimizer.
`finetune` runs the same sweep for a stage with `learning_rate="auto"`
(`stage_rate`) and keeps the suggestion in the run state.
"""

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from cnnzoo import _compat
from cnnzoo.data.options import DataOptions
from cnnzoo.errors import ConfigError
from cnnzoo.finetuning import freezing, schedules
from cnnzoo.finetuning.stages import Stage, as_stages
from cnnzoo.utils.checks import is_number
from cnnzoo.utils.renames import renamed_arguments
from cnnzoo.utils.seeding import seeded

__all__ = ["find_lr", "LRFinderResult", "sweep", "valley", "stage_rate", "plot_sweep"]

log = logging.getLogger("cnnzoo.finetuning")

SMOOTHING = 0.98


@dataclass(frozen=True)
class LRFinderResult:
    """What `find_lr` found.

    Attributes:
        learning_rates: tuple of the rates tried, one per step, increasing.
        losses: tuple of the smoothed losses at those rates.
        raw_losses: tuple of the batch losses as measured.
        suggestion: float, the suggested peak learning rate (fastai's
            "valley" rule; see the module docstring).
        stage: the `Stage` whose trainable part was swept.
        plot: `Path` of the loss-vs-rate PNG, or None.
    """

    learning_rates: tuple
    losses: tuple
    raw_losses: tuple
    suggestion: float
    stage: Stage
    plot: Path = None


@renamed_arguments(model_or_name="model", plot="out")
def find_lr(
    model,
    data,
    *,
    stage=None,
    start=1e-7,
    end=10.0,
    steps=100,
    diverge=4.0,
    out=None,
    num_classes=None,
    input_shape=None,
    weights=None,
    pretrained=None,
    class_names=None,
    batch_size=DataOptions.batch_size,
    validation_split=DataOptions.validation_split,
    augment=False,
    dtype=None,
    seed=0,
):
    """Sweeps the learning rate exponentially and suggests one (fastai's `lr_find`).

    Args:
        model: as in `cnnzoo.finetune`: a zoo name, a zoo `keras.Model`
            or a saved `.keras` path (`model_or_name=` until cnnzoo 0.3). A head with another class count than the
            data's is replaced for the sweep (as `finetune` does); a given model
            is left as it was.
        data: anything `cnnzoo.finetune` accepts; the sweep uses its training
            batches (the same images `finetune` trains on, for the same seed).
        stage: what trains during the sweep: a `Stage`, a dict or a string
            (`"all"`, `"head:1"`, `"top2:1:1e-5..1e-3"`: only its unfreeze,
            optimizer and `(lo, hi)` ratio matter; a range sweeps the head's
            rate with the lower units scaled down as in training). Default:
            the head alone for a pretrained backbone (what the first stage of
            `finetune` trains), the whole model from scratch.
        start, end: the first and last rate, `0 < start < end <= 10`.
        steps: int >= 10, batches in the sweep (the data repeats as needed).
        diverge: stop once the smoothed loss exceeds this times its minimum.
        out: optional path of a PNG of loss against rate (log scale), the
            suggestion marked (`plot=` until cnnzoo 0.3).
        num_classes, input_shape, weights, pretrained, class_names,
        batch_size, validation_split, dtype: as in `cnnzoo.finetune` (the
            defaults of `cnnzoo.data.DataOptions`).
        augment: as in `cnnzoo.finetune`, but False by default: the sweep
            reads the images as they are, one batch per rate.
        seed: int, for the model, split and shuffling; the caller's random
            state is restored afterwards.

    Returns:
        An `LRFinderResult`.

    Example:

    >>> found = cnnzoo.find_lr("digits_cnn", cnnzoo.data.digits(), input_shape=(32, 32, 1), out="lr.png")
    >>> found.suggestion  # doctest: +SKIP
    0.0021
    """
    # long: the signature, one keyword a line as ruff writes it, is 21 of the lines; the body is 48.
    from cnnzoo.data import pipeline as data_pipeline
    from cnnzoo.finetuning.models import resolve_model
    from cnnzoo.zoo.precision import check_dtype

    if not (_positive(start) and _positive(end) and start < end <= 10):
        raise ConfigError(
            f"`start` and `end` must be rates with 0 < start < end <= 10. Received: start={start!r}, end={end!r}."
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 10:
        raise ConfigError(f"`steps` must be an integer >= 10. Received: steps={steps!r}.")
    if not _positive(diverge) or diverge <= 1:
        raise ConfigError(f"`diverge` must be a number > 1. Received: diverge={diverge!r}.")
    policy = check_dtype(dtype)
    with seeded(seed):
        model, pretrained = resolve_model(model, data, input_shape, weights, pretrained, None, policy)
        shape = tuple(model.inputs[0].shape[1:])
        inputs = data_pipeline.prepare(
            data,
            None if None in shape else shape,
            batch_size=batch_size,
            validation_split=validation_split,
            seed=seed,
            augment=augment,
            class_names=class_names,
        )
        count, names = data_pipeline.settle_classes(
            inputs, num_classes, class_names, freezing.anatomy(model).head.num_classes
        )
        swept, _ = freezing.replace_head(model, count, names)
        plan = Stage(0 if pretrained else "all", 1) if stage is None else _one_stage(stage)
        parts = freezing.anatomy(swept)
        flags = [(layer, layer.trainable) for layer in _compat.flatten_layers(swept)]
        try:
            freezing.apply_stage(parts, plan, freeze_batchnorm=pretrained)
            net = freezing.stage_model(parts)
            if net is model:  # a given model keeps its own compiled optimizer
                import keras

                net = keras.Model(net.inputs, net.outputs, name=net.name)
            rates, raw = sweep(net, parts, plan, inputs.train, start=start, end=end, steps=steps, diverge=diverge)
        finally:
            for layer, value in flags:  # parents before children: each ends with its own flag
                layer.trainable = value
    smooth = smoothed(raw)
    suggestion = valley(rates, smooth)
    path = plot_sweep(rates, smooth, suggestion, out) if out is not None else None
    log.info("learning-rate finder (%s, %d steps): suggests %.3g", plan.name, len(rates), suggestion)
    return LRFinderResult(tuple(rates), tuple(smooth), tuple(raw), suggestion, plan, path)


def _positive(value):
    return is_number(value) and value > 0


def _one_stage(stage):
    if isinstance(stage, str) and ":" not in stage:  # "head", "top2", "all": the epochs do not matter
        stage = f"{stage.strip()}:1"
    found = as_stages(stage)
    if len(found) != 1:
        raise ConfigError(f"`stage` must be one stage. Received: stage={stage!r}.")
    found = found[0]
    if found.learning_rate == "auto":  # only the (lo, hi) ratio matters in a sweep
        found = Stage(found.unfreeze, found.epochs, 1e-3, found.schedule, found.optimizer)
    return found


def sweep(model, parts, stage, train, *, start=1e-7, end=10.0, steps=100, diverge=4.0, seed=0):
    """Trains `model` one batch per rate, rates growing exponentially; restores its weights after.

    Args:
        model: the compiled-or-not model a stage trains (`freezing.stage_model`
            or the feature-cache head model); it is compiled here.
        parts: the full model's `Anatomy` (for per-unit rates).
        stage: the `Stage` (optimizer, per-unit range).
        train: a dataset of `(images, labels)` batches.
        start, end, steps, diverge: as in `find_lr`.
        seed: the sweep runs under `seeded(seed)`: the caller's random state
            continues unaffected.

    Returns:
        `(rates, losses)`: lists, as far as the sweep went.
    """
    import keras

    from cnnzoo.backend import training as training_backend

    run = Stage(stage.unfreeze, 1, _scaled(stage, start), "constant", stage.optimizer)
    saved = model.get_weights()
    rates, losses = [], []
    factor = (end / start) ** (1 / (steps - 1))
    with seeded(seed):
        schedules.compile_stage(model, run, parts, 1)
        try:
            best, average = math.inf, 0.0
            batches = iter(train.repeat())
            for i in range(steps):
                rate = start * factor**i
                model.optimizer.learning_rate = rate
                x, y = training_backend.host_batch(next(batches))  # tf.data tensors, as this backend takes them
                loss = float(keras.ops.convert_to_numpy(model.train_on_batch(x, y, return_dict=True)["loss"]))
                rates.append(rate)
                losses.append(loss)
                average = SMOOTHING * average + (1 - SMOOTHING) * loss
                smooth = average / (1 - SMOOTHING ** (i + 1))
                if not math.isfinite(smooth) or (i > 0 and smooth > diverge * best):
                    break
                best = min(best, smooth)
        finally:
            model.set_weights(saved)
    return rates, losses


def _scaled(stage, rate):
    """`stage`'s rate form at peak `rate`: a range keeps its lo/hi ratio."""
    if isinstance(stage.learning_rate, tuple):
        lo, hi = stage.learning_rate
        return (rate * lo / hi, rate)
    return rate


def smoothed(losses, beta=SMOOTHING):
    """Exponential moving average with bias correction (fastai's smoothing of the sweep)."""
    out, average = [], 0.0
    for i, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta ** (i + 1)))
    return out


def valley(rates, losses):
    """fastai's "valley" suggestion: a third plus a sixth of the way down the longest falling stretch.

    Args:
        rates: the rates of the sweep, increasing.
        losses: the smoothed losses.

    Returns:
        A float rate.

    Example:

    >>> valley([1e-4, 1e-3, 1e-2, 1e-1, 1.0], [2.0, 1.9, 1.2, 0.9, 5.0])  # doctest: +SKIP
    """
    n = len(rates)
    lo, hi = (n // 10, n - 5) if n > 20 else (0, n)
    rates, losses = list(rates[lo:hi]), [x if math.isfinite(x) else math.inf for x in losses[lo:hi]]
    if len(rates) < 2:
        return float(rates[0] if rates else 1e-3)
    longest = [1] * len(losses)  # longest decreasing run ending at each point
    start = end = 0
    for i in range(1, len(losses)):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
        if longest[end] < longest[i]:
            end, start = i, i - longest[i]
    section = (end - start) / 3
    return float(rates[min(len(rates) - 1, start + int(section) + int(section / 2))])


def plot_sweep(rates, losses, suggestion, path):
    """Writes the loss-vs-rate plot (log x axis, the suggestion marked); returns the `Path`."""
    from cnnzoo.utils.plotting import figure, save_png

    fig = figure((6.4, 4.2))
    ax = fig.subplots()
    ax.plot(rates, losses, lw=1.5)
    ax.set_xscale("log")
    ax.axvline(suggestion, color="tab:red", ls="--", lw=1, label=f"suggestion {suggestion:.2g} (valley)")
    finite = [x for x in losses if math.isfinite(x)]
    if finite:
        ax.set_ylim(min(finite) - 0.05 * abs(min(finite)), min(max(finite), 4 * min(finite) + 1e-9) * 1.05)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    ax.set_title("learning-rate finder")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return save_png(fig, path)


def stage_rate(index, stage, model, parts, train, state, seed=0, steps=100):
    """The peak rate of stage `index`: its own, or for `"auto"` the finder's suggestion.

    A found rate is kept in the run state (`learning_rates`), so a resumed run
    uses the same one without sweeping again. Under a multi-worker strategy
    every worker sweeps in step, each on its own shard, with the batch losses
    all-reduced: all find the same rate, the chief records it, and on resume
    every worker reads it from the shared run directory.
    """
    if stage.learning_rate != "auto":
        return None
    kept = (state.data.get("learning_rates") or {}).get(str(index))
    if kept is not None:
        log.info("stage %d (%s): learning rate %.3g, found before (run state)", index, stage.name, kept)
        return float(kept)
    rates, raw = sweep(model, parts, _one_stage(stage), train, steps=steps, seed=seed)
    found = valley(rates, smoothed(raw))
    state.data.setdefault("learning_rates", {})[str(index)] = found
    state.save()
    log.info(
        "stage %d (%s): learning rate %.3g found by the LR finder (%d steps)", index, stage.name, found, len(rates)
    )
    return found
