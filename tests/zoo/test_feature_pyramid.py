"""Multi-scale features, embeddings and new heads: `cnnzoo/zoo/features.py` and `cnnzoo/zoo/heads.py`.

Registry-driven: every entry outside the keras.applications families and the smallest member of
each family (the tiering rule of tests/zoo/test_zoo.py, `cnnzoo.zoo.families.smallest_members`)
builds with `features_only=True` at a small input, and its levels are checked against the arithmetic
of `cnnzoo/zoo/stats.py` (strides from the receptive-field jumps, shapes, channels) or, for backbone
entries, against the backbone table (reduction, channels). The family members are built inside a
`keras.StatelessScope` (their graph, no weights allocated) and not run; every other entry runs once.
"""

import keras
import numpy as np
import pytest

import cnnzoo
from cnnzoo.errors import ConfigError
from cnnzoo.zoo import families, features, heads, stats
from cnnzoo.zoo.layers import ClassifierHead
from conftest import on_backend

ALL = cnnzoo.list_models()


def small_shape(name):
    spec = cnnzoo.spec(name)
    side = max(stats.min_input_size(spec), 32)
    return (side, side, spec.input_shape[2])


def _entries():
    """The entries outside the families and one member (the smallest) per family."""
    return sorted(families.smallest_members({n: cnnzoo.spec(n) for n in ALL}))


def expected_levels(spec, shape):
    """`{stride: LayerStat}` by arithmetic: the last layer at each stride >= 2 (None for a backbone)."""
    if spec.backbone is not None:
        return None
    found = {}
    for row in stats.layer_stats(spec, shape):
        jump = row.receptive_field.jump
        # padding before a strided conv is not a level (the features rule skips it too)
        if jump is not None and jump >= 2 and len(row.output_shape) == 3 and row.kind != "ZeroPadding2D":
            found[jump] = row
    return found


@pytest.mark.parametrize("name", _entries())
def test_every_entry_gives_its_pyramid(name):
    spec, shape = cnnzoo.spec(name), small_shape(name)
    if spec.family and spec.backbone is not None:  # a keras.applications family member: its graph, no weights
        with keras.StatelessScope(initialize_variables=False):
            _check_pyramid(name, spec, shape, run=False)
        keras.backend.clear_session()
    else:
        _check_pyramid(name, spec, shape, run=True)


def _check_pyramid(name, spec, shape, run):
    model = cnnzoo.get(name, features_only=True, input_shape=shape)
    info = model.feature_info
    assert model.name == f"{name}_features" and not model.compiled
    assert len(model.outputs) == len(info) >= 2
    reductions = info.reduction()
    assert reductions == sorted(set(reductions)) and all(r & (r - 1) == 0 for r in reductions), reductions
    assert info.indices() == [r.bit_length() - 2 for r in reductions]
    for level, out in zip(info, model.outputs):
        assert tuple(out.shape[1:]) == (*level.shape, level.channels)
    expected = expected_levels(spec, shape)
    if expected is None:  # a keras.applications backbone: its table gives the deepest map
        assert (reductions[-1], info.channels()[-1]) == (spec.backbone.reduction, spec.backbone.channels)
        assert {1, 2, 3, 4} <= set(info.indices()), info  # strides 4..32 for every family
    else:
        assert reductions == list(expected), (info, expected)
        assert [lv.shape for lv in info] == [tuple(expected[r].output_shape[:2]) for r in reductions]
        plain = all(
            r.kind in ("Conv2D", "BatchNormalization", "MaxPooling2D", "AveragePooling2D") for r in expected.values()
        )
        if plain:  # a chain of conv blocks: each level has the channels of the arithmetic's last layer there
            assert info.channels() == [expected[r].output_shape[2] for r in reductions]
        assert info.channels()[-1] == expected[reductions[-1]].output_shape[2]
    if run:
        maps = model.predict(np.zeros((1, *shape), "float32"), verbose=0)
        assert [m.shape[1:] for m in maps] == [tuple(o.shape[1:]) for o in model.outputs]


def test_out_indices_select_levels_and_name_what_there_is():
    model = cnnzoo.get("bird_classifier", features_only=True, out_indices=(1, 2, 3, 4), input_shape=(64, 64, 3))
    assert [tuple(o.shape) for o in model.outputs] == [
        (None, 16, 16, 128),
        (None, 8, 8, 256),
        (None, 4, 4, 256),
        (None, 2, 2, 256),
    ]
    info = model.feature_info
    assert info.layers() == ["block3_act1", "block4_act1", "block5_act1", "block5_pool"]
    assert info.channels(0) == 128 and info.reduction(-1) == 32 and info[1].index == 2
    assert info.get_dicts()[0] == {"num_chs": 128, "reduction": 4, "module": "block3_act1", "index": 1}
    one = cnnzoo.get("bird_classifier", features_only=True, out_indices=(4,), input_shape=(64, 64, 3))
    assert isinstance(one.output, list) and one.feature_info.layers() == ["block5_pool"]
    with pytest.raises(ConfigError) as caught:
        cnnzoo.get("bird_classifier", features_only=True, out_indices=(1, 2, 3, 4, 5), input_shape=(64, 64, 3))
    message = str(caught.value)
    assert "`out_indices`" in message and "bird_classifier` has: 5 levels: 0..4 at strides 2..32" in message
    assert "Received: out_indices=(1, 2, 3, 4, 5)" in message and "Use out_indices=(1, 2, 3, 4)" in message
    with pytest.raises(ConfigError, match="`digits_cnn` has: 2 levels: 0..1 at strides 2..4"):
        cnnzoo.get("digits_cnn", features_only=True, out_indices=(1, 2))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"features_only": True, "out_indices": (1, 1)},
            "`out_indices` must be None or a tuple of distinct levels >= 0",
        ),
        (
            {"features_only": True, "out_indices": (-1,)},
            "`out_indices` must be None or a tuple of distinct levels >= 0",
        ),
        ({"features_only": True, "out_indices": "1,2"}, "`out_indices` must be None or a tuple of distinct"),
        ({"features_only": True, "out_indices": 3}, "for the stride-32 map alone, \\(4,\\)"),
        ({"out_indices": (1, 2)}, "`out_indices` selects feature maps: it needs `features_only=True`"),
        ({"features_only": True, "num_classes": 5}, "`num_classes` has no effect with `features_only=True`"),
        ({"features_only": "yes"}, "`features_only` must be True or False"),
        ({"num_classes": 2.5}, "`num_classes` must be an integer >= 0"),
    ],
)
def test_bad_feature_options_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        cnnzoo.get("digits_cnn", **kwargs)


def test_features_share_weights_and_survive_save_and_load(tmp_path, rng):
    """A classic and a backbone entry: the features model reads the classifier's weights, and a saved one
    reloads with the same outputs; `feature_info` (an attribute, lost on reload) is recomputed the same."""
    x = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    for name in ("bird_classifier", "bird_classifier_mobilenetv2"):
        classifier = cnnzoo.get(name, input_shape=(32, 32, 3), compile=False)
        pyramid = cnnzoo.features_model(classifier, (1, 2, 3, 4))
        before = pyramid.predict(x, verbose=0)
        classifier.set_weights([w * 0.5 for w in classifier.get_weights()])  # shared: the features change
        assert not np.allclose(pyramid.predict(x, verbose=0)[0], before[0])
        pooled = cnnzoo.reset_classifier(classifier, 0).predict(x, verbose=0)
        deepest = pyramid.predict(x, verbose=0)[-1]
        np.testing.assert_allclose(pooled, deepest.astype("float32").mean(axis=(1, 2)), rtol=1e-4, atol=1e-5)
        pyramid.save(tmp_path / f"{name}.keras")
        loaded = cnnzoo.load(tmp_path / f"{name}.keras")
        assert not hasattr(loaded, "feature_info")
        assert cnnzoo.feature_info(loaded).levels == pyramid.feature_info.levels
        for a, b in zip(loaded.predict(x, verbose=0), pyramid.predict(x, verbose=0)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert cnnzoo.feature_info(classifier) == features.levels(classifier)  # a classifier: every level it has


def test_embeddings_are_pooled_features(tmp_path, rng):
    model = cnnzoo.get("digits_cnn", num_classes=0, weights="digits")
    assert model.output_shape == (None, 64) and not model.compiled  # compile=True: no loss for embeddings
    head = model.layers[-1]
    assert isinstance(head, ClassifierHead) and head.num_classes == 0 and head.pooling == "avg" and head.pretrained
    assert [s.name for s in head.steps] == ["global_avg_pool"]
    x = rng.uniform(0, 255, (3, 8, 8, 1)).astype("float32")
    y = model.predict(x, verbose=0)
    model.save(tmp_path / "embed.keras")
    np.testing.assert_allclose(cnnzoo.load(tmp_path / "embed.keras").predict(x, verbose=0), y, rtol=1e-5)
    maxed = cnnzoo.get("tiny_vgg", num_classes=0, pooling="max", input_shape=(32, 32, 3))
    assert maxed.output_shape == (None, 10) and maxed.layers[-1].pooling == "max"
    mixed = cnnzoo.get("bird_classifier_mobilenetv2", num_classes=0, input_shape=(32, 32, 3), dtype="mixed_bfloat16")
    assert mixed.output_shape == (None, 1280) and mixed.output.dtype == "float32"


def test_reset_classifier_keeps_the_layers_below_the_head(rng):
    model = cnnzoo.get("tiny_vgg", input_shape=(32, 32, 3), dense=[16], dropout=0.1)
    birds = cnnzoo.reset_classifier(model, 3, class_names=["heron", "owl", "robin"])
    assert birds.output_shape == (None, 3) and birds.get_layer("block1") is model.get_layer("block1")
    head = birds.get_layer("head")
    assert head is not model.get_layer("head") and (head.dense, head.dropout) == ([16], 0.1)
    assert head.class_names == ["heron", "owl", "robin"] and birds.compiled  # compiled as `model` was
    x, y = rng.uniform(0, 255, (6, 32, 32, 3)).astype("float32"), np.arange(6) % 3
    assert np.isfinite(birds.fit(x, y, epochs=1, verbose=0).history["loss"][0])
    embed = cnnzoo.reset_classifier(birds, 0)
    assert embed.output_shape == (None, 10) and not embed.compiled
    back = cnnzoo.reset_classifier(embed, 4)  # embeddings -> a classifier again
    assert back.output_shape == (None, 4) and back.get_layer("block2") is model.get_layer("block2")
    inputs = keras.Input((16, 16, 3))  # any Functional model: a head on its deepest feature map
    z = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="down")(inputs)
    plain = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(z)))
    other = cnnzoo.reset_classifier(plain, 5)
    assert other.output_shape == (None, 5) and other.get_layer("down") is plain.get_layer("down")
    assert not other.compiled and heads.with_new_head(plain, 0).output_shape == (None, 4)


def test_reset_classifier_errors():
    model = cnnzoo.get("digits_cnn", compile=False)
    with pytest.raises(ConfigError, match="`num_classes` must be an integer >= 0. Received: num_classes=-2"):
        cnnzoo.reset_classifier(model, -2)
    with pytest.raises(ConfigError, match="`class_names` must have `num_classes` \\(3\\) entries"):
        cnnzoo.reset_classifier(model, 3, class_names=["a", "b"])
    with pytest.raises(ConfigError, match="outputs feature maps \\(a features model\\)"):
        cnnzoo.reset_classifier(cnnzoo.features_model(model), 3)
    inputs = keras.Input((4,))
    with pytest.raises(ConfigError, match="has none"):
        cnnzoo.reset_classifier(keras.Model(inputs, keras.layers.Dense(2)(inputs)), 3)


class _Residual(keras.layers.Layer):
    """A residual block as one layer with sub-layers (how a config language may build one): the rule reads its
    stride from what it makes of a large image, and its output is a level, not its inside."""

    def __init__(self, filters, strides=1, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", activation="relu")
        self.conv2 = keras.layers.Conv2D(filters, 3, padding="same")
        self.shortcut = keras.layers.Conv2D(filters, 1, strides=strides)

    def call(self, x):
        return keras.ops.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


@pytest.fixture
def residual_builder():
    """A registered builder: a strided stem, residual blocks in the graph (Add) and as layers, a Dense softmax."""
    from cnnzoo.zoo import registry

    @cnnzoo.register("tiny_residual")
    def tiny_residual(num_classes=None, input_shape=None, weights=None):
        """A stem, a residual stage in the graph, two residual blocks as layers."""
        inputs = keras.Input(input_shape or (32, 32, 3))
        x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="stem")(inputs)
        y = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="branch")(x)
        x = keras.layers.Add(name="stage1_out")([x, y])  # the stride-2 level: `branch` is inside a block
        x = _Residual(16, strides=2, name="stage2")(x)
        x = _Residual(16, name="stage2_b")(x)
        x = _Residual(32, strides=2, name="stage3")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(num_classes or 2, activation="softmax")(x))

    yield "tiny_residual"
    registry.unregister("tiny_residual")


def test_a_registered_residual_builder_gets_its_levels_by_the_same_rule(residual_builder, rng):
    model = cnnzoo.get(residual_builder, features_only=True)
    assert model.feature_info.layers() == ["stage1_out", "stage2_b", "stage3"]
    assert model.feature_info.reduction() == [2, 4, 8] and model.feature_info.channels() == [8, 16, 32]
    assert cnnzoo.get(residual_builder, num_classes=0).output_shape == (None, 32)
    classifier = cnnzoo.get(residual_builder)
    x = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    pooled = cnnzoo.reset_classifier(classifier, 0).predict(x, verbose=0)
    deepest = cnnzoo.features_model(classifier).predict(x, verbose=0)[-1]
    np.testing.assert_allclose(pooled, deepest.mean(axis=(1, 2)), rtol=1e-4, atol=1e-6)
    assert cnnzoo.reset_classifier(classifier, 4).output_shape == (None, 4)


@pytest.mark.backends
def test_features_and_heads_on_jax_and_torch(other_backend):
    """The same levels, pooled embeddings and a trainable new head under the other Keras backends (a classic
    entry: building a backbone under JAX takes half a minute here; the walk is the same symbolic Keras code)."""
    expected = cnnzoo.get("mnist_cnn", features_only=True).feature_info
    got = on_backend(
        other_backend,
        """
        import json, numpy as np, cnnzoo
        model = cnnzoo.get("mnist_cnn")
        pyramid = cnnzoo.features_model(model)
        x, y = np.random.default_rng(0).uniform(0, 255, (6, 28, 28, 1)).astype("float32"), np.arange(6) % 3
        maps = pyramid.predict(x, verbose=0)
        pooled = cnnzoo.reset_classifier(model, 0).predict(x, verbose=0)
        birds = cnnzoo.reset_classifier(model, 3)
        loss = birds.fit(x, y, epochs=1, verbose=0).history["loss"][0]
        print(json.dumps({"info": [list(lv.__dict__.values()) for lv in pyramid.feature_info],
                          "maps": [list(m.shape) for m in maps], "pooled_error": float(np.abs(
                              pooled - maps[-1].mean(axis=(1, 2))).max()), "loss": float(loss)}))
        """,
    )
    assert got["info"] == [[lv.index, lv.layer, lv.channels, lv.reduction, list(lv.shape)] for lv in expected]
    assert got["maps"] == [[6, *lv.shape, lv.channels] for lv in expected]
    assert got["pooled_error"] < 1e-4 and np.isfinite(got["loss"])
