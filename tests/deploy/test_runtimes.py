"""cnnzoo.predict on exported files (ONNX Runtime, LiteRT, TensorFlow SavedModel) and the cached runtime of a .keras."""

import os
import subprocess

import numpy as np
import pytest

import cnnzoo
from cnnzoo.deploy.exported_cache import cache_root, cached_paths
from cnnzoo.errors import ConfigError, DataNotFoundError
from conftest import PYTHON, REPO, write_image_folder

SIZE = 16
NAMES = ["robin", "heron", "owl"]


def small_model(seed):
    import keras

    keras.utils.set_random_seed(seed)
    return cnnzoo.get(
        "bird_classifier",
        num_classes=3,
        input_shape=(SIZE, SIZE, 3),
        compile=False,
        blocks=[{"filters": 4, "batch_norm": True}, {"filters": 8}],
        dense=[8],
        class_names=NAMES,
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A .keras model and its three exports, all of the same weights."""
    root = tmp_path_factory.mktemp("models")
    folder = write_image_folder(root / "images", classes=NAMES, per_class=3, size=(20, 20))
    model = small_model(0)
    model.save(root / "birds.keras")
    for fmt, name in [("onnx", "birds.onnx"), ("litert", "birds.tflite"), ("savedmodel", "birds_sm")]:
        cnnzoo.export(model, root / name, fmt, verify_with=folder)
    return root, sorted(str(p) for p in folder.rglob("*.png"))


@pytest.mark.parametrize("name", ["birds.onnx", "birds.tflite", "birds_sm"])
def test_predict_on_an_exported_file_equals_predict_on_keras(name, saved):
    root, images = saved
    expected = cnnzoo.predict(root / "birds.keras", images, top_k=3, runtime="tensorflow")
    got = cnnzoo.predict(str(root / name), images, top_k=3)
    assert [p.source for p in got] == images
    for e, g in zip(expected, got):
        assert [label for label, _ in g.top_k] == [label for label, _ in e.top_k]  # same labels, same order
        np.testing.assert_allclose([q for _, q in g.top_k], [q for _, q in e.top_k], atol=1e-5)
    one = cnnzoo.predict(root / name, np.full((30, 30, 3), 90, np.uint8), top_k=2)  # array, resized
    assert one.label == cnnzoo.predict(root / "birds.keras", np.full((30, 30, 3), 90, np.uint8), runtime="keras").label


def test_runtime_for_a_keras_file_is_exported_once_and_follows_the_file(saved, tmp_path):
    root, images = saved
    path = tmp_path / "birds.keras"
    path.write_bytes((root / "birds.keras").read_bytes())
    exported, record = cached_paths(path, "onnx")
    assert (exported.name, record.name) == ("model.onnx", "onnx.json") and exported.parent.parent == cache_root()
    first = cnnzoo.predict(path, images, top_k=3, runtime="onnx")
    keras_first = cnnzoo.predict(path, images, top_k=3, runtime="tensorflow")
    assert [p.top_k[0][0] for p in first] == [p.top_k[0][0] for p in keras_first]
    stamp = exported.stat().st_mtime_ns
    cnnzoo.predict(path, images[0], runtime="onnx")
    assert exported.stat().st_mtime_ns == stamp  # unchanged model: the cached file is used
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))  # touched, same bytes: the same entry
    cnnzoo.predict(path, images[0], runtime="onnx")
    assert exported.stat().st_mtime_ns == stamp and cached_paths(path, "onnx")[0] == exported
    small_model(1).save(path)  # a different model at the same path: another entry
    second = cnnzoo.predict(path, images, top_k=3, runtime="onnx")
    assert cached_paths(path, "onnx")[0] != exported and cached_paths(path, "onnx")[0].is_file()
    keras_second = cnnzoo.predict(path, images, top_k=3, runtime="tensorflow")
    np.testing.assert_allclose([p.probability for p in second], [p.probability for p in keras_second], atol=1e-5)
    assert not np.allclose([p.probability for p in second], [p.probability for p in first], atol=1e-4)
    lite = cnnzoo.predict(path, images, top_k=3, runtime="litert")  # its own cached file
    assert cached_paths(path, "litert")[0].is_file()
    np.testing.assert_allclose([p.probability for p in lite], [p.probability for p in keras_second], atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["birds.keras"]  # nothing beside the model


def test_runtime_argument_rules(saved):
    root, images = saved
    with pytest.raises(ConfigError, match="`runtime` must be one of"):
        cnnzoo.predict(root / "birds.keras", images[0], runtime="tensorrt")
    with pytest.raises(ConfigError, match="runs in its own runtime"):
        cnnzoo.predict(root / "birds.onnx", images[0], runtime="litert")
    with pytest.raises(DataNotFoundError):
        cnnzoo.predict(root / "missing.onnx", images[0])
    with pytest.raises(DataNotFoundError):
        cnnzoo.predict(root / "missing.keras", images[0], runtime="onnx")


def test_predict_on_onnx_and_tflite_loads_no_tensorflow(saved):
    root, images = saved
    code = (
        "import sys, cnnzoo\n"
        f"for name in ('birds.onnx', 'birds.tflite'):\n"
        f"    p = cnnzoo.predict({str(root)!r} + '/' + name, {images[0]!r}, top_k=3)\n"
        "    print(p.label)\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.split()
    assert lines[-2:] == ["False", "False"]
    assert lines[0] == lines[1] == cnnzoo.predict(root / "birds.keras", images[0]).label
