"""`cnnzoo finetune`, `cnnzoo predict` and `cnnzoo demo`, run as real subprocesses."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import PYTHON, REPO, write_image_folder


def cnnzoo_cli(*args, cwd=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [PYTHON, "-m", "cnnzoo.cli", *map(str, args)],
        cwd=cwd or REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """One `cnnzoo finetune` run on a real three-class folder, shared by the tests below."""
    root = tmp_path_factory.mktemp("cli")
    folder = write_image_folder(root / "birds", classes=("heron", "owl", "robin"), per_class=6, size=(16, 16))
    out = root / "run"
    done = cnnzoo_cli(
        "finetune", "digits_cnn", folder, "--input-shape", "12x12x3", "--stages", "all:2:1e-3", "--out", out, "--quiet"
    )
    return folder, out, done


def test_finetune_trains_saves_and_reports(finetuned):
    folder, out, done = finetuned
    assert done.returncode == 0, done.stderr[-3000:]
    # cnnzoo's own summary, with the numbers the run recorded in its state file (not Keras's progress lines).
    state = json.loads((out / "state.json").read_text())
    assert state["finished"] and len(state["history"]["1"]) == 2
    last = state["history"]["1"][-1]
    assert f"digits_cnn fine-tuned on {folder} (3 classes) in " in done.stdout
    assert (
        f"  stage 1 all:2:0.001 (2 epochs): accuracy {last['accuracy']:.4f}  loss {last['loss']:.4f}  "
        f"val_accuracy {last['val_accuracy']:.4f}  val_loss {last['val_loss']:.4f}"
    ) in done.stdout
    best = max(epoch["val_accuracy"] for epoch in state["history"]["1"])
    assert f"validation accuracy: {state['val_accuracy']:.2%} (best epoch {best:.2%})" in done.stdout
    model = out / "digits_cnn.keras"
    assert f"saved: {model}" in done.stdout and model.is_file()
    for name in ("learning_curve.png", "confusion_matrix.png"):
        assert (out / name).stat().st_size > 1000 and str(out / name) in done.stdout
    assert "cnnzoo: stage 1/all" in done.stderr  # progress log lines


def test_predict_json_for_scripts(finetuned):
    folder, out, _ = finetuned
    images = [folder / "owl" / "0.png", folder / "heron" / "1.png"]
    done = cnnzoo_cli("predict", out / "digits_cnn.keras", *images, "--json", "--top-k", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)
    assert [r["source"] for r in rows] == [str(p) for p in images]
    for r in rows:
        assert r["label"] in ("heron", "owl", "robin") and r["label"] == r["top_k"][0]["label"]
        assert len(r["top_k"]) == 2 and 0 <= r["top_k"][1]["probability"] <= r["probability"] <= 1
    text = cnnzoo_cli("predict", out / "digits_cnn.keras", folder)  # a directory: all its images
    assert text.returncode == 0, text.stderr[-3000:]
    assert len(text.stdout.strip().splitlines()) == 18 and "%" in text.stdout
    assert f"cnnzoo evaluate {out / 'digits_cnn.keras'} {folder}" in text.stderr  # class sub-folders: labelled


def test_errors_name_the_argument_and_keep_the_run(finetuned, tmp_path):
    folder, out, _ = finetuned
    done = cnnzoo_cli("predict", tmp_path / "missing.keras", folder / "owl" / "0.png")
    assert done.returncode == 2
    assert "cnnzoo: error: `model` must be a keras.Model or an existing .keras file" in done.stderr
    before = (out / "digits_cnn.keras").read_bytes()
    done = cnnzoo_cli(
        "finetune", "digits_cnn", folder, "--input-shape", "12x12x3", "--stages", "all:3:1e-3", "--out", out
    )
    assert done.returncode == 2 and "`out` already holds a different fine-tuning run" in done.stderr
    assert (out / "digits_cnn.keras").read_bytes() == before
    done = cnnzoo_cli("finetune", "digits_cnn", tmp_path / "nowhere", "--out", tmp_path / "x")
    assert done.returncode == 2 and "cnnzoo: error: `data` must be an image-folder path" in done.stderr
    assert "which does not exist" in done.stderr and not (tmp_path / "x").exists()


def test_demo_end_to_end_small(tmp_path):
    # The real `make demo` path, at 8x8 with a small zoo CNN and 2 epochs to stay quick.
    done = cnnzoo_cli(
        "demo", "--model", "digits_cnn", "--image-size", "8", "--epochs", "2", "--out", tmp_path, "--quiet"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "test accuracy:" in done.stdout and "RBF-SVM reference: 98.9-99.2%" in done.stdout
    assert (tmp_path / "run" / "digits_cnn.keras").is_file()
    assert len(list((tmp_path / "digits" / "test").rglob("*.png"))) == 360
    labelled = [line for line in done.stdout.splitlines() if "  true " in line]  # cnnzoo.predict's lines
    assert len(labelled) == 6 and all(Path(line.split(":")[0].strip()).is_file() for line in labelled)
    assert f"validation confusion matrix: {tmp_path / 'run' / 'confusion_matrix.png'}" in done.stdout
    # the printed score is on the test images: so are the confusion matrix and the mistakes shown beside it
    assert f"test confusion matrix: {tmp_path / 'test' / 'confusion_matrix.png'}" in done.stdout
    assert (tmp_path / "test" / "top_losses.png").is_file() and "the test set's " in done.stdout
    shown = [line for line in done.stdout.splitlines() if line.startswith("  ") and ", true " in line]
    assert all(Path(line.split(":")[0].strip()).parent.parent == tmp_path / "digits" / "test" for line in shown)
