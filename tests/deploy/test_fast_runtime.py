"""`runtime="auto"`: a .keras model on its verified ONNX export cached in CNNZOO_HOME, or on Keras, saying why."""

import json
import logging
import subprocess
import sys
import urllib.request

import numpy as np
import pytest

import cnnzoo
from cnnzoo.deploy import fast_runtime as fast
from cnnzoo.deploy.exported_cache import cache_root, cached_export, cached_paths, read_record
from cnnzoo.deploy.inference import forward_of
from cnnzoo.errors import ExportError
from conftest import PYTHON, REPO, write_image_folder

pytest.importorskip("onnxruntime", reason="the `export` extra (onnxruntime) is not installed")
pytest.importorskip("tf2onnx", reason="the `export` extra (tf2onnx) is not installed")

SIZE = 16
NAMES = ["robin", "heron", "owl"]


def small_model(seed, extra=None):
    import keras

    keras.utils.set_random_seed(seed)
    model = cnnzoo.get(
        "bird_classifier",
        num_classes=3,
        input_shape=(SIZE, SIZE, 3),
        compile=False,
        blocks=[{"filters": 4, "batch_norm": True}, {"filters": 8}],
        dense=[8],
        class_names=NAMES,
    )
    if extra is None:
        return model
    inputs = keras.Input((SIZE, SIZE, 3))
    return keras.Model(inputs, model(extra()(inputs)), name=f"with_{extra.__name__.lower()}")


def _layers():
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable("cnnzoo_tests")
    class Lgamma(keras.layers.Layer):  # an op the ONNX converter does not know
        def call(self, x):
            return tf.math.lgamma(x + 1.0) * 0.1

    @keras.saving.register_keras_serializable("cnnzoo_tests")
    class Jitter(keras.layers.Layer):  # noise at inference: the export disagrees with Keras
        def call(self, x):
            return x + tf.random.uniform(tf.shape(x), 0.0, 255.0)

    return Lgamma, Jitter


@pytest.fixture()
def images(tmp_path):
    folder = write_image_folder(tmp_path / "images", classes=NAMES, per_class=2, size=(20, 20))
    return folder, sorted(str(p) for p in folder.rglob("*.png"))


def test_auto_runs_the_verified_export_from_the_cache_and_nothing_beside_the_model(tmp_path, images):
    folder, files = images
    path = tmp_path / "m" / "birds.keras"
    path.parent.mkdir()
    small_model(0).save(path)
    got = cnnzoo.predict(path, files, top_k=3)  # runtime="auto"
    keras_answers = cnnzoo.predict(path, files, top_k=3, runtime="keras")
    for g, k in zip(got, keras_answers):
        assert [label for label, _ in g.top_k] == [label for label, _ in k.top_k]
        np.testing.assert_allclose([q for _, q in g.top_k], [q for _, q in k.top_k], atol=1e-5)
    forward = forward_of(path)[0]
    assert forward.format == "onnx" and forward.path.parent.parent == cache_root()
    record = forward.verified
    assert record["status"] == "ok" and record["top1_agreement"] == 1.0 and record["max_abs_diff"] < 1e-4
    assert record["images"] > 100 and "digits" in record["verified_on"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["birds.keras"]  # nothing beside the user's model
    assert type(forward_of(path, "tensorflow")[0]).__name__ == "_Predictor"
    # a copy of the same bytes is the same entry; cnnzoo.evaluate scores on it too
    copy = tmp_path / "copy.keras"
    copy.write_bytes(path.read_bytes())
    assert cached_paths(copy, "onnx") == cached_paths(path, "onnx")
    auto, keras_run = cnnzoo.evaluate(copy, folder), cnnzoo.evaluate(copy, folder, runtime="keras")
    assert auto[0] == keras_run[0] and (auto[1] == keras_run[1]).all()
    # another process finds the entry: it predicts without importing TensorFlow or Keras
    code = (
        "import sys, cnnzoo\n"
        f"print(cnnzoo.predict({str(path)!r}, {files[0]!r}).label)\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    done = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [got[0].label, "False", "False"]


def test_a_model_in_memory_keeps_keras_unless_onnx_is_asked_for():
    model = small_model(0)
    assert type(forward_of(model)[0]).__name__ == "_Predictor"
    exported = forward_of(model, "onnx")[0]
    assert exported.format == "onnx" and exported.verified["status"] == "ok"
    x = np.random.default_rng(0).uniform(0, 255, (4, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(exported(x), model.predict(x, verbose=0), atol=1e-5)
    model.set_weights([w * 0.5 for w in model.get_weights()])  # new weights: a new entry
    again = forward_of(model, "onnx")[0]
    assert again.path != exported.path
    np.testing.assert_allclose(again(x), model.predict(x, verbose=0), atol=1e-5)


def test_repeated_calls_find_the_runtime_by_one_stat_and_never_answer_for_a_replaced_file(tmp_path, monkeypatch):
    import os

    path = tmp_path / "birds.keras"
    small_model(0).save(path)
    x = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    first = forward_of(path)[0]
    assert fast.known_runtime(path) is first and fast.known_runtime(str(path)) is first
    assert forward_of(path)[0] is first and fast.known_runtime(path, "tensorflow") is None
    old = os.stat(path)
    replaced = small_model(1)
    replaced.save(path)  # new weights at the same path, given a later time to be sure
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns + 10**9))
    assert fast.known_runtime(path) is None
    second = forward_of(path)[0]
    assert second is not first
    np.testing.assert_allclose(second(x), replaced.predict(x, verbose=0), atol=1e-5)
    other = tmp_path / "elsewhere"  # the same relative name in another directory: another file
    other.mkdir()
    kept = small_model(2)
    kept.save(other / "birds.keras")
    monkeypatch.chdir(other)
    assert fast.known_runtime("birds.keras") is None
    np.testing.assert_allclose(forward_of("birds.keras")[0](x), kept.predict(x, verbose=0), atol=1e-5)
    assert fast.known_runtime("birds.keras") is forward_of("birds.keras")[0]


def test_a_damaged_or_stale_entry_is_rebuilt(tmp_path, caplog):
    path = tmp_path / "birds.keras"
    small_model(0).save(path)
    exported = cached_export(path, "onnx")
    record = read_record(path, "onnx")
    data = bytearray(exported.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    exported.write_bytes(bytes(data))
    with caplog.at_level(logging.INFO, logger="cnnzoo.deploy"):
        assert cached_export(path, "onnx") == exported
    from cnnzoo.utils.integrity import sha256_file

    said = [r.getMessage() for r in caplog.records]
    assert sum("is missing or damaged" in m for m in said) == 1 and sum(m.startswith("exporting ") for m in said) == 1
    assert read_record(path, "onnx")["sha256"] == sha256_file(exported)
    stale = {**record, "tools": {**record["tools"], "onnxruntime": "0.0.1"}}  # made by other tools
    cached_paths(path, "onnx")[1].write_text(json.dumps(stale))
    cached_export(path, "onnx")
    assert read_record(path, "onnx")["tools"] == record["tools"]


@pytest.mark.parametrize("layer, reason", [(0, "could not be exported"), (1, "tolerance")])
def test_an_export_that_fails_or_disagrees_falls_back_to_keras_once(tmp_path, images, caplog, layer, reason):
    _, files = images
    path = tmp_path / "custom.keras"
    model = small_model(0, _layers()[layer])
    model.save(path)
    with caplog.at_level(logging.INFO, logger="cnnzoo.deploy"):
        first = cnnzoo.predict(path, files[:2], top_k=3)
        cnnzoo.predict(path, files[:2], top_k=3)
    fallbacks = [r for r in caplog.records if "runs on Keras" in r.getMessage()]
    assert len(fallbacks) == 1 and reason in fallbacks[0].getMessage()  # one line, saying why
    assert len(first) == 2 and type(forward_of(path)[0]).__name__ == "_Predictor"
    record_path = cached_paths(path, "onnx")[1]
    record = json.loads(record_path.read_text())
    assert record["status"] == "failed" and reason in record["reason"]
    stamp = record_path.stat().st_mtime_ns
    fast._BY_FILE.clear()  # as a new process would: the failure is read from the cache, not tried again
    with caplog.at_level(logging.INFO, logger="cnnzoo.deploy"):
        cnnzoo.predict(path, files[0])
    assert record_path.stat().st_mtime_ns == stamp and "exporting" not in caplog.records[-1].getMessage()
    with pytest.raises(ExportError, match=reason):
        cnnzoo.predict(path, files[0], runtime="onnx")  # asked for: no fallback


def test_without_the_export_extra_auto_runs_keras_and_says_so(tmp_path, images, caplog, monkeypatch):
    _, files = images
    path = tmp_path / "birds.keras"
    small_model(2).save(path)
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # an environment without the extra: its import fails
    with caplog.at_level(logging.INFO, logger="cnnzoo.deploy"):
        got = cnnzoo.predict(path, files[0])
    assert got.label in NAMES and type(forward_of(path)[0]).__name__ == "_Predictor"
    (line,) = [r.getMessage() for r in caplog.records if "runs on Keras" in r.getMessage()]
    assert "pip install 'cnnzoo[export]'" in line
    assert not cached_paths(path, "onnx")[1].exists()  # nothing remembered: installing the extra is enough


BUILD = """
import logging, os, sys, time
logging.basicConfig(level=logging.INFO, format="%(message)s")
from cnnzoo.deploy.exported_cache import cached_export
while not os.path.exists(sys.argv[2]):
    time.sleep(0.01)
print("PATH", cached_export(sys.argv[1], "onnx"))
"""


@pytest.mark.slow
def test_two_processes_building_one_entry_take_turns(tmp_path):
    path = tmp_path / "birds.keras"
    small_model(3).save(path)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [PYTHON, "-c", BUILD, str(path), str(go)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    go.write_text("go")  # both start at once (each waits for this file after its imports)
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    paths = {line.split(" ", 1)[1] for out in outs for line in out.splitlines() if line.startswith("PATH ")}
    assert paths == {str(cached_paths(path, "onnx")[0])}
    assert sum(out.count("exporting ") for out in outs) == 1  # one built it, the other waited and used it
    record = read_record(path, "onnx")
    assert record["status"] == "ok"
    from cnnzoo.utils.integrity import sha256_file

    assert sha256_file(cached_paths(path, "onnx")[0]) == record["sha256"]  # the file its record describes
    assert [p.name for p in cached_paths(path, "onnx")[0].parent.iterdir() if "partial" in p.name] == []


def test_serve_answers_from_the_verified_export_and_says_so(tmp_path, images):
    pytest.importorskip("starlette", reason="the `serve` extra is not installed")
    from cnnzoo.deploy.serve import create_app, running

    _, files = images
    path = tmp_path / "birds.keras"
    small_model(0).save(path)
    with running(create_app(path, top_k=3)) as url:
        info = json.loads(urllib.request.urlopen(url + "/info").read())
        request = urllib.request.Request(url + "/predict", data=open(files[0], "rb").read(), method="POST")
        answer = json.loads(urllib.request.urlopen(request).read())
    assert info["runtime"] == "onnx" and info["verified"]["top1_agreement"] == 1.0
    assert "ONNX Runtime, verified against Keras" in info["runtime_note"] and info["parameters"] > 0
    expected = cnnzoo.predict(path, files[0], top_k=3, runtime="keras")
    assert answer["label"] == expected.label and answer["probability"] == pytest.approx(expected.probability, abs=1e-5)
    with running(create_app(path, top_k=3, runtime="tensorflow")) as url:
        info = json.loads(urllib.request.urlopen(url + "/info").read())
    assert info["runtime"] == "tensorflow" and info["verified"] is None
