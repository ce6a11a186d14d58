"""Feature maps and filters: inside ConvBlocks and nested backbones, shapes and values checked against Keras."""

import numpy as np
import pytest
from PIL import Image

import cnnzoo
from cnnzoo.errors import ConfigError, DataError
from cnnzoo.explain import feature_maps, filters, plot_feature_maps


@pytest.fixture(scope="module")
def tiny():
    import keras

    keras.utils.set_random_seed(1)
    return cnnzoo.get("tiny_vgg", num_classes=3, compile=False)  # 64x64x3, valid 3x3 convs, 2 blocks


@pytest.fixture(scope="module")
def mobilenet():
    import keras

    keras.utils.set_random_seed(2)
    return cnnzoo.get("bird_classifier_mobilenetv2", num_classes=3, input_shape=(96, 96, 3), compile=False)


def _photo(size):
    from sklearn.datasets import load_sample_image

    return np.asarray(Image.fromarray(load_sample_image("flower.jpg")).resize(size))


def test_zoo_cnn_maps_have_the_layer_shapes_and_keras_values(tiny, tmp_path):
    image = _photo((80, 60))
    maps = feature_maps(tiny, image)
    # every conv and pool layer inside the ConvBlocks, in forward order; shapes from the layer arithmetic
    assert {name: m.shape for name, m in maps.items()} == {
        "block1_conv1": (62, 62, 10),
        "block1_conv2": (60, 60, 10),
        "block1_pool": (30, 30, 10),
        "block2_conv1": (28, 28, 10),
        "block2_conv2": (26, 26, 10),
        "block2_pool": (13, 13, 10),
    }
    assert all(m.dtype == np.float32 for m in maps.values())
    # a block's last sub-layer is the block's output: Keras' own graph gives the same numbers
    import keras

    batch = np.asarray(Image.fromarray(image).resize((64, 64), Image.Resampling.BILINEAR), np.float32)[None]
    for block in ("block1", "block2"):
        reference = keras.Model(tiny.inputs[0], tiny.get_layer(block).output)(batch)
        assert tuple(tiny.get_layer(block).output.shape[1:]) == maps[f"{block}_pool"].shape
        np.testing.assert_allclose(maps[f"{block}_pool"], np.asarray(reference)[0], rtol=1e-4, atol=1e-4)
    # the first conv by hand: its ReLU'd correlation of the rescaled image with the layer's kernel
    conv = tiny.get_layer("block1").steps[0]
    kernel, bias = conv.get_weights()
    x = batch[0] / 255.0
    by_hand = sum(np.tensordot(x[i : i + 62, j : j + 62], kernel[i, j], axes=1) for i in range(3) for j in range(3))
    np.testing.assert_allclose(maps["block1_conv1"], np.maximum(by_hand + bias, 0), rtol=1e-4, atol=1e-4)
    # any feature-map layer by name, returned in forward order; path, PIL and array give the same maps
    path = tmp_path / "flower.png"
    Image.fromarray(image).save(path)
    chosen = feature_maps(tiny, path, layers=["block2_pool", "block1_conv2"])
    assert list(chosen) == ["block1_conv2", "block2_pool"]
    np.testing.assert_allclose(chosen["block2_pool"], maps["block2_pool"], atol=1e-5)
    np.testing.assert_allclose(
        feature_maps(tiny, Image.fromarray(image), ["block2_pool"])["block2_pool"], maps["block2_pool"], atol=1e-5
    )
    both = feature_maps(tiny, [image, image[::-1]], layers=["block1_pool"])["block1_pool"]
    assert both.shape == (2, 30, 30, 10)


def test_nested_backbone_maps(mobilenet):
    import keras

    backbone = mobilenet.get_layer("backbone")
    image = _photo((96, 96))
    maps = feature_maps(mobilenet, image)
    convs_and_pools = [
        layer.name
        for layer in backbone.layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
    ]
    assert list(maps) == convs_and_pools and len(maps) == 52
    for name, arr in maps.items():
        assert arr.shape == tuple(backbone.get_layer(name).output.shape[1:]), name
    # values: Keras' graph of the backbone, on the preprocessed image
    names = ["Conv1", "block_6_depthwise", "out_relu"]
    got = feature_maps(mobilenet, image, layers=names)
    pre = mobilenet.get_layer("preprocess")(image[None].astype("float32"))
    reference = keras.Model(backbone.inputs[0], [backbone.get_layer(n).output for n in names])(pre)
    for name, ref in zip(names, reference):
        np.testing.assert_allclose(got[name], np.asarray(ref)[0], rtol=1e-4, atol=1e-4)


def test_plot_feature_maps_writes_one_png_per_layer(tiny, tmp_path):
    maps = feature_maps(tiny, _photo((64, 64)), layers=["block1_conv1", "block2_pool"])
    written = plot_feature_maps(maps, tmp_path / "maps", max_channels=4)
    assert sorted(written) == ["block1_conv1", "block2_pool"]
    for name, path in written.items():
        assert path == tmp_path / "maps" / f"{name}.png"
        with Image.open(path) as im:
            im.load()
            assert im.format == "PNG" and im.width >= 224
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["block1_conv1.png", "block2_pool.png"]


def test_a_1x1_map_is_drawn_as_one_bar_per_channel(tmp_path):
    model = cnnzoo.get("bird_classifier", num_classes=3, input_shape=(32, 32, 3), compile=False)
    maps = feature_maps(model, _photo((32, 32)), layers=["block5_pool"])  # five poolings: 1x1 positions
    assert maps["block5_pool"].shape == (1, 1, 256)
    values = np.linspace(1, 8, 8, dtype="float32").reshape(1, 1, 8)  # known values: bars of growing height
    written = plot_feature_maps({**maps, "pooled": values}, tmp_path, max_channels=8, title="flower: robin 40%")
    with Image.open(written["pooled"]) as im:
        pixels = np.asarray(im.convert("RGB")).astype(int)
    blue = np.all(np.abs(pixels - [0x3B, 0x6E, 0xA8]) < 8, axis=-1)  # the bars' colour
    columns = np.flatnonzero(blue.any(axis=0))
    bars = np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1)
    heights = [int(blue[:, bar].sum(axis=0).max()) for bar in bars]
    assert len(bars) == 8 and heights == sorted(heights) and heights[-1] > 4 * heights[0]
    with Image.open(written["block5_pool"]) as im:
        assert im.width >= 224


def test_plot_feature_maps_old_out_dir_warns_naming_out_and_still_works(tmp_path):
    maps = {"conv": np.arange(2 * 2 * 3, dtype="float32").reshape(2, 2, 3)}  # no model needed
    with pytest.warns(DeprecationWarning, match=r"`plot_feature_maps\(out_dir=\.\.\.\)` is deprecated.*use `out=`"):
        written = plot_feature_maps(maps, out_dir=tmp_path / "maps")
    assert written == {"conv": tmp_path / "maps" / "conv.png"} and written["conv"].is_file()


def test_first_layer_filters_are_the_kernels(tiny, tmp_path):
    tiles = filters(tiny, out=tmp_path / "first.png")
    kernel = tiny.get_layer("block1").steps[0].get_weights()[0]  # [3, 3, 3, 10]
    assert tiles.shape == (10, 3, 3, 3) and tiles.min() == 0.0 and tiles.max() == 1.0
    for f in range(10):
        k = kernel[..., f]
        np.testing.assert_allclose(tiles[f], (k - k.min()) / (k.max() - k.min()), atol=1e-6)
    with Image.open(tmp_path / "first.png") as im:
        im.load()
        assert im.format == "PNG"
    assert filters(tiny, indices=[3, 7]).shape == (2, 3, 3, 3)
    gray = cnnzoo.get("lenet5", compile=False)  # one input channel: gray tiles
    assert filters(gray).shape == (6, 5, 5, 1)


def test_deeper_filters_by_activation_maximisation(tiny, mobilenet, tmp_path):
    tiles = filters(tiny, "block2_conv2", steps=25, out=tmp_path / "deep.png")
    assert tiles.shape == (10, 64, 64, 3) and 0.0 <= tiles.min() and tiles.max() <= 1.0
    with Image.open(tmp_path / "deep.png") as im:
        im.load()
    # the pictures excite their own filters more than the gray noise they started from (a random-init
    # model: a filter whose inputs are all silent cannot be reached, so most, not all)
    noise = 128.0 + np.random.default_rng(0).uniform(-20, 20, (64, 64, 3))
    start = feature_maps(tiny, noise, ["block2_conv2"])["block2_conv2"].mean(axis=(0, 1))
    grown = feature_maps(tiny, tiles * 255.0, ["block2_conv2"])["block2_conv2"]
    own = np.array([grown[f, ..., f].mean() for f in range(10)])
    assert np.mean(own > start + 1e-3) >= 0.7 and own.sum() > 2 * start.sum(), (own, start)
    assert np.all(own >= start - 1e-6)
    # inside a nested backbone too
    assert filters(mobilenet, "block_2_expand", max_filters=2, steps=3).shape == (2, 96, 96, 3)


def test_errors_for_bad_layers_and_images(tiny):
    with pytest.raises(
        ConfigError,
        match=r"`layers` must name layers of `tiny_vgg`.*Did you mean .*`block1_conv1`.*"
        r"Received: layers='block1_conv'",
    ):
        feature_maps(tiny, np.zeros((8, 8, 3)), layers=["block1_conv"])
    with pytest.raises(
        ConfigError, match=r"`layers` must be None or a non-empty list.*Received: layers='block1_conv1'"
    ):
        feature_maps(tiny, np.zeros((8, 8, 3)), layers="block1_conv1")
    with pytest.raises(ConfigError, match=r"Received: layers='head'"):  # not a feature map
        feature_maps(tiny, np.zeros((8, 8, 3)), layers=["head"])
    with pytest.raises(DataError, match=r"`image` arrays must be numeric.*Received: an array of shape \(8, 8, 5\)"):
        feature_maps(tiny, np.zeros((8, 8, 5)))
    with pytest.raises(DataError, match=r"`image` must be file paths, PIL images or arrays"):
        feature_maps(tiny, object())
    with pytest.raises(DataError, match=r"`model` must be a keras.Model or the path of a .keras file"):
        feature_maps(3, np.zeros((8, 8, 3)))
    with pytest.raises(ConfigError, match=r"`layer` must name layers .*Received: layer='nope'"):
        filters(tiny, "nope")
    with pytest.raises(ConfigError, match=r"`indices` must be None or a non-empty list of filter indices from 0 to 9"):
        filters(tiny, indices=[10])
    with pytest.raises(ConfigError, match=r"`steps` must be an integer >= 1. Received: steps=0"):
        filters(tiny, "block2_conv1", steps=0)
    with pytest.raises(ConfigError, match=r"`maps` must be the non-empty dict"):
        plot_feature_maps([], "x")
