"""`DataOptions`: the data options every workflow shares, and the only place their defaults are written.

`cnnzoo.finetune` (through `cnnzoo.Recipe`), `cnnzoo.find_lr`, `cnnzoo.tune`,
`cnnzoo.data.prepare` and the CLI take `batch_size`, `validation_split` and
`augment` with these meanings and these defaults. Importing it imports no
TensorFlow.
"""

import dataclasses
from dataclasses import dataclass

from cnnzoo.errors import DataError
from cnnzoo.utils.checks import check_fraction, check_int

__all__ = ["DataOptions", "check_augment"]

_AUGMENT_WORDS = (True, False, None, "auto")


def check_augment(augment, error=DataError):
    """Returns `augment` if it is True, False, None, `"auto"` or Keras layers; raises `error` otherwise."""
    if any(augment is word for word in (True, False, None)) or (isinstance(augment, str) and augment == "auto"):
        return augment
    layers = augment if isinstance(augment, (list, tuple)) else [augment]
    if layers and all(hasattr(layer, "compute_output_shape") and callable(layer) for layer in layers):
        return augment  # Keras layers (checked as such, without importing Keras, by augmentation_layers)
    raise error(
        "`augment` must be True, False, 'auto', or a list of Keras layers (e.g. keras.layers.RandomFlip()). "
        f"Received: augment={augment!r}."
    )


@dataclass(frozen=True)
class DataOptions:
    """How training data is batched, split and augmented (validated on creation).

    Attributes:
        batch_size: int >= 1, images per training step.
        validation_split: float in [0, 1): the share of each class held out of
            a folder path or `(x, y)` arrays for validation (ignored when the data
            brings its validation images; 0 needs validation data).
        augment: `"auto"` (random shifts and zoom picked from the number of
            training images, see `cnnzoo.data.augment.auto_augmentation`), True
            (`default_augmentation`), False, or a list of Keras layers.

    Example:

    >>> DataOptions(batch_size=64).validation_split
    0.2
    """

    batch_size: int = 32
    validation_split: float = 0.2
    augment: object = "auto"

    def __post_init__(self):
        object.__setattr__(self, "batch_size", check_int(self.batch_size, "batch_size", error=DataError))
        split = check_fraction(self.validation_split, "validation_split", error=DataError)
        object.__setattr__(self, "validation_split", split)
        check_augment(self.augment)

    def as_dict(self):
        """`{"batch_size": ..., "validation_split": ..., "augment": ...}`, for `prepare(**options.as_dict())`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
