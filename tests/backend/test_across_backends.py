"""Files and runs that cross Keras backends: `.keras` files JAX <-> PyTorch, checkpoints resumed on another
backend (TensorFlow -> JAX -> PyTorch, PyTorch -> TensorFlow), a checkpoint that does not load refused and
kept, and `cnnzoo serve`'s `/explain` on JAX and PyTorch against TensorFlow's overlay.

One subprocess per other backend, both running at once with the test process (TensorFlow), handing
files to each other through a shared directory (`_ready` / `_wait`). One run (`ring`) is started here,
interrupted as its second stage's epoch 1 begins, goes on on JAX until epoch 2 begins, and is finished
on PyTorch (which so writes a fine-tuned file); PyTorch interrupts a run of its own that this process
finishes; JAX fits and saves a model (with its optimizer state). JAX and PyTorch read each other's file
and serve `/explain`. The decision these tests pin (README, "Backends"): runs resume on any backend,
since weights, iteration count, moments and EMA averages load unchanged; a file of the run that does not
load on this backend is refused with a `BackendError`, and nothing in the run is changed.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import cnnzoo
from conftest import PYTHON, REPO, brightness_blobs, crash_at, require_backend, write_image_folder

HERE = Path(__file__).resolve().parent
TOLERANCE = 1e-4  # float32 round-off between backends
OPTIONS = dict(stages="head:1:1e-2,all:3:1e-4..1e-3:one_cycle", ema=0.9, mixup=0.2, plots=False, verbose=0)
WAIT_S = 300  # longest wait for the other subprocess's file


def tiny():
    """The model every run here fine-tunes: a two-block zoo CNN with BatchNorm and Dropout, 12x12, 3 classes."""
    import keras

    keras.utils.set_random_seed(0)
    return cnnzoo.get(
        "bird_classifier",
        num_classes=3,
        input_shape=(12, 12, 3),
        compile=False,
        blocks=[{"filters": 4, "batch_norm": True}, {"filters": 8, "batch_norm": True}],
        dense=[8],
    )


def data():
    return brightness_blobs(48, 3, 0, 12)


def interrupted(out, epoch=1):
    """The run in `out` (started or resumed) stopped by a crash as its second stage's `epoch` begins; its state."""
    try:
        cnnzoo.finetune(tiny(), data(), out=out, callbacks=[crash_at(epoch)], **OPTIONS)
    except RuntimeError:
        pass
    return json.loads((Path(out) / "state.json").read_text())


def resumed(out):
    """The same call again: `{"resumed", "epochs" per stage, "state" before and after, "model" (its path)}`."""
    before = json.loads((Path(out) / "state.json").read_text())
    result = cnnzoo.finetune(tiny(), data(), out=out, **OPTIONS)
    after = json.loads((Path(out) / "state.json").read_text())
    epochs = [len(s.history["loss"]) for s in result.stages]
    return {
        "resumed": result.resumed,
        "epochs": epochs,
        "before": before,
        "after": after,
        "model": str(result.model_path),
    }


def fitted(path):
    """A model trained with `fit` (two epochs, Adam) and saved to `path` with its optimizer; what it reads as."""
    import keras

    model = tiny()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(*data(), epochs=2, batch_size=16, verbose=0)
    model.save(path)
    return read(path)


def read(path):
    """`cnnzoo.load(path)` on the backend this runs on: its predictions for six images and optimizer steps."""
    import keras

    x, _ = data()
    model = cnnzoo.load(path)
    probabilities = keras.ops.convert_to_numpy(model(x[:6], training=False)).tolist()
    return {"probabilities": probabilities, "iterations": int(keras.ops.convert_to_numpy(model.optimizer.iterations))}


def explained(model_path, image):
    """The PNG bytes `cnnzoo serve`'s POST /explain answers for the image file, served by a real uvicorn."""
    import urllib.request

    from cnnzoo.cli.serve import build_app
    from cnnzoo.deploy.serve import running

    with running(build_app(model_path), timeout=120) as url:
        request = urllib.request.Request(url + "/explain", data=Path(image).read_bytes(), method="POST")
        with urllib.request.urlopen(request) as answer:
            assert answer.headers["content-type"] == "image/png"
            return answer.read()


def per_unit_rates_apply():
    """Max change of each weight after one step with per-unit factors (0 for the first layer, 1 for the second)."""
    import keras

    from cnnzoo.finetuning import schedules

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="a"), keras.layers.Dense(2, name="b")])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    before = model.get_weights()
    scales = [(v, 0.0 if v.path.split("/")[-2] == "a" else 1.0) for v in model.trainable_weights]
    model.optimizer = schedules.per_unit(model.optimizer, scales)
    model.fit(np.ones((8, 4), "float32"), np.ones((8, 2), "float32"), epochs=1, verbose=0)
    return [float(np.abs(a - b).max()) for a, b in zip(before, model.get_weights())]


def _ready(root, name, value):
    """Hands `value` to the other subprocess as `root/name.json` (written whole, then renamed)."""
    path = Path(root) / f"{name}.json"
    path.with_suffix(".part").write_text(json.dumps(value))
    os.replace(path.with_suffix(".part"), path)


def _wait(root, name):
    """What the other subprocess handed over as `name`; fails after `WAIT_S` seconds."""
    path, deadline = Path(root) / f"{name}.json", time.monotonic() + WAIT_S
    while not path.is_file():
        if time.monotonic() > deadline or (Path(root) / "failed").exists():
            raise TimeoutError(f"the other backend never handed over {name!r}")
        time.sleep(0.2)
    return json.loads(path.read_text())


# The subprocesses; `root` is the shared directory.
_HEAD = """
import json, sys
from pathlib import Path
import cnnzoo  # before TensorFlow: on PyTorch it loads triton first
sys.path.insert(0, {here!r})
from test_across_backends import _ready, _wait, explained, fitted, interrupted, per_unit_rates_apply, read, resumed

root = Path({root!r})
out = {{}}
try:
"""
_JAX = """
    _wait(root, "ring_on_tensorflow")
    out["interrupted"] = interrupted(root / "ring", epoch=2)  # TensorFlow -> JAX, interrupted again
    _ready(root, "ring_on_jax", out["interrupted"])
    out["written"] = fitted(root / "jax.keras")
    _ready(root, "jax_file", out["written"])
    out["explain"] = explained(root / "jax.keras", root / "image.png").hex()
    _wait(root, "torch_file")
    out["read"] = read(root / "ring" / "bird_classifier.keras")  # fine-tuned on PyTorch
"""
_TORCH = """
    out["interrupted"] = interrupted(root / "torch_run")
    _ready(root, "torch_run", out["interrupted"])
    out["per_unit"] = per_unit_rates_apply()
    _wait(root, "ring_on_jax")
    out["resumed"] = resumed(root / "ring")  # JAX -> PyTorch
    out["written"] = read(out["resumed"]["model"])
    _ready(root, "torch_file", out["written"])
    out["explain"] = explained(out["resumed"]["model"], root / "image.png").hex()
    _wait(root, "jax_file")
    out["read"] = read(root / "jax.keras")  # fitted and saved on JAX
"""
_TAIL = """
except BaseException:
    (root / "failed").touch()  # the others stop waiting
    raise
print(json.dumps(out))
"""


def _start(backend, body, root):
    """The subprocess running `body` under `KERAS_BACKEND=backend` (tests/ on its path, its own CNNZOO_HOME)."""
    path = os.pathsep.join(p for p in (str(REPO / "tests"), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": path}
    env["CNNZOO_HOME"] = str(Path(root) / f"home_{backend}")
    code = textwrap.dedent(_HEAD.format(here=str(HERE), root=str(root)) + body + _TAIL)
    return subprocess.Popen(
        [PYTHON, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _crossing(root):
    """Runs the JAX and the PyTorch subprocess and this process's TensorFlow part at once; `{backend: outputs}`."""
    root = Path(root)
    children = {"jax": _start("jax", _JAX, root), "torch": _start("torch", _TORCH, root)}
    mine, problem = {}, None
    try:
        mine["interrupted"] = interrupted(root / "ring")
        _ready(root, "ring_on_tensorflow", mine["interrupted"])
        _wait(root, "torch_run")
        shutil.copytree(root / "torch_run", root / "kept_run")  # a PyTorch checkpoint, before it is resumed
        mine["resumed"] = resumed(root / "torch_run")  # PyTorch -> TensorFlow
    except Exception as e:
        (root / "failed").touch()
        problem = e
    try:
        done = {backend: child.communicate(timeout=600) for backend, child in children.items()}
    finally:
        for child in children.values():
            if child.poll() is None:
                child.kill()
    failed = {b: err[-4000:] for b, (_, err) in done.items() if children[b].returncode != 0}
    message = "\n".join(f"under KERAS_BACKEND={b}:\n{err}" for b, err in failed.items())
    assert problem is None and not failed, f"here: {problem!r}\n{message}"
    got = {backend: json.loads(stdout.strip().splitlines()[-1]) for backend, (stdout, _) in done.items()}
    return {**got, "tensorflow": mine}


def _digests(directory):
    """`{relative path: sha256}` of every file in `directory` but the run lock (which holds the last owner)."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(directory).rglob("*"))
        if p.is_file() and not p.name.startswith(".cnnzoo.lock")
    }


def _without_one_optimizer_variable(run):
    """Removes the last optimizer variable from `run`'s epoch checkpoint: an optimizer state this Adam cannot take
    (as one kept by another backend's optimizer would be), written whole (its SHA-256 sidecar matches); returns
    the checkpoint's path."""
    import h5py

    from cnnzoo.utils.integrity import write_sidecar

    (checkpoint,) = (Path(run) / "backup" / "stage_2").glob("epoch_*.weights.h5")
    with h5py.File(checkpoint, "r+") as f:
        del f["optimizer/vars"][max(f["optimizer/vars"], key=int)]
    write_sidecar(checkpoint)
    return checkpoint


@pytest.fixture(scope="module")
def crossed(tmp_path_factory):
    """`(shared directory, {backend: what it did})`: TensorFlow here, JAX and PyTorch in their subprocesses."""
    for name in ("jax", "torch"):
        require_backend(name)
    root = tmp_path_factory.mktemp("across")
    images = write_image_folder(root / "images", classes=("a",), per_class=1, size=(20, 16))
    shutil.copy(images / "a" / "0.png", root / "image.png")
    return root, _crossing(root)


@pytest.mark.backends
def test_files_fitted_on_jax_and_finetuned_on_pytorch_predict_the_same_on_the_other(crossed):
    _, got = crossed
    jax_file, torch_file = got["jax"]["written"], got["torch"]["written"]
    assert got["torch"]["read"]["iterations"] == jax_file["iterations"] == 6  # its optimizer state came along
    np.testing.assert_allclose(got["torch"]["read"]["probabilities"], jax_file["probabilities"], atol=TOLERANCE)
    assert got["jax"]["read"]["iterations"] == torch_file["iterations"] == 0  # finetune saves a fresh optimizer
    np.testing.assert_allclose(got["jax"]["read"]["probabilities"], torch_file["probabilities"], atol=TOLERANCE)
    assert np.abs(np.subtract(jax_file["probabilities"], torch_file["probabilities"])).max() > 1e-3  # two models


def _epochs(state, stage=2):
    return [r["epoch"] for r in state["history"][str(stage)]]


@pytest.mark.backends
def test_a_run_goes_on_from_tensorflow_to_jax_to_pytorch_each_at_its_next_epoch(crossed):
    _, got = crossed
    on_tf, on_jax, finished = got["tensorflow"]["interrupted"], got["jax"]["interrupted"], got["torch"]["resumed"]
    assert on_tf["backends"] == ["tensorflow"] and _epochs(on_tf) == [0]  # stopped as stage 2's epoch 1 began
    assert on_jax["backend"] == "jax" and on_jax["backends"] == ["tensorflow", "jax"] and _epochs(on_jax) == [0, 1]
    assert finished["before"] == on_jax and finished["resumed"] is True and finished["epochs"] == [1, 3]
    after = finished["after"]
    assert after["finished"] is True and after["backends"] == ["tensorflow", "jax", "torch"]
    assert _epochs(after) == [0, 1, 2] and after["history"]["1"] == on_tf["history"]["1"]
    assert after["history"]["2"][:2] == [on_tf["history"]["2"][0], on_jax["history"]["2"][1]]  # each kept


@pytest.mark.backends
def test_a_run_interrupted_on_pytorch_finishes_on_tensorflow(crossed):
    _, got = crossed
    on_torch, finished = got["torch"]["interrupted"], got["tensorflow"]["resumed"]
    assert on_torch["backend"] == "torch" and on_torch["backends"] == ["torch"] and _epochs(on_torch) == [0]
    assert finished["resumed"] is True and finished["epochs"] == [1, 3]
    after = finished["after"]
    assert (
        after["finished"] is True and after["backend"] == "tensorflow" and after["backends"] == ["torch", "tensorflow"]
    )
    assert _epochs(after) == [0, 1, 2] and after["history"]["2"][0] == on_torch["history"]["2"][0]
    assert Path(finished["model"]).is_file() and not (Path(finished["model"]).parent / "backup").exists()


@pytest.mark.backends
def test_a_checkpoint_that_does_not_load_on_this_backend_is_refused_and_kept(crossed):
    from cnnzoo.errors import BackendError

    root, _ = crossed
    kept = root / "kept_run"  # interrupted on PyTorch
    checkpoint = _without_one_optimizer_variable(kept)
    before = _digests(kept)
    with pytest.raises(BackendError) as caught:
        cnnzoo.finetune(tiny(), data(), out=kept, **OPTIONS)
    message = str(caught.value)
    assert "written on the Keras backend 'torch'" in message and "does not load on 'tensorflow'" in message
    assert str(checkpoint) in message and "Skipping variable loading for optimizer" in message
    assert "Resume it with KERAS_BACKEND=torch, or start a fresh run in a new `out`" in message
    assert isinstance(caught.value, ValueError) and f"out={str(kept)!r}" in message
    assert _digests(kept) == before  # nothing removed or rewritten


def test_on_its_own_backend_a_checkpoint_without_its_optimizer_state_is_not_resumed_with_a_fresh_one(tmp_path, caplog):
    """Keras only warns and skips an optimizer state that does not fit; resuming would restart the schedule and the
    moments silently. `restore` reports the checkpoint, removes it, and its stage runs again."""
    import keras

    from cnnzoo.finetuning import checkpoints

    model = tiny()
    model.compile(optimizer=keras.optimizers.Adam(1e-3, use_ema=True), loss="sparse_categorical_crossentropy")
    model.fit(*data(), epochs=1, batch_size=16, verbose=0)
    path = checkpoints.atomic_save_weights(model, tmp_path / "run" / "backup" / "stage_2" / "epoch_0001.weights.h5")
    assert checkpoints.restore(model, path) is True  # as saved: it loads
    _without_one_optimizer_variable(tmp_path / "run")
    weights = model.get_weights()
    with caplog.at_level("WARNING", logger="cnnzoo.finetuning"):
        assert checkpoints.restore(model, path) is False
    assert f"checkpoint {path} is unreadable (ValueError: Skipping variable loading for optimizer" in caplog.text
    assert not path.exists() and all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))


@pytest.mark.backends
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_serve_explain_on_each_backend_draws_tensorflows_overlay(crossed, backend):
    from cnnzoo.cli.serve import gradcam_explainer
    from cnnzoo.deploy.serve_inputs import decode_image

    root, got = crossed
    picture = decode_image(bytes.fromhex(got[backend]["explain"]), None, 3)  # the PNG /explain answered
    photo = decode_image((root / "image.png").read_bytes(), None, 3)
    assert photo.shape == (20, 16, 3) and min(picture.shape[:2]) >= 224  # enlarged, titled, with a colour bar
    served = {"jax": root / "jax.keras", "torch": root / "ring" / "bird_classifier.keras"}[backend]
    model = cnnzoo.load(served, compile=False)
    expected = gradcam_explainer(model, photo)  # TensorFlow's Grad-CAM overlay on the same weights
    assert picture.shape == expected.shape
    difference = int(np.abs(picture.astype(int) - expected.astype(int)).max())
    print(backend, "overlay max abs difference", difference, file=sys.stderr)
    assert difference <= 2  # heatmaps within 1e-3: at most a colour-map step apart
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 50  # a heatmap and its colour bar, not a blank page


@pytest.mark.backends
def test_per_unit_learning_rates_apply_on_pytorch(crossed):
    """PyTorch's own Adam updates every variable at once and skips `update_step`, where the factors act."""
    _, got = crossed
    a_kernel, a_bias, b_kernel, b_bias = got["torch"]["per_unit"]
    assert a_kernel == a_bias == 0.0 and b_kernel > 1e-3 and b_bias > 1e-3
