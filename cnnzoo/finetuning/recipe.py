"""`Recipe`: how `cnnzoo.finetune` trains, as one frozen, validated object.

A recipe holds the plan (stages, epochs, learning rate), the regularisation,
the BatchNorm policy, feature caching, precision, steps per execution, the
data options (`cnnzoo.data.DataOptions`) and the seed. `finetune`'s keywords
are its fields, one to one, and so are the CLI's flags (their defaults are
read from here). A run saves the recipe it ran as `recipe.json`, and the
run's fingerprint is the recipe's (`Recipe.fingerprint`), so an option added
here is part of both without being listed anywhere else.

Importing this module imports no TensorFlow.
"""

import dataclasses
import functools
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path

from cnnzoo.data.options import DataOptions
from cnnzoo.errors import ConfigError
from cnnzoo.finetuning import stages as stages_lib
from cnnzoo.finetuning.regularisation import Regularisation
from cnnzoo.utils.checks import check_int

__all__ = ["Recipe", "RECIPE_FILE", "recipe_keywords"]

RECIPE_FILE = "recipe.json"
_FORMAT = 1  # bumped when a saved recipe's meaning changes
_SAME_RESULTS = {"fingerprint": False}  # how fast a run goes, not what it trains: not in the fingerprint


@dataclass(frozen=True)
class Recipe:
    """How `cnnzoo.finetune` trains: every option that is not the model, the data or the run directory.

    Args:
        stages: `"auto"` (from the data size and whether the model is
            pretrained, `cnnzoo.finetuning.stages.auto_stages`) or stages as
            `cnnzoo.finetuning.stages.as_stages` reads them (`Stage`s, dicts, or
            `"head:5:1e-3,all:2:1e-5"`); held as a tuple of `Stage`.
        epochs: None, or an int >= 1 replacing every stage's epoch count.
        learning_rate: None, or a rate replacing every stage's: a number, a
            `(lo, hi)` per-unit range, or `"auto"` (`cnnzoo.find_lr` per stage).
        label_smoothing, mixup, cutmix, ema: the regularisation
            (`cnnzoo.finetuning.regularisation.Regularisation`).
        freeze_batchnorm: None (the model's `pretrained`), True or False: keep
            every BatchNormalization below the head in inference mode.
        cache_features: `"auto"`, True or False: train frozen stages on
            backbone features computed once.
        dtype: None (the model's own policy), `"float32"`, `"mixed_bfloat16"`
            or `"mixed_float16"`.
        steps_per_execution: `"auto"` or an int >= 1: batches per compiled call.
        batch_size, validation_split, augment: the data options
            (`cnnzoo.data.DataOptions`, where their defaults are written).
        seed: int >= 0, for the weights, the split, shuffling and augmentation.

    Example:

    >>> recipe = cnnzoo.Recipe(stages="head:3:1e-3,all:2:1e-4", mixup=0.2)
    >>> recipe.replace(seed=1).to_json()  # doctest: +SKIP
    >>> result = cnnzoo.finetune("bird_classifier", "photos/", recipe=recipe)  # doctest: +SKIP
    """

    stages: object = "auto"
    epochs: object = None
    learning_rate: object = None
    label_smoothing: float = 0.1
    mixup: float = 0.0
    cutmix: float = 0.0
    ema: object = False
    freeze_batchnorm: object = None
    cache_features: object = "auto"
    dtype: object = None
    steps_per_execution: object = field(default="auto", metadata=_SAME_RESULTS)
    batch_size: int = DataOptions.batch_size
    validation_split: float = DataOptions.validation_split
    augment: object = DataOptions.augment
    seed: int = 0

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        if not (isinstance(self.stages, str) and self.stages == "auto"):
            put("stages", stages_lib.as_stages(self.stages))
        put("epochs", check_int(self.epochs, "epochs", allow_none=True))
        if self.learning_rate is not None:
            put("learning_rate", stages_lib.check_rate(self.learning_rate))
        regularisation = Regularisation(self.label_smoothing, self.mixup, self.cutmix, self.ema)
        for name in ("label_smoothing", "mixup", "cutmix", "ema"):
            put(name, getattr(regularisation, name))
        if self.freeze_batchnorm is not None and not isinstance(self.freeze_batchnorm, bool):
            raise ConfigError(
                f"`freeze_batchnorm` must be None (the model's `pretrained`), True or False. "
                f"Received: freeze_batchnorm={self.freeze_batchnorm!r}."
            )
        if not any(self.cache_features is v for v in (True, False)) and self.cache_features != "auto":
            raise ConfigError(
                f"`cache_features` must be True, False or 'auto'. Received: cache_features={self.cache_features!r}."
            )
        if self.dtype is not None:
            from cnnzoo.zoo.precision import check_dtype  # imports Keras: only when a policy is named

            put("dtype", check_dtype(self.dtype))
        if self.steps_per_execution != "auto":
            put("steps_per_execution", _check_steps_per_execution(self.steps_per_execution))
        DataOptions(self.batch_size, self.validation_split, self.augment)  # validates them
        put("batch_size", int(self.batch_size))
        put("validation_split", float(self.validation_split))
        put("seed", check_int(self.seed, "seed", lo=0))

    @property
    def regularisation(self):
        """The `Regularisation` these options make."""
        return Regularisation(self.label_smoothing, self.mixup, self.cutmix, self.ema)

    @property
    def data(self):
        """The `cnnzoo.data.DataOptions` of this recipe."""
        return DataOptions(self.batch_size, self.validation_split, self.augment)

    def plan(self, num_train, num_units, pretrained):
        """The stages a run trains: `stages` (or the auto plan), with `epochs` and `learning_rate` applied.

        Args:
            num_train: int, training images (for `"auto"`).
            num_units: int, backbone units of the model (for `"auto"`).
            pretrained: bool, whether the backbone holds learned weights.

        Returns:
            A tuple of `Stage`.
        """
        if self.stages == "auto":
            plan = stages_lib.auto_stages(num_train, num_units, pretrained, self.epochs)
        else:
            plan = self.stages
        return tuple(stages_lib.override(plan, self.epochs, self.learning_rate))

    def replace(self, **changes):
        """A copy with `changes` applied (and validated), e.g. `recipe.replace(seed=1)`."""
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise ConfigError(_unknown_message(unknown))
        return dataclasses.replace(self, **changes)

    @classmethod
    def field_names(cls):
        """The names of the recipe's options, in order (the `finetune` keywords it stands for)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self):
        """The recipe as JSON-ready data (stages as dicts); `Recipe.from_dict` reads it back."""
        out = {}
        for name in self.field_names():
            value = getattr(self, name)
            if name == "stages" and value != "auto":
                value = [{**s.to_dict(), "learning_rate": _jsonable(s.learning_rate)} for s in value]
            elif name == "augment" and not any(value is v for v in (True, False, None)) and value != "auto":
                value = _layers_text(value)  # recorded, but a recipe file cannot rebuild layers
            out[name] = _jsonable(value)
        return out

    @classmethod
    def from_dict(cls, data):
        """Reads `to_dict`'s output (a `"format"` key is accepted); unknown keys are an error."""
        if not isinstance(data, dict):
            raise ConfigError(f"`recipe` must be a Recipe, a dict or a recipe.json path. Received: recipe={data!r}.")
        data = {k: v for k, v in data.items() if k != "format"}
        if isinstance(data.get("augment"), str) and data["augment"].startswith("<layers"):
            raise ConfigError(
                f"This recipe trained with Keras augmentation layers, which a recipe file cannot rebuild. "
                f"Received: augment={data['augment']!r}. Pass the layers again as `augment=` (it overrides "
                "the recipe's), or choose True, False or 'auto'."
            )
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise ConfigError(_unknown_message(unknown))
        if isinstance(data.get("learning_rate"), list):
            data["learning_rate"] = tuple(data["learning_rate"])
        if isinstance(data.get("stages"), list):
            data["stages"] = [
                {**s, "learning_rate": tuple(s["learning_rate"])}
                if isinstance(s, dict) and isinstance(s.get("learning_rate"), list)
                else s
                for s in data["stages"]
            ]
        return cls(**data)

    def to_json(self, path=None):
        """The recipe as JSON text; written (atomically) to `path` too when one is given."""
        text = json.dumps({"format": _FORMAT, **self.to_dict()}, indent=2) + "\n"
        if path is not None:
            from cnnzoo.utils.files import atomic_save

            atomic_save(Path(path), lambda tmp: Path(tmp).write_text(text))
        return text

    @classmethod
    def from_json(cls, path):
        """Reads a recipe file written by `to_json` (a run's `recipe.json`)."""
        return cls.from_dict(_read_json(path))

    @classmethod
    def coerce(cls, value, **overrides):
        """One `Recipe` from a Recipe, a dict or a recipe file (None: the defaults), `overrides` applied.

        Example:

        >>> Recipe.coerce({"mixup": 0.2}, seed=1) == Recipe(mixup=0.2, seed=1)
        True
        """
        if value is None:
            return cls.from_dict(overrides)
        if isinstance(value, cls):
            return value.replace(**overrides) if overrides else value
        data = _read_json(value) if isinstance(value, (str, Path)) else value
        if not isinstance(data, dict):
            raise ConfigError(f"`recipe` must be a Recipe, a dict or a recipe.json path. Received: recipe={value!r}.")
        return cls.from_dict({**data, **overrides})

    def fingerprint(self):
        """What makes two runs train the same: every option except those that only change the speed.

        Options added to `Recipe` are part of it without being listed: a run
        directory holding a run with another fingerprint is not resumed.
        Stages read `"head:5:0.001:cosine:adam"` there.
        """
        fields = {f.name: f for f in dataclasses.fields(self)}
        out = {k: v for k, v in self.to_dict().items() if fields[k].metadata.get("fingerprint", True)}
        if self.stages != "auto":
            out["stages"] = [f"{s}:{s.schedule}:{s.optimizer}" for s in self.stages]
        return out


def _read_json(path):
    from cnnzoo.errors import DataNotFoundError

    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(
            f"`recipe` names a file that does not exist. Received: recipe={str(path)!r}. "
            f"A fine-tuning run writes its recipe to <out>/{RECIPE_FILE}."
        )
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"`recipe` is not a readable recipe file ({e}). Received: recipe={str(path)!r}.") from e


def _layers_text(layers):
    layers = layers if isinstance(layers, (list, tuple)) else [layers]
    return "<layers: " + ", ".join(type(layer).__name__ for layer in layers) + ">"


def _check_steps_per_execution(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"`steps_per_execution` must be 'auto' or an integer >= 1. Received: steps_per_execution={value!r}."
        )
    return value


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


def _unknown_message(unknown):
    return (
        f"A recipe takes the options {', '.join(Recipe.field_names())}. Received: {', '.join(unknown)}. "
        "(The model, the data, `out`, `callbacks` and the like are `finetune` arguments, not recipe options.)"
    )


def recipe_keywords(fn):
    """Decorator for a function taking `recipe=` and keywords named like `Recipe` fields (`finetune`).

    The call's `recipe` (a `Recipe`, a dict, a recipe file or None) becomes one
    `Recipe`, with the recipe keywords the caller gave overriding its fields;
    keywords left at their defaults do not. `fn` reads the options from
    `recipe` only. The signature and docstring stay `fn`'s.

    Example:

    >>> @recipe_keywords
    ... def run(data, *, seed=Recipe.seed, recipe=None):
    ...     return recipe.seed
    >>> run("photos", recipe={"seed": 3}), run("photos", recipe={"seed": 3}, seed=4)
    (3, 4)
    """
    signature = inspect.signature(fn)
    names = set(Recipe.field_names()) & set(signature.parameters)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        given = {name: value for name, value in bound.arguments.items() if name in names}
        bound.arguments["recipe"] = Recipe.coerce(bound.arguments.get("recipe"), **given)
        return fn(*bound.args, **bound.kwargs)

    return wrapper
