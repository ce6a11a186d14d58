"""`cnnzoo.backend.inference.compiled_forward`, and through it `cnnzoo.predict`, `cnnzoo.evaluate`, TTA,
`cnnzoo serve`, `cnnzoo predict` and the feature cache, on each Keras backend.

A tiny zoo model (BatchNorm with non-trivial statistics, Dropout) is saved under TensorFlow in the test
process, which also computes the reference probabilities; each other backend loads the file in a
subprocess and must give the same numbers (float32 round-off: 1e-4).
"""

import gc
import json
import os
import subprocess
import weakref

import numpy as np
import pytest

import cnnzoo
from cnnzoo.backend.inference import compiled_forward
from cnnzoo.finetuning.freezing import batchnorm_layers
from conftest import PYTHON, REPO, on_backend

SIZE = 12
TOLERANCE = 1e-4


def tiny_model(seed=0):
    """A two-block zoo CNN with BatchNorm (random moving statistics) and Dropout, 3 classes."""
    import keras

    keras.utils.set_random_seed(seed)
    model = cnnzoo.get(
        "bird_classifier",
        num_classes=3,
        input_shape=(SIZE, SIZE, 3),
        compile=False,
        blocks=[{"filters": 4, "batch_norm": True}, {"filters": 8, "batch_norm": True, "dropout": 0.3}],
        dense=[8],
        dropout=0.5,
    )
    rng = np.random.default_rng(seed)
    for layer in batchnorm_layers(model):
        layer.moving_mean.assign(rng.normal(0, 0.5, layer.moving_mean.shape))
        layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
    return model


def images(n=5, seed=1):
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3)).astype("uint8")


def halved(model):
    """The model with every weight halved (what the subprocess does after its predictor is cached)."""
    model.set_weights([w * 0.5 for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """`(path of the .keras file, the images, a PNG of the first, TensorFlow's reference numbers)`."""
    import keras
    import tensorflow as tf
    from PIL import Image

    from cnnzoo.finetuning.results import evaluate

    root = tmp_path_factory.mktemp("backends")
    model = tiny_model()
    path = root / "tiny.keras"
    model.save(path)
    x, labels = images(), np.array([0, 1, 2, 0, 1])
    png = root / "first.png"
    Image.fromarray(x[0]).save(png)
    dataset = tf.data.Dataset.from_tensor_slices((x.astype("float32"), labels)).batch(2)
    accuracy, matrix = evaluate(model, dataset, 3)
    extractor = keras.Model(model.inputs, model.get_layer("head").input)
    reference = {
        "probs": probabilities(cnnzoo.predict(model, x, top_k=3)),
        "tta": probabilities(cnnzoo.predict(model, x, top_k=3, tta=True)),
        "png": cnnzoo.predict(model, png, top_k=3).to_dict(),
        "evaluate": [accuracy, matrix.tolist()],
        "features": extractor.predict(x.astype("float32"), verbose=0).tolist(),
    }
    reference["halved"] = probabilities(cnnzoo.predict(halved(model), x, top_k=3))
    return path, x, png, reference


def probabilities(predictions):
    """Each prediction's probabilities in class-name order."""
    return [[q for _, q in sorted(p.top_k)] for p in predictions]


def test_compiled_forward_is_the_inference_call_on_tensorflow():
    import keras

    model = tiny_model()
    x = images(7).astype("float32")
    forward = compiled_forward(model)
    got = forward(x)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (7, 3)
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(model(x, training=False)), atol=1e-6)
    forward(x[:2])
    assert forward.compiled.experimental_get_tracing_count() == 1  # one trace for every batch size
    halved(model)
    np.testing.assert_allclose(forward(x), keras.ops.convert_to_numpy(model(x, training=False)), atol=1e-6)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None  # the forward pass does not keep its model alive


# On the other backend: predict (arrays, a .keras path, TTA), evaluate on a tf.data dataset, the feature
# cache's features, serve's /predict and /info, and the cached predictor after set_weights.
# Keras (and with it the backend) is imported before TensorFlow: on the torch backend, TensorFlow >= 2.20
# loaded first makes torch's import of triton segfault (tensorflow/tensorflow#124205).
IN_SUBPROCESS = """
import json
import keras
import numpy as np
import tensorflow as tf
import cnnzoo
from cnnzoo.deploy.inference import predictor
from cnnzoo.deploy.serve import create_app, running
from cnnzoo.finetuning.features import cached_head_model
from cnnzoo.finetuning.results import evaluate
from cnnzoo.zoo.loading import load
from types import SimpleNamespace
import urllib.request

path, png = {path!r}, {png!r}
x = np.load({x!r})
labels = np.array([0, 1, 2, 0, 1])
probs = lambda ps: [[q for _, q in sorted(p.top_k)] for p in ps]
out = {{"from_path": probs(cnnzoo.predict(path, x, top_k=3, runtime="keras"))}}
model = load(path, compile=False)
out["probs"] = probs(cnnzoo.predict(model, x, top_k=3))
out["tta"] = probs(cnnzoo.predict(model, x, top_k=3, tta=True))
out["png"] = cnnzoo.predict(model, png, top_k=3).to_dict()
dataset = tf.data.Dataset.from_tensor_slices((x.astype("float32"), labels)).batch(2)
accuracy, matrix = evaluate(model, dataset, 3)
out["evaluate"] = [accuracy, matrix.tolist()]
parts = SimpleNamespace(model=model, head=model.get_layer("head"))
inputs = SimpleNamespace(plain_train=dataset, validation=dataset, batch_size=2)
head_model, _, validation = cached_head_model(parts, inputs, seed=0)
out["features"] = np.concatenate([f.numpy() for f, _ in validation]).tolist()
app = create_app(model, top_k=3)
with running(app) as url:
    request = urllib.request.Request(url + "/predict", data=open(png, "rb").read(), method="POST")
    out["served"] = json.loads(urllib.request.urlopen(request).read())
    out["runtime"] = json.loads(urllib.request.urlopen(url + "/info").read())["runtime"]
cached = predictor(model)
model.set_weights([w * 0.5 for w in model.get_weights()])
assert predictor(model) is cached
out["halved"] = probs(cnnzoo.predict(model, x, top_k=3))
print(json.dumps(out))
"""


@pytest.mark.backends
def test_predict_evaluate_tta_serve_and_features_match_tensorflow(saved, other_backend, tmp_path):
    path, x, png, reference = saved
    np.save(tmp_path / "x.npy", x)
    got = on_backend(other_backend, IN_SUBPROCESS.format(path=str(path), png=str(png), x=str(tmp_path / "x.npy")))
    for key in ("probs", "tta", "features", "halved"):
        np.testing.assert_allclose(got[key], reference[key], atol=TOLERANCE, err_msg=key)
    np.testing.assert_allclose(got["from_path"], reference["probs"], atol=TOLERANCE)
    assert np.abs(np.asarray(got["halved"]) - got["probs"]).max() > 1e-2  # the new weights were used
    assert got["evaluate"] == reference["evaluate"]
    for served in (got["png"], got["served"]):
        assert served["label"] == reference["png"]["label"]
        assert served["probability"] == pytest.approx(reference["png"]["probability"], abs=TOLERANCE)
    assert got["runtime"] == other_backend


@pytest.mark.backends
def test_cli_predict_json_matches_tensorflow(saved, other_backend):
    path, _, png, reference = saved
    env = {**os.environ, "KERAS_BACKEND": other_backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [PYTHON, "-m", "cnnzoo.cli", "predict", str(path), str(png), "--json", "--top-k", "3", "--runtime", "keras"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    (got,) = json.loads(done.stdout)
    assert [t["label"] for t in got["top_k"]] == [t["label"] for t in reference["png"]["top_k"]]
    np.testing.assert_allclose(
        [t["probability"] for t in got["top_k"]],
        [t["probability"] for t in reference["png"]["top_k"]],
        atol=TOLERANCE,
    )
