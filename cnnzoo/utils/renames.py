"""Keyword arguments renamed by the one public vocabulary (docs/architecture.md, "Vocabulary").

An old keyword keeps working for one release: the call goes through with a
`DeprecationWarning` that names the new keyword. Passing both is an error.
"""

import functools
import inspect
import warnings

from cnnzoo.errors import ConfigError

__all__ = ["renamed_arguments", "REMOVED_IN"]

REMOVED_IN = "0.3"  # the release that drops the old keyword names


def renamed_arguments(**old_to_new):
    """Decorator: accepts each old keyword name as its new one, with a `DeprecationWarning`.

    Args:
        **old_to_new: `old_name="new_name"` for each renamed keyword; each new
            name must be a parameter of the decorated function.

    Returns:
        A decorator; the wrapped function keeps its signature and docstring.

    Example:

    >>> @renamed_arguments(model_or_name="model")
    ... def finetune(model, data): ...
    >>> finetune(model_or_name="bird_classifier", data="photos/")  # warns: use `model=`
    """

    def decorate(fn):
        parameters = inspect.signature(fn).parameters
        for new in old_to_new.values():
            if new not in parameters:
                raise TypeError(f"{fn.__qualname__} has no parameter {new!r} to rename to")

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            for old, new in old_to_new.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise ConfigError(
                        f"`{old}` is the old name of `{new}` in `{fn.__name__}`: pass one of them. "
                        f"Received: {old}={kwargs[old]!r}, {new}={kwargs[new]!r}."
                    )
                warnings.warn(
                    f"`{fn.__name__}({old}=...)` is deprecated and will be removed in cnnzoo {REMOVED_IN}; "
                    f"use `{new}=` instead.",
                    DeprecationWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        wrapper.renamed_arguments = dict(old_to_new)
        return wrapper

    return decorate
