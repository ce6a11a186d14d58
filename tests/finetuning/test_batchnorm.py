"""BatchNorm statistics that converge within a stage, and the near-chance warning (issue 11, item 1)."""

import logging
import warnings

import pytest

import cnnzoo
from cnnzoo.finetuning import batchnorm
from cnnzoo.finetuning.results import StageResult
from cnnzoo.finetuning.stages import Stage


def _results(train, val):
    history = {"accuracy": list(train), "val_accuracy": list(val), "loss": [0.1] * len(train)}
    return [StageResult(1, Stage("all", len(train), 1e-3), history, ("block1",), False, 1.0)]


def test_adapted_momentum_forgets_the_initial_statistics_within_the_steps():
    assert batchnorm.adapted_momentum(0.9, 270) is None  # 0.9**270 is tiny: left alone
    m = batchnorm.adapted_momentum(0.999, 270)
    assert m < 0.999 and m**270 <= batchnorm.MAX_INITIAL_WEIGHT
    assert batchnorm.adapted_momentum(0.999, 3) == 0.5  # never below 0.5


def test_converging_batchnorm_lowers_only_training_layers_and_restores_them(caplog):
    import keras

    inputs = keras.Input((4,))
    trained = keras.layers.BatchNormalization(momentum=0.999, name="trained")
    frozen = keras.layers.BatchNormalization(momentum=0.999, name="frozen")
    model = keras.Model(inputs, frozen(trained(inputs)))
    frozen.trainable = False
    with caplog.at_level(logging.INFO, logger="cnnzoo.finetuning"):
        with batchnorm.converging_batchnorm(model, 200, "1/all") as changed:
            assert [bn.name for bn, _, _ in changed] == ["trained"]
            assert trained.momentum == pytest.approx(0.975) and frozen.momentum == 0.999
    assert trained.momentum == 0.999 and trained.get_config()["momentum"] == 0.999
    assert "momentum 0.975 for this stage" in caplog.text


def test_warning_for_high_training_accuracy_at_chance_validation():
    notes = batchnorm.chance_warnings(_results([0.8, 1.0], [0.1, 0.101]), 0.101, 10)
    assert len(notes) == 1 and "near chance" in notes[0] and "more epochs" in notes[0]
    with pytest.warns(cnnzoo.TrainingWarning, match="near chance"):
        batchnorm.warn(notes)


@pytest.mark.parametrize(
    "train, val",
    [
        ([0.9, 0.99], 0.95),  # healthy
        ([0.2, 0.3], 0.1),  # not fitting either: nothing to name
        ([0.99], 0.5),
    ],
)  # overfits, but far from chance
def test_no_warning_otherwise(train, val):
    assert batchnorm.chance_warnings(_results(train, [val] * len(train)), val, 10) == ()


def test_warning_names_batchnorm_for_a_model_with_it():
    import keras

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.BatchNormalization()(inputs))
    (note,) = batchnorm.chance_warnings(_results([1.0], [0.1]), None, 10, model)
    assert "BatchNormalization moving statistics" in note and "momentum" in note


def test_finetune_warns_and_records_it_when_unadapted(tmp_path, monkeypatch):
    """A run at chance in inference mode is reported, not silently returned (adaptation switched off)."""
    monkeypatch.setattr(batchnorm, "ADAPT", False)
    result = _finetune_small(tmp_path / "off")
    assert result.warnings and "near chance" in result.warnings[0]


def test_finetune_adapts_a_high_momentum_model(tmp_path):
    result = _finetune_small(tmp_path / "on")
    assert result.warnings == () and result.val_accuracy > 0.8
    # each epoch validated on re-estimated statistics: the history reads what the model scores, not chance
    assert result.stages[0].history["val_accuracy"][-1] == pytest.approx(result.val_accuracy, abs=0.1)
    assert all(bn.momentum == 0.9999 for bn in batchnorm.batchnorm_layers(result.model))  # config kept


def _finetune_small(out):
    """A tiny CNN, BatchNorm momentum 0.9999, a few epochs from scratch on the 8x8 digits."""
    import keras

    from cnnzoo.zoo.layers import ClassifierHead

    # Initial weights from a fixed seed, not from whatever global random state earlier tests left: unadapted,
    # some initialisations score 18% rather than chance (seeds 0-3: 17.8%, 10.3%, 18.3%, 10.3%, on the code
    # before and after the Recipe refactor alike); seed 1 is one at chance, adapted it scores 96.9%.
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    for i, filters in enumerate((32, 64), 1):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(momentum=0.9999, name=f"bn{i}")(x)
        x = keras.layers.ReLU()(x)
    model = keras.Model(inputs, ClassifierHead(10, pooling="avg", pretrained=False, name="head")(x), name="tiny_bn")
    d = cnnzoo.data.digits()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = cnnzoo.finetune(
            model,
            (d.x_train, d.y_train, d.x_test, d.y_test),
            stages=["all:8:3e-3"],
            out=out,
            plots=False,
            verbose=0,
            pretrained=False,
        )
    assert [str(w.message) for w in caught if issubclass(w.category, cnnzoo.TrainingWarning)] == list(result.warnings)
    return result


@pytest.mark.slow
def test_mobilenetv3_small_from_scratch_learns_the_digits(tmp_path):
    """Issue 11: momentum 0.999 left validation at 10% (uniform predictions); adapted, it learns."""
    d = cnnzoo.data.digits(image_size=(32, 32), channels=3)
    result = cnnzoo.finetune(
        "mobilenetv3small_classifier",
        (d.x_train, d.y_train),
        input_shape=(32, 32, 3),
        epochs=6,
        out=tmp_path / "run",
        plots=False,
        verbose=0,
    )
    print(f"MobileNetV3-Small from scratch, 6 epochs: validation accuracy {result.val_accuracy:.2%}")
    assert result.val_accuracy > 0.9
    assert result.warnings == ()
