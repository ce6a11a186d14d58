"""Hyperband through `cnnzoo.tune`: real keras-tuner trials on a slice of the UCI digits, a tiny budget."""

import json

import numpy as np

import cnnzoo


def test_hyperband_trials_continue_earlier_ones_and_the_best_model_loads(tmp_path):
    d = cnnzoo.data.digits(seed=0)
    x, y = d.x_train[:240], d.y_train[:240]
    # max_epochs=3, factor=3: the first bracket starts 3 trials at 1 epoch, then continues the best of them for
    # epochs 2-3 in a 4th trial (keras-tuner's `tuner/trial_id`). max_trials=4 stops after that one.
    result = cnnzoo.tune(
        "digits_cnn",
        (x, y),
        tuner="hyperband",
        max_trials=4,
        max_epochs=3,
        factor=3,
        out=tmp_path,
        seed=0,
        early_stopping=0,
        batch_size=32,
    )
    assert result.tuner == "hyperband"
    assert [t.status for t in result.trials] == ["COMPLETED"] * 4
    first, continued = result.trials[:3], result.trials[3:]
    assert all(t.continues is None for t in first)
    assert [t.epochs for t in first] == [1, 1, 1]
    (fourth,) = continued
    ids = [t.trial_id for t in first]
    assert fourth.continues in ids  # it resumed one of the 1-epoch trials...
    parent = next(t for t in first if t.trial_id == fourth.continues)
    assert parent.score == max(t.score for t in first)  # ...the best one (1 of 3 goes on with factor 3)
    assert fourth.hyperparameters == parent.hyperparameters  # the same configuration, trained longer
    trial_json = json.loads((result.directory / f"trial_{fourth.trial_id}" / "trial.json").read_text())
    values = trial_json["hyperparameters"]["values"]
    assert values["tuner/trial_id"] == parent.trial_id and values["tuner/initial_epoch"] == 1
    assert values["tuner/epochs"] == 3 and fourth.epochs == 2  # epochs 2 and 3, after the parent's first
    for t in result.trials:
        assert 0.0 <= t.score <= 1.0 and t.seconds > 0

    assert result.best_trial.trial_id in ids + [fourth.trial_id]
    assert result.best_trial.score == max(t.score for t in result.trials)
    model = result.best_model
    assert model is not None and model.compiled and model.input_shape == (None, 8, 8, 1)
    probs = model.predict(d.x_test[:50], verbose=0)
    assert probs.shape == (50, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    # The loaded model is the best trial's, not a fresh one: it scores well above chance (10%).
    assert float(np.mean(probs.argmax(axis=1) == d.y_test[:50])) > 0.3
    assert "rank" in result.table() and fourth.trial_id in result.table()
