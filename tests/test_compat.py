"""Keras and keras-tuner internals: everything cnnzoo relies on is still there.

`cnnzoo/_compat.py` is the one module that touches `keras.src`, `keras_tuner.src`
and private attributes. These tests fail loudly, naming what is missing, when an
installed Keras or keras-tuner changes any of it; then adapt `_compat` (or the
pins in pyproject.toml) before anything else.
"""

import numpy as np
import pytest

from cnnzoo import _compat


def test_everything_compat_relies_on_is_installed():
    missing = _compat.check()
    assert missing == [], (
        f"the installed Keras / keras-tuner lack what cnnzoo/_compat.py relies on: {missing}. "
        f"Update _compat (and its pins in pyproject.toml)."
    )


def test_keras_internals_behave_as_relied_on():
    import keras

    import cnnzoo

    model = cnnzoo.get("digits_cnn", compile=False)
    # first_call: the chain of a zoo model, read from each layer's first call
    previous = model.inputs[0]
    for layer in model.layers[1:]:
        inputs, outputs = _compat.first_call(layer)
        assert inputs == [previous] and len(outputs) == 1
        previous = outputs[0]
    assert previous is model.outputs[0]
    # flatten_layers: nested sub-layers (the BatchNormalization inside a ConvBlock) included
    names = {layer.name for layer in _compat.flatten_layers(model)}
    assert {"block1", "block1_conv1", "block1_bn1", "head", "predictions"} <= names
    # symbolic_build: optimizer and metric variables exist before any training step
    cnnzoo.zoo.builders.compile_model(model)
    assert not model.optimizer.built
    _compat.symbolic_build(model, (np.zeros((1, 8, 8, 1), "float32"), np.zeros((1,), "int64")))
    assert model.optimizer.built and len(model.optimizer.variables) > 2
    before = [v.path for v in model.optimizer.variables]
    model.fit(np.zeros((4, 8, 8, 1), "float32"), np.zeros((4,), "int64"), epochs=1, verbose=0)
    assert [v.path for v in model.optimizer.variables] == before  # fit created no new ones
    assert isinstance(model, keras.Model)


def test_multi_worker_fix_leaves_other_strategies_alone():
    import tensorflow as tf

    import cnnzoo

    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = cnnzoo.get("digits_cnn")
    method = model._maybe_symbolic_build
    assert _compat.multi_worker_build_fix(model) is model
    assert model._maybe_symbolic_build == method  # untouched outside MultiWorkerMirroredStrategy
    trainer = __import__("keras.src.backend.tensorflow.trainer", fromlist=["reduce_per_replica"])
    assert callable(trainer.reduce_per_replica)


def test_keras_tuner_internals_behave_as_relied_on(tmp_path):
    import keras

    import cnnzoo
    from cnnzoo.tuning import engine

    trial_module = _compat.kt_module("engine.trial")
    assert {"RUNNING", "IDLE", "STOPPED", "COMPLETED"} <= set(vars(trial_module.TrialStatus))
    with pytest.raises(ValueError, match="`name` must be one of"):
        _compat.kt_module("engine.nonexistent")
    options = engine.TunerOptions("random", "val_accuracy", 2, 1, tmp_path, "p", True, seed=None)
    tuner = engine.make_tuner(cnnzoo.hypermodel("digits_cnn"), options)
    assert str(_compat.checkpoint_path(tuner, "00")).endswith("checkpoint.weights.h5")
    assert not _compat.is_worker_tuner(tuner)
    trial = tuner.oracle.create_trial("tuner0")
    assert _compat.is_duplicate(tuner.oracle, trial.hyperparameters.values)  # proposed once already
    _compat.requeue_trial(tuner.oracle, trial.trial_id)
    assert trial.trial_id in tuner.oracle._retry_queue
    original = [keras.callbacks.EarlyStopping(patience=2)]
    copies = _compat.copied_callbacks(tuner, original)
    assert len(copies) == 1 and copies[0] is not original[0] and copies[0].patience == 2
