"""`cnnzoo.get`: compiled Functional models, overrides, weights files."""

import numpy as np
import pytest

import cnnzoo
from cnnzoo.errors import ConfigError, WeightsError, WeightsNotFoundError


def test_get_returns_a_compiled_model_that_fits_at_once(rng):
    model = cnnzoo.get("digits_cnn")
    assert model.compiled
    assert model.optimizer.__class__.__name__ == "Adam"
    assert model.loss == "sparse_categorical_crossentropy"
    x = rng.uniform(0, 255, (16, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, 16)
    history = model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert set(history.history) == {"loss", "accuracy"}


def test_compile_false_and_user_compile(rng):
    import keras

    model = cnnzoo.get("lenet5", compile=False)
    assert not model.compiled
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    model.fit(rng.uniform(0, 255, (4, 32, 32, 1)), np.arange(4), epochs=1, verbose=0)
    assert model.optimizer.__class__.__name__ == "SGD"


def test_train_table_and_shortcut_overrides():
    model = cnnzoo.get("tiny_vgg", optimizer="sgd", learning_rate=0.05, dense=[32], dropout=0.2, batch_norm=True)
    assert model.optimizer.__class__.__name__ == "SGD"
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)
    head = model.get_layer("head")
    assert head.dense == [32] and head.dropout == 0.2
    assert model.get_layer("block1").batch_norm


def test_bad_arguments_raise_config_errors():
    with pytest.raises(ConfigError, match="`widht` is not an override"):
        cnnzoo.get("tiny_vgg", widht=3)
    with pytest.raises(ConfigError, match="`input_shape` is too small for `alexnet`"):
        cnnzoo.get("alexnet", input_shape=(16, 16, 3))
    with pytest.raises(ConfigError, match="`num_classes` must be an integer >= 0"):  # 0: embeddings
        cnnzoo.get("tiny_vgg", num_classes=-1)
    with pytest.raises(ConfigError, match="`input_shape` must be \\[height, width, channels\\]"):
        cnnzoo.get("tiny_vgg", input_shape=(64, 64))


def test_weights_file_round_trip_and_mismatch(tmp_path, rng):
    model = cnnzoo.get("tiny_vgg", num_classes=3, input_shape=(32, 32, 3))
    x = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    model.save_weights(tmp_path / "tiny.weights.h5")
    model.save(tmp_path / "tiny.keras")
    for path in ("tiny.weights.h5", "tiny.keras"):
        again = cnnzoo.get("tiny_vgg", num_classes=3, input_shape=(32, 32, 3), weights=tmp_path / path)
        np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5)
    with pytest.raises(WeightsError, match="does not match `tiny_vgg`"):
        cnnzoo.get("tiny_vgg", num_classes=5, input_shape=(32, 32, 3), weights=tmp_path / "tiny.weights.h5")
    with pytest.raises(WeightsNotFoundError) as err:
        cnnzoo.get("tiny_vgg", weights=tmp_path / "nope.weights.h5")
    assert isinstance(err.value, FileNotFoundError)


def test_class_names_travel_with_the_model(tmp_path):
    from cnnzoo.zoo.layers import class_names_of

    model = cnnzoo.get("tiny_vgg", class_names=["robin", "wren", "finch"], input_shape=(32, 32, 3))
    assert model.output_shape == (None, 3)
    model.save(tmp_path / "birds.keras")
    assert class_names_of(cnnzoo.load(tmp_path / "birds.keras")) == ["robin", "wren", "finch"]
    assert class_names_of(cnnzoo.get("digits_cnn")) == [str(i) for i in range(10)]
    assert class_names_of(cnnzoo.get("tiny_vgg")) == [str(i) for i in range(10)]


def test_model_class_names_is_the_head_s(tmp_path):
    from cnnzoo.finetuning.freezing import replace_head

    model = cnnzoo.get("tiny_vgg", class_names=["robin", "wren", "finch"], input_shape=(32, 32, 3))
    assert model.class_names == ["robin", "wren", "finch"]  # issue 18: was missing
    model.save(tmp_path / "birds.keras")
    assert cnnzoo.load(tmp_path / "birds.keras").class_names == ["robin", "wren", "finch"]
    assert cnnzoo.get("tiny_vgg", input_shape=(32, 32, 3)).class_names is None  # none given
    renamed, replaced = replace_head(model, 3, ["owl", "heron", "kite"])  # what fine-tuning does
    assert not replaced and renamed.class_names == ["owl", "heron", "kite"]
    bigger, replaced = replace_head(model, 4, ["a", "b", "c", "d"])
    assert replaced and bigger.class_names == ["a", "b", "c", "d"]
    assert cnnzoo.reset_classifier(model, 2, ["cat", "dog"]).class_names == ["cat", "dog"]
    assert cnnzoo.reset_classifier(model, 0).class_names is None  # embeddings: no classes
