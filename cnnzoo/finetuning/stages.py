"""Fine-tuning stages as data.

A `Stage` says which part of the network trains, for how many epochs, at
which learning rate (one rate, a `(lo, hi)` range over the trained units, or
`"auto"`: the LR finder's suggestion) and under which schedule; `as_stages`
reads stages given as dicts or strings (`"head:5:1e-3,top2:3:1e-4,all:2:1e-5"`,
`"all:5:1e-5..1e-3:one_cycle"`); `auto_stages` picks a plan from the dataset
size. How a rate becomes an optimizer is in `cnnzoo.finetuning.schedules`. What a
stage does to a model (units, `trainable`, BatchNorm policy, head replacement) is in
`cnnzoo.finetuning.freezing`.
"""

import math
import re
from dataclasses import asdict, dataclass, replace

from cnnzoo.errors import ConfigError, closest
from cnnzoo.utils.checks import is_number
from cnnzoo.zoo.config import OPTIMIZERS

__all__ = ["Stage", "SCHEDULES", "as_stages", "auto_stages", "override", "check_rate"]

SCHEDULES = ("cosine", "constant", "one_cycle")
_STAGE_RE = re.compile(r"^(head|all|top(\d+)):(\d+)(?::([^:]+))?(?::([a-z_]+))?$")
_RATE_RULE = (
    "a number in (0, 10], a `(lo, hi)` pair of them with lo <= hi (per-unit rates: the lowest trained "
    "unit gets lo, the head hi), a string such as '1e-3' or '1e-5..1e-3', or 'auto' (the LR finder's "
    "suggestion)"
)


def check_rate(value, name="learning_rate"):
    """A learning rate as a `Stage` holds it: a float, a `(lo, hi)` tuple of floats, or `"auto"`.

    Args:
        value: a number, a `(lo, hi)` pair (list, tuple or `slice(lo, hi)`, as
            fastai writes it), a string (`"1e-3"`, `"1e-5..1e-3"`, `"auto"`).
        name: the argument named in an error.

    Returns:
        `float`, `(float, float)` or `"auto"`.

    Example:

    >>> check_rate("1e-5..1e-3"), check_rate([1e-5, 1e-3]), check_rate("auto")
    ((1e-05, 0.001), (1e-05, 0.001), 'auto')
    """
    rate = value
    if isinstance(rate, slice):
        rate = (rate.start, rate.stop)
    if isinstance(rate, str):
        text = rate.strip()
        if text == "auto":
            return "auto"
        try:
            rate = tuple(float(part) for part in text.split("..")) if ".." in text else float(text)
        except ValueError:
            rate = None
    if isinstance(rate, (list, tuple)) and len(rate) == 2 and all(is_number(r) for r in rate):
        lo, hi = float(rate[0]), float(rate[1])
        if 0 < lo <= hi <= 10:
            return (lo, hi)
    elif is_number(rate) and 0 < rate <= 10:
        return float(rate)
    raise ConfigError(f"`{name}` must be {_RATE_RULE}. Received: {name}={value!r}.")


@dataclass(frozen=True)
class Stage:
    """One fine-tuning stage: what trains, how long, how fast.

    Args:
        unfreeze: `0` trains the head only (backbone frozen, running in
            inference mode); an int `N` trains the top `N` backbone units
            and the head; `"all"` trains everything.
        epochs: int >= 1.
        learning_rate: the stage's peak learning rate: a float in (0, 10];
            a `(lo, hi)` pair (also `[lo, hi]`, `slice(lo, hi)` or
            `"lo..hi"`): per-unit rates, the lowest trained backbone unit at
            `lo`, the head at `hi`, the units between geometrically spaced
            (fastai's `slice(lo, hi)`, timm's layer decay; a head-only stage
            uses `hi`); or `"auto"`: `cnnzoo.find_lr`'s suggestion for this
            stage, found when it starts and kept in the run state.
        schedule: `"cosine"` (decay to 1% over the stage), `"one_cycle"`
            (linear warm-up from rate/25 over the first 25% of the steps,
            then cosine annealing to rate/1e5: fastai's `fit_one_cycle`) or
            `"constant"`.
        optimizer: one of `"adam"`, `"adamw"`, `"sgd"`, `"rmsprop"`, `"nadam"`.

    Example:

    >>> stages = [Stage(0, epochs=5, learning_rate=1e-3), Stage(2, epochs=3, learning_rate=1e-4)]
    >>> Stage.parse("top2:3:1e-4") == stages[1]
    True
    """

    unfreeze: object = 0
    epochs: int = 5
    learning_rate: object = 1e-3
    schedule: str = "cosine"
    optimizer: str = "adam"

    def __post_init__(self):
        u = self.unfreeze
        if not (u == "all" or (isinstance(u, int) and not isinstance(u, bool) and u >= 0)):
            raise ConfigError(
                f"`unfreeze` must be 0 (head only), a number of top backbone units, or 'all'. Received: unfreeze={u!r}."
            )
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"`epochs` of a stage must be an integer >= 1. Received: epochs={self.epochs!r}.")
        rate = check_rate(self.learning_rate)
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"`schedule` must be one of {', '.join(map(repr, SCHEDULES))}."
                f"{closest(self.schedule, SCHEDULES)} Received: schedule={self.schedule!r}."
            )
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"`optimizer` must be one of {', '.join(map(repr, OPTIMIZERS))}."
                f"{closest(self.optimizer, OPTIMIZERS)} Received: optimizer={self.optimizer!r}."
            )
        object.__setattr__(self, "learning_rate", rate)

    @property
    def name(self):
        """`"head"`, `"topN"` or `"all"`."""
        return "head" if self.unfreeze == 0 else "all" if self.unfreeze == "all" else f"top{self.unfreeze}"

    @property
    def peak_rate(self):
        """The head's rate (the top of a `(lo, hi)` range); None for `"auto"` until found."""
        rate = self.learning_rate
        return None if rate == "auto" else rate[1] if isinstance(rate, tuple) else rate

    def to_dict(self):
        return asdict(self)

    def __str__(self):
        rate = self.learning_rate
        text = rate if rate == "auto" else f"{rate[0]:g}..{rate[1]:g}" if isinstance(rate, tuple) else f"{rate:g}"
        return f"{self.name}:{self.epochs}:{text}"

    @classmethod
    def parse(cls, text):
        """Reads `"head:5:1e-3"`, `"top2:3:1e-4"`, `"all:2:1e-5..1e-3"`, `"all:5:auto:one_cycle"`.

        The learning rate (a number, `lo..hi` or `auto`) and the schedule are
        optional; without a rate a head stage gets 1e-3 and others 1e-4.
        """
        match = _STAGE_RE.match(str(text).strip())
        if not match:
            raise ConfigError(
                f"A stage must read `head|topN|all:EPOCHS[:LEARNING_RATE][:SCHEDULE]`, e.g. "
                f"'head:5:1e-3', 'top2:3:1e-4' or 'all:5:1e-5..1e-3:one_cycle'. Received: stage={text!r}."
            )
        kind, top, epochs, lr, schedule = match.groups()
        if lr in SCHEDULES and schedule is None:
            lr, schedule = None, lr
        unfreeze = 0 if kind == "head" else "all" if kind == "all" else int(top)
        if lr is None:
            rate = 1e-3 if unfreeze == 0 else 1e-4
        else:
            try:
                rate = check_rate(lr)
            except ConfigError:
                raise ConfigError(
                    f"The learning rate of a stage must be {_RATE_RULE}. Received: stage={text!r}."
                ) from None
        return cls(unfreeze, int(epochs), rate, schedule or "cosine")


def as_stages(stages):
    """Turns stages given as data into a tuple of `Stage`.

    Args:
        stages: a `Stage`, a dict of `Stage` fields, a string such as
            `"head:5:1e-3,top2:3:1e-4"`, or a list of these.

    Returns:
        A tuple of `Stage`.

    Example:

    >>> as_stages([{"unfreeze": 0, "epochs": 2}, "all:1:1e-5"])
    (Stage(unfreeze=0, epochs=2, ...), Stage(unfreeze='all', epochs=1, learning_rate=1e-05, ...))
    """
    if isinstance(stages, (Stage, dict, str)):
        stages = [stages]
    if isinstance(stages, str) or not hasattr(stages, "__iter__"):
        raise ConfigError(f"`stages` must be 'auto', a Stage, a dict or a list of them. Received: stages={stages!r}.")
    out = []
    for s in stages:
        if isinstance(s, Stage):
            out.append(s)
        elif isinstance(s, dict):
            unknown = set(s) - set(Stage.__dataclass_fields__)
            if unknown:
                raise ConfigError(
                    f"`stages` entries take the keys {', '.join(Stage.__dataclass_fields__)}. "
                    f"Received: {sorted(unknown)} in {s!r}."
                )
            out.append(Stage(**s))
        elif isinstance(s, str):
            out.extend(Stage.parse(part) for part in s.split(",") if part.strip())
        else:
            raise ConfigError(f"Each stage must be a Stage, a dict or a 'head:5:1e-3' string. Received: {s!r}.")
    if not out:
        raise ConfigError("`stages` must hold at least one stage. Received: stages=[].")
    return tuple(out)


def auto_stages(num_train, num_units, pretrained=True, epochs=None):
    """The schedule `stages="auto"` picks.

    A pretrained backbone: below 5,000 images fastai's `fine_tune` shape,
    one-cycle stages, one head epoch at 2e-3, then everything for 9 epochs at
    per-unit rates 1e-4 (lowest unit) .. 1e-3 (head); it beat the former
    `head:10:1e-3` / `head:5:1e-3,top2:5:1e-4` at equal or near-equal time
    (docs/finetune.md, "Learning rates"). From 5,000 images (not measured
    yet): head 3 at 1e-3, the top third of the units 3 at 1e-4, all 3 at
    1e-5 (the Keras guide's recipe). A backbone without units: head 10 at 1e-3.

    A backbone trained from scratch (`pretrained=False`) has nothing to keep:
    one stage trains everything at 1e-3, 15 epochs below 5,000 images, 10
    below 50,000, else 5.

    Args:
        num_train: int, training images.
        num_units: int, backbone units (see the module docstring).
        pretrained: bool, whether the backbone holds learned weights.
        epochs: optional int replacing every stage's epoch count.

    Returns:
        A tuple of `Stage`.

    Example:

    >>> [str(s) for s in auto_stages(2000, 5)]
    ['head:1:0.002', 'all:9:0.0001..0.001']
    """
    top = max(1, math.ceil(num_units / 3))
    if not pretrained:
        plan = [Stage("all", 15 if num_train < 5000 else 10 if num_train < 50000 else 5, 1e-3)]
    elif num_units == 0:
        plan = [Stage(0, 10, 1e-3)]
    elif num_train < 5000:
        plan = [Stage(0, 1, 2e-3, "one_cycle"), Stage("all", 9, (1e-4, 1e-3), "one_cycle")]
    else:
        plan = [Stage(0, 3, 1e-3), Stage(top, 3, 1e-4), Stage("all", 3, 1e-5)]
    return override(plan, epochs)


def override(plan, epochs=None, learning_rate=None):
    """`plan` with every stage's epochs and/or learning rate replaced (None keeps them).

    Args:
        plan: stages (anything `as_stages` reads).
        epochs: optional int >= 1.
        learning_rate: optional rate (see `check_rate`), e.g. `"auto"`.

    Returns:
        A tuple of `Stage`.

    Example:

    >>> [str(s) for s in override("head:5:1e-3,all:2:1e-5", learning_rate="auto")]
    ['head:5:auto', 'all:2:auto']
    """
    changes = {k: v for k, v in (("epochs", epochs), ("learning_rate", learning_rate)) if v is not None}
    return tuple(replace(s, **changes) for s in as_stages(plan))
