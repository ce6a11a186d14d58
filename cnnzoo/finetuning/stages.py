"""Fine-tuning stages as data.

A `Stage` says which part of the network trains, for how many epochs and at
which learning rate; `as_stages` reads stages given as dicts or strings
(`"head:5:1e-3,top2:3:1e-4,all:2:1e-5"`); `auto_stages` picks a schedule
from the dataset size. What a stage does to a model (units, `trainable`,
BatchNorm policy, head replacement) is in `cnnzoo.freezing`.
"""

import math
import re
from dataclasses import asdict, dataclass

from cnnzoo.zoo.config import OPTIMIZERS
from cnnzoo.errors import ConfigError, closest

__all__ = ["Stage", "SCHEDULES", "as_stages", "auto_stages"]

SCHEDULES = ("cosine", "constant")
_STAGE_RE = re.compile(r"^(head|all|top(\d+)):(\d+)(?::([0-9.eE+-]+))?$")


@dataclass(frozen=True)
class Stage:
    """One fine-tuning stage: what trains, how long, how fast.

    Args:
        unfreeze: `0` trains the head only (backbone frozen, running in
            inference mode); an int `N` trains the top `N` backbone units
            and the head; `"all"` trains everything.
        epochs: int >= 1.
        learning_rate: float > 0, the stage's initial learning rate.
        schedule: `"cosine"` (decay to 1% over the stage) or `"constant"`.
        optimizer: one of `"adam"`, `"adamw"`, `"sgd"`, `"rmsprop"`, `"nadam"`.

    Example:

    >>> stages = [Stage(0, epochs=5, learning_rate=1e-3), Stage(2, epochs=3, learning_rate=1e-4)]
    >>> Stage.parse("top2:3:1e-4") == stages[1]
    True
    """

    unfreeze: object = 0
    epochs: int = 5
    learning_rate: float = 1e-3
    schedule: str = "cosine"
    optimizer: str = "adam"

    def __post_init__(self):
        u = self.unfreeze
        if not (u == "all" or (isinstance(u, int) and not isinstance(u, bool) and u >= 0)):
            raise ConfigError(f"`unfreeze` must be 0 (head only), a number of top backbone units, or 'all'. "
                              f"Received: unfreeze={u!r}.")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"`epochs` of a stage must be an integer >= 1. Received: epochs={self.epochs!r}.")
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr <= 10:
            raise ConfigError(f"`learning_rate` of a stage must be a number in (0, 10]. "
                              f"Received: learning_rate={lr!r}.")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"`schedule` must be one of {', '.join(map(repr, SCHEDULES))}."
                              f"{closest(self.schedule, SCHEDULES)} Received: schedule={self.schedule!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"`optimizer` must be one of {', '.join(map(repr, OPTIMIZERS))}."
                              f"{closest(self.optimizer, OPTIMIZERS)} Received: optimizer={self.optimizer!r}.")
        object.__setattr__(self, "learning_rate", float(lr))

    @property
    def name(self):
        """`"head"`, `"topN"` or `"all"`."""
        return "head" if self.unfreeze == 0 else "all" if self.unfreeze == "all" else f"top{self.unfreeze}"

    def to_dict(self):
        return asdict(self)

    def __str__(self):
        return f"{self.name}:{self.epochs}:{self.learning_rate:g}"

    @classmethod
    def parse(cls, text):
        """Reads `"head:5:1e-3"`, `"top2:3:1e-4"`, `"all:2:1e-5"` (learning rate optional)."""
        match = _STAGE_RE.match(str(text).strip())
        if not match:
            raise ConfigError(f"A stage must read `head|topN|all:EPOCHS[:LEARNING_RATE]`, e.g. 'head:5:1e-3' or "
                              f"'top2:3:1e-4'. Received: stage={text!r}.")
        kind, top, epochs, lr = match.groups()
        unfreeze = 0 if kind == "head" else "all" if kind == "all" else int(top)
        try:
            rate = float(lr) if lr else (1e-3 if unfreeze == 0 else 1e-4)
        except ValueError:
            raise ConfigError(f"The learning rate of a stage must be a number. Received: stage={text!r}.") from None
        return cls(unfreeze, int(epochs), rate)


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
                raise ConfigError(f"`stages` entries take the keys {', '.join(Stage.__dataclass_fields__)}. "
                                  f"Received: {sorted(unknown)} in {s!r}.")
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

    A pretrained backbone (transfer learning, the Keras guide's recipe):

    | training images | stages                                                  |
    |-----------------|---------------------------------------------------------|
    | < 500           | head 10 epochs at 1e-3                                  |
    | 500 - 4,999     | head 5 at 1e-3, then the top third of the units 5 at 1e-4 |
    | >= 5,000        | head 3 at 1e-3, top third 3 at 1e-4, all 3 at 1e-5      |

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
    ['head:5:0.001', 'top2:5:0.0001']
    """
    top = max(1, math.ceil(num_units / 3))
    if not pretrained:
        plan = [Stage("all", 15 if num_train < 5000 else 10 if num_train < 50000 else 5, 1e-3)]
    elif num_train < 500 or num_units == 0:
        plan = [Stage(0, 10, 1e-3)]
    elif num_train < 5000:
        plan = [Stage(0, 5, 1e-3), Stage(top, 5, 1e-4)]
    else:
        plan = [Stage(0, 3, 1e-3), Stage(top, 3, 1e-4), Stage("all", 3, 1e-5)]
    if epochs is not None:
        plan = [Stage(s.unfreeze, epochs, s.learning_rate, s.schedule, s.optimizer) for s in plan]
    return tuple(plan)
