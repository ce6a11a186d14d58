"""predict(): paths, PIL images and arrays -> labels and probabilities, through the cached compiled call."""

import numpy as np
import pytest

import cnnzoo
from cnnzoo import data
from cnnzoo.deploy.inference import Prediction, load_images, predictor
from cnnzoo.errors import ConfigError, DataError, DataNotFoundError
from conftest import write_image_folder

SIZE = 12


@pytest.fixture(scope="module")
def model():
    import keras

    keras.utils.set_random_seed(0)
    return cnnzoo.get(
        "bird_classifier",
        num_classes=3,
        input_shape=(SIZE, SIZE, 3),
        compile=False,
        blocks=[{"filters": 4, "batch_norm": True}, {"filters": 8}],
        dense=[8],
        class_names=["robin", "heron", "owl"],
    )


@pytest.fixture
def folder(tmp_path):
    # 20x20 files: predict must resize them to the model's 12x12 like the loader does.
    return write_image_folder(tmp_path / "images", classes=("robin", "heron", "owl"), per_class=2, size=(20, 20))


def reference(model, paths):
    """What Keras itself gives for files read by the image-folder loader."""
    x = np.stack([data.load_image(p, (SIZE, SIZE), 3) for p in paths]).astype("float32")
    return model.predict(x, verbose=0)


def test_paths_give_labels_from_the_model_and_loader_resizing(model, folder):
    paths = sorted(str(p) for p in folder.rglob("*.png"))
    predictions = cnnzoo.predict(model, paths, top_k=3)
    expected = reference(model, paths)
    assert len(predictions) == len(paths)
    for p, path, probs in zip(predictions, paths, expected):
        assert isinstance(p, Prediction) and p.source == path
        assert p.label == ["robin", "heron", "owl"][int(np.argmax(probs))]
        assert p.probability == pytest.approx(float(probs.max()), abs=1e-5)
        assert [label for label, _ in p.top_k] == [["robin", "heron", "owl"][i] for i in np.argsort(-probs)]
        assert [q for _, q in p.top_k] == sorted((q for _, q in p.top_k), reverse=True)
        assert sum(q for _, q in p.top_k) == pytest.approx(1.0, abs=1e-5)
    single = cnnzoo.predict(model, paths[0])  # one image in, one Prediction out
    assert isinstance(single, Prediction) and len(single.top_k) == 1 and single.label == predictions[0].label
    assert single.to_dict()["top_k"][0]["label"] == single.label


def test_pil_images_and_arrays_match_paths(model, folder):
    from PIL import Image

    path = sorted(folder.rglob("*.png"))[0]
    by_path = cnnzoo.predict(model, path, top_k=3)
    with Image.open(path) as im:
        by_pil = cnnzoo.predict(model, im.copy(), top_k=3)
    array = np.asarray(Image.open(path))  # uint8 HWC at 20x20
    by_array = cnnzoo.predict(model, array, top_k=3)
    batch = cnnzoo.predict(model, np.stack([array, array]), top_k=3)  # a 4-D array is a batch
    for other in (by_pil, by_array, *batch):
        assert other.label == by_path.label
        np.testing.assert_allclose([q for _, q in other.top_k], [q for _, q in by_path.top_k], atol=1e-5)
    gray = cnnzoo.predict(model, np.full((SIZE, SIZE), 200, np.uint8))  # [H, W]: gray repeated to RGB
    rgb = cnnzoo.predict(model, np.full((SIZE, SIZE, 3), 200.0))
    assert gray.probability == pytest.approx(rgb.probability, abs=1e-6)


def test_saved_model_path_and_compiled_call_is_cached(model, tmp_path, folder):
    path = tmp_path / "birds.keras"
    model.save(path)
    image = sorted(folder.rglob("*.png"))[0]
    from_file = cnnzoo.predict(str(path), image, top_k=2)
    in_memory = cnnzoo.predict(model, image, top_k=2)
    assert from_file.top_k[0][0] == in_memory.top_k[0][0]
    assert from_file.probability == pytest.approx(in_memory.probability, abs=1e-5)
    assert predictor(model) is predictor(model)
    x = np.random.default_rng(0).uniform(0, 255, (40, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(predictor(model)(x, batch_size=16), model.predict(x, verbose=0), atol=1e-5)
    assert predictor(model).fn.compiled.experimental_get_tracing_count() == 1  # one trace for every batch size


def test_model_without_class_names_gets_indices():
    import keras

    inputs = keras.Input((4, 4, 1))
    dense = keras.layers.Dense(2, activation="softmax")
    plain = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    # Class 0 scores the top half of the image, class 1 the bottom half.
    kernel = np.zeros((16, 2), np.float32)
    kernel[:8, 0] = kernel[8:, 1] = 0.01
    dense.set_weights([kernel, np.zeros(2, np.float32)])
    top, bottom = np.zeros((4, 4)), np.zeros((4, 4))
    top[:2], bottom[2:] = 200, 200
    images = np.stack([top, bottom, bottom, top])[..., None]
    probs = plain.predict(images, verbose=0)
    assert list(probs.argmax(axis=1)) == [0, 1, 1, 0]
    predictions = cnnzoo.predict(plain, images, top_k=2)
    assert [p.label for p in predictions] == ["0", "1", "1", "0"]
    for p, row in zip(predictions, probs):
        assert p.probability == pytest.approx(float(row.max()), abs=1e-5)
        assert dict(p.top_k) == pytest.approx({"0": float(row[0]), "1": float(row[1])}, abs=1e-5)
    assert cnnzoo.predict(plain, bottom).label == "1"  # one [H, W] image


def test_bad_input_errors(model, tmp_path):
    with pytest.raises(DataError, match=r"`images` must be an image .*Received: an object of type int"):
        cnnzoo.predict(model, 5)
    with pytest.raises(DataNotFoundError, match=r"`images` must name existing image files.*Received: images="):
        cnnzoo.predict(model, tmp_path / "missing.png")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"`images` must be readable image files.*Received: images="):
        cnnzoo.predict(model, broken)
    with pytest.raises(ConfigError, match=r"`top_k` must be an integer from 1 to the number of classes \(3\)"):
        cnnzoo.predict(model, np.zeros((SIZE, SIZE, 3)), top_k=4)
    with pytest.raises(DataError, match=r"Received: an array of shape \(12, 12, 5\)"):
        cnnzoo.predict(model, np.zeros((SIZE, SIZE, 5)))
    with pytest.raises(DataError, match=r"at least one image"):
        cnnzoo.predict(model, [])
    with pytest.raises(DataNotFoundError, match=r"`model` must be a keras.Model or an existing .keras file"):
        cnnzoo.predict(tmp_path / "none.keras", np.zeros((SIZE, SIZE, 3)))


def test_load_images_converts_channels():
    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[..., 0] = 255
    batch, sources, single = load_images(rgb, (6, 6), 1)
    assert single and sources == [None] and batch.shape == (1, 6, 6, 1)
    assert batch[0, 0, 0, 0] == pytest.approx(76, abs=1)  # Pillow's "L": 0.299 * 255
    rgba = np.concatenate([rgb, np.full((6, 6, 1), 255, np.uint8)], axis=-1)
    assert load_images([rgba], (3, 3), 3)[0].shape == (1, 3, 3, 3)


def test_predict_stays_the_function_after_importing_the_module():
    import cnnzoo.deploy.inference as module

    assert cnnzoo.predict is module.predict and module.Prediction is Prediction
