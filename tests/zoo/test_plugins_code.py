"""Models added in code with `@cnnzoo.register`: the bare decorator, and builders returning branching models."""

import numpy as np
import pytest

import cnnzoo
from cnnzoo.errors import ConfigError
from cnnzoo.zoo import registry

SIZE = 8


def two_class_images(n=24, seed=0):
    """Dark images are class 0, bright ones class 1 (a tiny model learns it in a few steps)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = np.clip(np.where(y[:, None, None, None] == 1, 190.0, 60.0) + rng.normal(0, 15, (n, SIZE, SIZE, 3)), 0, 255)
    return x.astype("float32"), y.astype("int64")


def test_bare_register_takes_the_function_name_and_docstring():
    import keras

    @cnnzoo.register
    def bare_dense_net(num_classes=None, input_shape=None, weights=None):
        """A dense-only model registered without arguments."""
        inputs = keras.Input(input_shape or (4, 4, 1))
        outputs = keras.layers.Dense(num_classes or 2, activation="softmax")(keras.layers.Flatten()(inputs))
        return keras.Model(inputs, outputs)

    try:
        assert callable(bare_dense_net) and bare_dense_net.__name__ == "bare_dense_net"  # returned unchanged
        assert "bare_dense_net" in cnnzoo.list_models("bare*")
        info = cnnzoo.info("bare_dense_net")
        assert info.description == "A dense-only model registered without arguments."
        assert "@register" in info.source and "bare_dense_net" in info.source
        model = cnnzoo.get("bare_dense_net", num_classes=3, input_shape=(5, 5, 2))
        assert model.compiled and model.input_shape == (None, 5, 5, 2) and model.output_shape == (None, 3)
    finally:
        registry.unregister("bare_dense_net")
    assert "bare_dense_net" not in cnnzoo.list_models()


def _two_paths(inputs):
    """Two parallel convolution paths on the same input, added together: not a chain of layers."""
    import keras

    a = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="path_3x3")(inputs)
    b = keras.layers.Conv2D(8, 1, padding="same", activation="relu", name="path_1x1")(inputs)
    return keras.layers.Add(name="merge")([a, b])


@pytest.fixture
def branching_models():
    """Two registered builders of branching Functional models: one with a plain Dense softmax, one with the
    zoo's `ClassifierHead` (which carries class names and is what fine-tuning replaces)."""
    import keras

    from cnnzoo.zoo.layers import ClassifierHead, Preprocess

    @cnnzoo.register("branching_dense")
    def branching_dense(num_classes=None, input_shape=None, weights=None):
        """Two conv paths added, then a Dense softmax."""
        inputs = keras.Input(input_shape or (SIZE, SIZE, 3))
        x = _two_paths(keras.layers.Rescaling(1 / 255)(inputs))
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(
            inputs, keras.layers.Dense(num_classes or 2, activation="softmax")(x), name="branching_dense"
        )

    @cnnzoo.register("branching_head")
    def branching_head(num_classes=None, input_shape=None, weights=None):
        """Two conv paths added, then the zoo's ClassifierHead."""
        inputs = keras.Input(input_shape or (SIZE, SIZE, 3))
        x = _two_paths(Preprocess("rescale_0_1", name="preprocess")(inputs))
        head = ClassifierHead(num_classes or 2, pooling="avg", name="head")
        return keras.Model(inputs, head(x), name="branching_head")

    yield
    registry.unregister("branching_dense")
    registry.unregister("branching_head")


def _is_branching(model):
    merge = model.get_layer("merge")
    return len(merge.input) == 2 and {t.name for t in merge.input} != set()


@pytest.mark.parametrize("name", ["branching_dense", "branching_head"])
def test_get_compiles_a_branching_model_that_fits(branching_models, name):
    import keras

    keras.utils.set_random_seed(0)
    model = cnnzoo.get(name, num_classes=2)
    assert model.compiled and _is_branching(model)
    x, y = two_class_images()
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert len(history.history["loss"]) == 3 and np.isfinite(history.history["loss"]).all()
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # it trained
    probs = model.predict(x, verbose=0)
    assert probs.shape == (len(x), 2) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_finetune_refuses_a_branching_model_without_a_zoo_head_clearly(branching_models, tmp_path):
    x, y = two_class_images()
    with pytest.raises(
        ConfigError,
        match=r"`model` must be a zoo model ending in a cnnzoo ClassifierHead.*"
        r"Received: model='branching_dense' whose last layer is Dense",
    ):
        cnnzoo.finetune("branching_dense", (x, y), stages="all:1:1e-3", out=tmp_path / "run", verbose=0)
    assert not (tmp_path / "run" / "branching_dense.keras").exists()


def _initial_weights(name, seed):
    """The weights `finetune(name, seed=seed)` starts from: it seeds Keras, then builds by name."""
    import keras

    keras.utils.set_random_seed(seed)
    return cnnzoo.get(name, compile=False).get_layer("path_3x3").get_weights()[0]


def test_finetune_trains_a_branching_model_with_a_zoo_head(branching_models, tmp_path):
    x, y = two_class_images(n=32)
    initial = _initial_weights("branching_head", 0)
    np.testing.assert_array_equal(initial, _initial_weights("branching_head", 0))
    common = dict(class_names=["dark", "bright"], validation_split=0.25, batch_size=8, verbose=0, plots=False)

    head_only = cnnzoo.finetune("branching_head", (x, y), stages="head:2:1e-2", out=tmp_path / "head", **common)
    assert [s.units for s in head_only.stages] == [()]
    np.testing.assert_array_equal(head_only.model.get_layer("path_3x3").get_weights()[0], initial)  # frozen

    result = cnnzoo.finetune(
        "branching_head", (x, y), stages=["head:2:1e-2", "all:2:1e-2"], out=tmp_path / "run", **common
    )
    assert [len(s.history["loss"]) for s in result.stages] == [2, 2]
    assert result.stages[0].units == () and set(result.stages[1].units) == {"path_3x3", "path_1x1"}
    assert not np.array_equal(result.model.get_layer("path_3x3").get_weights()[0], initial)  # trained in stage 2
    assert result.class_names == ("dark", "bright") and result.model_path.is_file()
    loaded = cnnzoo.load(result.model_path)
    assert _is_branching(loaded) and cnnzoo.layers.class_names_of(loaded) == ["dark", "bright"]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), result.model.predict(x, verbose=0), atol=1e-5)
    assert {p.label for p in cnnzoo.predict(loaded, x)} <= {"dark", "bright"}
