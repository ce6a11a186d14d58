"""Errors raised by cnnzoo.

Every error is a `CnnzooError` and also the builtin exception a caller would
naturally catch (`KeyError`, `ValueError`, `FileNotFoundError`), so existing
`except ValueError:` code keeps working. Messages name the argument in
backticks, state the rule, show what was received and suggest a fix.
"""

import difflib

__all__ = [
    "CnnzooError",
    "ConfigError",
    "UnknownModelError",
    "DuplicateModelError",
    "PluginError",
    "RunLockedError",
    "DiskFullError",
    "UnsafeModelError",
    "MissingExtraError",
    "BackendError",
    "ExportError",
    "DataError",
    "DataNotFoundError",
    "DataWarning",
    "TrainingWarning",
    "ExplainWarning",
    "WeightsError",
    "WeightsNotFoundError",
    "WeightsDownloadError",
    "UnknownWeightsError",
    "IntegrityError",
    "closest",
]


class CnnzooError(Exception):
    """Base class of every error raised on purpose by cnnzoo."""


class ConfigError(CnnzooError, ValueError):
    """A zoo config, an override or a search space breaks a rule."""


class UnknownModelError(CnnzooError, KeyError):
    """No model of that name is registered."""

    def __str__(self):  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


class DuplicateModelError(ConfigError):
    """Two sources register the same model name."""


class PluginError(ConfigError):
    """A model plugin (an entry point of the `"cnnzoo.models"` group) failed to load or is malformed."""


class RunLockedError(CnnzooError, ValueError):
    """A run or search directory is in use by another process (it holds the directory's lock)."""


class UnsafeModelError(CnnzooError, ValueError):
    """A model file holds Python code (a Lambda layer, a custom function); cnnzoo never runs it."""


class DiskFullError(CnnzooError, OSError):
    """A file could not be written for lack of space (disk full, quota, file-size limit); nothing was replaced.

    Its `errno` is the operating system's (`ENOSPC`, `EDQUOT`, `EFBIG`) and its
    `filename` the file that could not be written.
    """

    def __str__(self):  # OSError would show "[Errno 28] No space left on device: 'path'" instead
        return str(self.args[0]) if self.args else ""


class MissingExtraError(CnnzooError, ImportError):
    """An optional dependency is missing; the message names the cnnzoo extra that installs it."""


class BackendError(ConfigError):
    """A feature that the Keras backend in use (`KERAS_BACKEND`) does not support; the message names the ones
    that do, or the alternative on this backend."""


class ExportError(CnnzooError, ValueError):
    """An exported model does not give the Keras model's answers in its runtime; nothing was left at its path."""


class DataError(CnnzooError, ValueError):
    """An image folder, an array or a dataset cannot be used as given."""


class DataNotFoundError(CnnzooError, FileNotFoundError):
    """An image folder or image file does not exist."""


class DataWarning(UserWarning):
    """Something in the data was left out (unreadable files) but the rest is usable."""


class TrainingWarning(UserWarning):
    """A run finished but its result is suspect (e.g. validation accuracy near chance while training fits)."""


class ExplainWarning(UserWarning):
    """A picture that explains a model would mislead: e.g. Grad-CAM of a class score that barely depends on the
    feature map (vanishing gradients), whose heatmap is noise scaled up to [0, 1]."""


class WeightsError(CnnzooError, ValueError):
    """A weights file is corrupt, does not match, or cannot be fetched."""


class WeightsNotFoundError(CnnzooError, FileNotFoundError):
    """A weights file is missing and cannot be fetched (offline, no file)."""


class WeightsDownloadError(WeightsError):
    """A weights download failed: server unreachable, HTTP error or cut-off transfer."""


class UnknownWeightsError(WeightsError, KeyError):
    """A model entry declares no weights of that name."""

    def __str__(self):  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


class IntegrityError(WeightsError):
    """A file cnnzoo wrote (a checkpoint, a feature cache, run state, an export, preset weights) no longer matches
    the SHA-256 recorded beside it (`<file>.sha256`); nothing was loaded from it."""


def closest(name, candidates, n=3):
    """Returns a `Did you mean ...?` hint for `name`, or an empty string."""
    matches = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=n, cutoff=0.5)
    if not matches:
        return ""
    return " Did you mean " + " or ".join(f"`{m}`" for m in matches) + "?"
