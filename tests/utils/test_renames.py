"""`renamed_arguments`: old keyword names keep working for one release, with a DeprecationWarning."""

import inspect
import warnings

import pytest

from cnnzoo.errors import ConfigError
from cnnzoo.utils.renames import renamed_arguments


@renamed_arguments(model_or_name="model", plot="out")
def _run(model, data=None, *, out=None):
    """Docstring kept."""
    return model, data, out


def test_new_names_pass_silently():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _run("m", 1, out="p") == ("m", 1, "p")
        assert _run(model="m") == ("m", None, None)


def test_old_names_warn_naming_the_new_one_and_still_work():
    with pytest.warns(DeprecationWarning, match=r"`_run\(model_or_name=\.\.\.\)` is deprecated .* use `model=`"):
        assert _run(model_or_name="m", data=2) == ("m", 2, None)
    with pytest.warns(DeprecationWarning, match="use `out=`"):
        assert _run("m", plot="p.png") == ("m", None, "p.png")


def test_both_names_is_an_error():
    with pytest.raises(ConfigError, match=r"`plot` is the old name of `out`.*Received: plot='a', out='b'"):
        _run("m", plot="a", out="b")


def test_signature_and_docstring_are_the_new_ones():
    assert list(inspect.signature(_run).parameters) == ["model", "data", "out"]
    assert _run.__doc__ == "Docstring kept."


def test_a_rename_to_a_missing_parameter_is_refused_at_definition():
    with pytest.raises(TypeError, match="no parameter 'nope'"):
        renamed_arguments(old="nope")(lambda model: model)
