"""`cnnzoo.layers.Preprocess` against the keras.applications preprocess functions, on real image files."""

import numpy as np
import pytest

import cnnzoo
from cnnzoo.data import load_image


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Four random RGB photos written as PNG by Pillow and read back: a float32 batch of 0-255 pixels."""
    from PIL import Image

    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(7)
    paths = []
    for i in range(4):
        pixels = rng.integers(0, 256, size=(9, 11, 3), dtype=np.uint8)
        pixels[0, 0] = (0, 0, 0)  # the extremes are in every image
        pixels[0, 1] = (255, 255, 255)
        Image.fromarray(pixels).save(root / f"{i}.png")
        paths.append(root / f"{i}.png")
    x = np.stack([load_image(p) for p in paths]).astype("float32")
    assert x.shape == (4, 9, 11, 3) and x.min() == 0 and x.max() == 255
    return x


def preprocess(mode, x):
    from cnnzoo.zoo.layers import Preprocess

    return np.asarray(Preprocess(mode)(x.copy()))


@pytest.mark.parametrize("mode, keras_mode", [("torch", "torch"), ("rescale_-1_1", "tf"), ("caffe", "caffe")])
def test_modes_match_keras_imagenet_utils(images, mode, keras_mode):
    from keras.applications import imagenet_utils

    expected = imagenet_utils.preprocess_input(images.copy(), mode=keras_mode, data_format="channels_last")
    got = preprocess(mode, images)
    assert got.dtype == np.float32 and got.shape == images.shape
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)
    assert not np.allclose(got, images)  # it did transform


def test_modes_match_the_application_functions_that_use_them(images):
    """The applications whose ImageNet weights expect each mode: DenseNet (torch), MobileNetV2 (tf), VGG16 (caffe)."""
    from keras.applications import densenet, mobilenet_v2, vgg16

    np.testing.assert_allclose(
        preprocess("torch", images), densenet.preprocess_input(images.copy()), rtol=1e-6, atol=1e-5
    )
    np.testing.assert_allclose(
        preprocess("rescale_-1_1", images), mobilenet_v2.preprocess_input(images.copy()), rtol=1e-6, atol=1e-5
    )
    np.testing.assert_allclose(preprocess("caffe", images), vgg16.preprocess_input(images.copy()), rtol=1e-6, atol=1e-5)


def test_torch_and_tf_ranges_by_hand(images):
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    torch = preprocess("torch", images)
    np.testing.assert_allclose(torch[0, 0, 0], (0 - mean) / std, rtol=1e-6)  # a black pixel
    np.testing.assert_allclose(torch[0, 0, 1], (1 - mean) / std, rtol=1e-6)  # a white pixel
    tf_mode = preprocess("rescale_-1_1", images)
    assert tf_mode.min() == -1.0 and tf_mode.max() == 1.0
    np.testing.assert_allclose(preprocess("rescale_0_1", images), images / 255.0, rtol=1e-6)


def test_zoo_entries_use_the_modes_their_weights_expect():
    assert cnnzoo.spec("alexnet").preprocessing == "torch"
    assert cnnzoo.spec("bird_classifier_mobilenetv2").preprocessing == "rescale_-1_1"
    assert cnnzoo.spec("vgg16").preprocessing == "caffe"


def test_saved_and_reloaded_layer_keeps_its_mode(images, tmp_path):
    import keras

    from cnnzoo.zoo.layers import Preprocess

    inputs = keras.Input(images.shape[1:])
    model = keras.Model(inputs, Preprocess("torch", name="preprocess")(inputs))
    model.save(tmp_path / "pre.keras")
    loaded = keras.saving.load_model(tmp_path / "pre.keras")
    assert loaded.get_layer("preprocess").mode == "torch"
    np.testing.assert_allclose(loaded.predict(images, verbose=0), preprocess("torch", images), rtol=1e-6, atol=1e-6)
