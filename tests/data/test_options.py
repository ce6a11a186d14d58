"""`DataOptions`: the shared data options, validated, with the defaults every workflow uses."""

import inspect

import pytest

import cnnzoo
from cnnzoo.data import DataOptions
from cnnzoo.errors import DataError


def test_defaults_and_dict():
    options = DataOptions()
    assert options.as_dict() == {"batch_size": 32, "validation_split": 0.2, "augment": "auto"}
    assert DataOptions(batch_size=8, augment=False).as_dict()["batch_size"] == 8


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 0}, r"`batch_size`.*Received: batch_size=0"),
        ({"batch_size": True}, "`batch_size`"),
        ({"validation_split": 1.0}, r"`validation_split` must be a number in \[0, 1\)"),
        ({"augment": "sometimes"}, r"`augment` must be True, False, 'auto'.*Received: augment='sometimes'"),
    ],
)
def test_bad_values_name_the_option(kwargs, match):
    with pytest.raises(DataError, match=match):
        DataOptions(**kwargs)


def test_prepare_takes_its_defaults_from_data_options():
    parameters = inspect.signature(cnnzoo.data.prepare).parameters
    assert parameters["batch_size"].default == DataOptions.batch_size
    assert parameters["validation_split"].default == DataOptions.validation_split
