"""A `.keras` file written by cnnzoo 0.1.0 (the flat layout, layers saved as module `cnnzoo.layers`) still loads
and gives the probabilities it gave then. How the fixture was made: tests/fixtures/README_make_fixture.txt."""

import json
import subprocess
import zipfile

import numpy as np
import pytest

import cnnzoo
from conftest import PYTHON, REPO

FIXTURES = REPO / "tests" / "fixtures"
MODEL = FIXTURES / "digits_cnn_v0.1.0.keras"
EXPECTED = FIXTURES / "digits_cnn_v0.1.0_expected.npz"
CLASS_NAMES = [f"digit_{i}" for i in range(10)]


@pytest.fixture(scope="module")
def expected():
    with np.load(EXPECTED) as f:
        x, probabilities = f["x"], f["probabilities"]
    assert x.shape == (16, 8, 8, 1) and probabilities.shape == (16, 10)
    return x, probabilities


def test_the_fixture_is_the_old_release_file():
    assert MODEL.stat().st_size < 200_000
    with zipfile.ZipFile(MODEL) as z:
        config = json.loads(z.read("config.json"))
        metadata = json.loads(z.read("metadata.json"))
    layers = {layer["name"]: layer for layer in config["config"]["layers"]}
    # Written before the move into subpackages: the cnnzoo layers name the old flat module.
    assert layers["preprocess"]["module"] == "cnnzoo.layers"
    assert layers["preprocess"]["registered_name"] == "cnnzoo>Preprocess"
    assert layers["head"]["config"]["class_names"] == CLASS_NAMES
    assert metadata["keras_version"].startswith("3.")


def test_cnnzoo_load_gives_the_saved_probabilities_and_labels(expected):
    x, probabilities = expected
    model = cnnzoo.load(MODEL)
    np.testing.assert_allclose(model.predict(x, verbose=0), probabilities, atol=1e-5)
    assert cnnzoo.layers.class_names_of(model) == CLASS_NAMES
    assert model.compiled  # saved compiled; loads compiled
    predictions = cnnzoo.predict(model, x, top_k=3)
    assert [p.label for p in predictions] == [CLASS_NAMES[i] for i in probabilities.argmax(axis=1)]
    for p, row in zip(predictions, probabilities):
        assert p.probability == pytest.approx(float(row.max()), abs=1e-5)
        assert [label for label, _ in p.top_k] == [CLASS_NAMES[i] for i in np.argsort(-row)[:3]]
    from_path = cnnzoo.predict(MODEL, x)  # the path form loads it the same way
    assert [p.label for p in from_path] == [p.label for p in predictions]


def test_plain_keras_load_model_after_import_cnnzoo_in_a_fresh_process(expected, tmp_path):
    x, probabilities = expected
    script = f"""
import json, sys
import numpy as np
import cnnzoo
assert "tensorflow" not in sys.modules and "keras" not in sys.modules  # importing cnnzoo stays cheap
import keras
model = keras.saving.load_model({str(MODEL)!r}, safe_mode=True)
with np.load({str(EXPECTED)!r}) as f:
    x = f["x"]
head = model.layers[-1]
print(json.dumps({{"probabilities": model.predict(x, verbose=0).tolist(),
                  "class_names": head.get_config()["class_names"],
                  "head": type(head).__module__ + "." + type(head).__name__,
                  "labels": [p.label for p in cnnzoo.predict(model, x)]}}))
"""
    proc = subprocess.run(
        [PYTHON, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env={
            "PATH": "/usr/bin:/bin",
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "HOME": str(tmp_path),
            "CNNZOO_HOME": str(tmp_path / "cnnzoo_home"),
        },
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(np.array(out["probabilities"]), probabilities, atol=1e-5)
    assert out["class_names"] == CLASS_NAMES
    assert out["head"] == "cnnzoo.zoo.layers.ClassifierHead"  # the old name resolved to today's class
    assert out["labels"] == [CLASS_NAMES[i] for i in probabilities.argmax(axis=1)]
