"""`cnnzoo explain`, run as a real subprocess on a model saved by a real fine-tuning run."""

import json
import os
import subprocess

import numpy as np
import pytest

import cnnzoo
from conftest import PYTHON, REPO, write_image_folder


def cnnzoo_cli(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [PYTHON, "-m", "cnnzoo.cli", *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A `.keras` file written by `cnnzoo.finetune` (what `cnnzoo finetune` runs) and its image folder."""
    root = tmp_path_factory.mktemp("explain")
    folder = write_image_folder(root / "birds", classes=("heron", "owl", "robin"), per_class=6, size=(20, 20))
    result = cnnzoo.finetune(
        "digits_cnn", folder, input_shape=(16, 16, 3), stages="all:2:1e-3", out=root / "run", verbose=0, plots=False
    )
    return folder, result.model_path


def _png_size(path):
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_explain_writes_gradcam_and_feature_maps_for_each_image(saved, tmp_path):
    folder, model = saved
    images = [folder / "owl" / "0.png", folder / "heron" / "0.png"]  # same file name: folders keep them apart
    out = tmp_path / "explained"
    done = cnnzoo_cli("explain", model, *images, "--out", out, "--top-k", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    written = [line.split("wrote ", 1)[1] for line in done.stdout.splitlines() if line.startswith("  wrote ")]
    assert written and all(os.path.isfile(p) for p in written)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == sorted(
        os.path.relpath(p, out) for p in written
    )  # it printed every file it wrote
    truth = {p: cnnzoo.predict(model, p, top_k=2) for p in images}
    for image in images:
        p = truth[image]
        line = f"{image}: {p.top_k[0][0]} {p.top_k[0][1]:.1%}   {p.top_k[1][0]} {p.top_k[1][1]:.1%}"
        assert line in done.stdout
    for sub in ("owl_0", "heron_0"):
        assert min(_png_size(out / sub / "gradcam.png")) >= 224  # the 20x20 image enlarged, titled, a colour bar
        maps = sorted(f.stem for f in (out / sub / "feature_maps").glob("*.png"))
        assert maps == ["block1_conv1", "block1_conv2", "block2_conv2", "block2_pool"]  # one per block, first conv
    assert "2 images explained in" in done.stdout


def test_explain_json_layers_and_errors(saved, tmp_path):
    folder, model = saved
    done = cnnzoo_cli(
        "explain",
        model,
        folder / "robin",
        "--out",
        tmp_path / "x",
        "--layers",
        "block1_pool",
        "--json",
        "--max-channels",
        "4",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)
    assert len(rows) == 6 and all(r["label"] in ("heron", "owl", "robin") for r in rows)
    for r in rows:
        assert len(r["top_k"]) == 3 and list(r["feature_maps"]) == ["block1_pool"]
        assert os.path.isfile(r["gradcam"]) and os.path.isfile(r["feature_maps"]["block1_pool"])
    from PIL import Image

    overlay = np.asarray(Image.open(rows[0]["gradcam"]))
    assert min(overlay.shape[:2]) >= 224 and overlay.std() > 0

    wrong = cnnzoo_cli("explain", model, folder / "owl" / "0.png", "--out", tmp_path / "y", "--layers", "block9_conv")
    assert wrong.returncode == 2 and "`layers`" in wrong.stderr and "block9_conv" in wrong.stderr
    missing = cnnzoo_cli("explain", tmp_path / "nope.keras", folder / "owl" / "0.png", "--out", tmp_path / "z")
    assert missing.returncode == 2 and "nope.keras" in missing.stderr
