"""`cnnzoo.tune(dtype=...)` and `cnnzoo.hypermodel(dtype=...)`: every trial and the best model take the policy."""

import keras_tuner as kt
import numpy as np
import pytest

import cnnzoo
from cnnzoo.errors import ConfigError
from cnnzoo.zoo.precision import dtype_of


def test_hypermodel_builds_trials_under_the_policy():
    model = cnnzoo.hypermodel("digits_cnn", dtype="mixed_bfloat16").build(kt.HyperParameters())
    assert dtype_of(model) == "mixed_bfloat16"
    assert model.get_layer("head").steps[-1].compute_dtype == "float32"
    with pytest.raises(ConfigError, match="`dtype`"):
        cnnzoo.hypermodel("digits_cnn", dtype="half")


def test_tune_with_dtype_runs_a_trial_and_returns_a_mixed_best_model(tmp_path):
    d = cnnzoo.data.digits(seed=0)
    data = (d.x_train[:120], d.y_train[:120], d.x_test[:60], d.y_test[:60])
    with pytest.raises(ConfigError, match="`dtype`"):
        cnnzoo.tune("digits_cnn", data, tuner="random", out=tmp_path / "bad", dtype="bf16")
    result = cnnzoo.tune(
        "digits_cnn",
        data,
        tuner="random",
        max_trials=1,
        max_epochs=1,
        out=tmp_path,
        seed=0,
        dtype="mixed_bfloat16",
    )
    assert len(result.trials) == 1 and result.best_trial.score is not None
    assert dtype_of(result.best_model) == "mixed_bfloat16"
    probs = result.best_model.predict(d.x_test[:4], verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
