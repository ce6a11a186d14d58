"""`cnnzoo evaluate MODEL DATA`, run as a real subprocess on a model saved by a real fine-tuning run."""

import json
import os
import subprocess

import numpy as np
import pytest

import cnnzoo
from conftest import PYTHON, REPO, brightness_blobs, write_image_folder

CLASSES = ("heron", "owl", "robin")


def cnnzoo_cli(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [PYTHON, "-m", "cnnzoo.cli", *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A zoo CNN trained a little and saved as `.keras`, and a test folder of Pillow-written images of its classes."""
    import keras

    root = tmp_path_factory.mktemp("evaluate")
    keras.utils.set_random_seed(0)
    model = cnnzoo.get(
        "digits_cnn", num_classes=3, input_shape=(12, 12, 3), class_names=list(CLASSES), blocks=[{"filters": 4}]
    )
    x, y = brightness_blobs(48, 3, seed=0, size=12)
    model.fit(x, y, epochs=1, verbose=0)
    model.save(root / "birds.keras")
    return root / "birds.keras", write_image_folder(root / "test", classes=CLASSES, per_class=4, size=(20, 20))


def test_evaluate_prints_the_scores_and_writes_the_pictures(saved, tmp_path):
    model, test = saved
    out = tmp_path / "eval"
    done = cnnzoo_cli("evaluate", model, test, "--out", out, "--top-losses", "4")  # no split, no class count
    assert done.returncode == 0, done.stderr[-3000:]
    interp = cnnzoo.interpret(model, test)  # what the command scored, in Python
    lines = done.stdout.splitlines()
    assert lines[0] == f"digits_cnn on 12 images of the folder {str(test)!r}:"
    assert interp.report() in done.stdout and f"accuracy {interp.accuracy:.2%}" in done.stdout
    for true, predicted, count in interp.most_confused():
        assert f"{true} as {predicted} ({count})" in done.stdout
    mistakes = [line for line in lines if line.startswith("  ") and ": true " in line]
    assert len(mistakes) == min(10, len(interp.mistakes))
    for line, i in zip(mistakes, interp.mistakes):
        assert line.startswith(f"  {interp.sources[i]}: true ")
    for name in ("confusion_matrix.png", "top_losses.png", "metrics.json"):
        assert f"wrote {out / name}" in done.stdout and (out / name).stat().st_size > 100
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["confusion_matrix"] == interp.confusion_matrix.tolist() and len(metrics["top_losses"]) == 4
    np.testing.assert_allclose([t["loss"] for t in metrics["top_losses"]], interp.top_losses(4)[0], rtol=1e-5)


def test_evaluate_json_and_a_bad_argument(saved, tmp_path):
    model, test = saved
    done = cnnzoo_cli("evaluate", model, test, "--out", tmp_path / "j", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout)
    assert answer["images"] == 12 and [c["name"] for c in answer["classes"]] == ["heron", "owl", "robin"]
    assert set(answer["written"]) == {"confusion_matrix", "top_losses", "metrics"}
    wrong = cnnzoo_cli("evaluate", model, test, "--top-losses", "0")  # checked before TensorFlow loads
    assert wrong.returncode == 2 and "cnnzoo: error: `--top-losses` must be a positive int" in wrong.stderr
    assert "Traceback" not in wrong.stderr
