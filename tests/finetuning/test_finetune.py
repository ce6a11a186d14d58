"""finetune() end to end: a run directory saved atomically, crash and kill -9 then resume, its inputs and strategies.

Stages, freezing (head replacement, BatchNorm policy) and the feature cache are tested in
test_stages.py, test_freezing.py and test_features.py; shared helpers are in finetune_helpers.py.

Real TensorFlow training on tiny models and tiny images (12x12, Pillow-written
folders); the kill -9 scenario runs a real subprocess.
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import cnnzoo
from cnnzoo.errors import ConfigError, DataError
from cnnzoo.finetuning.stages import Stage
from conftest import PYTHON, REPO, write_image_folder
from finetune_helpers import SIZE, blobs, tiny

# ------------------------------------------------------------------ run directory, resume


def test_folder_run_saves_model_plots_and_state_atomically(tmp_path):
    folder = write_image_folder(tmp_path / "images", classes=("a", "b", "c"), per_class=6, size=(SIZE, SIZE))
    (folder / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "run"
    with pytest.warns(cnnzoo.errors.DataWarning):
        result = cnnzoo.finetune("digits_cnn", folder, input_shape=(SIZE, SIZE, 3), epochs=2, out=out, verbose=0)
    assert [s.stage for s in result.stages] == [Stage("all", 2, 1e-3)]  # from scratch: one stage
    assert result.model_path == out / "digits_cnn.keras" and result.model_path.is_file()
    assert [Path(p).name for p, _ in result.skipped] == ["broken.png"]
    assert set(result.history["1:all"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(result.history["1:all"]["loss"]) == 2
    assert result.best_val_accuracy == max(result.history["1:all"]["val_accuracy"])
    with pytest.warns(cnnzoo.errors.DataWarning):
        num_validation = cnnzoo.data.image_folder(folder, image_size=SIZE).num_validation
    assert result.confusion_matrix.shape == (3, 3) and result.confusion_matrix.sum() == num_validation
    from PIL import Image

    for name in ("learning_curve", "confusion_matrix"):
        with Image.open(result.plots[name]) as im:
            assert im.format == "PNG" and im.size[0] > 200
    state = json.loads((out / "state.json").read_text())
    assert state["finished"] and state["stages_done"] == [1]
    leftovers = [p.name for p in out.rglob("*") if ".partial" in p.name or p.name.endswith(".tmp")]
    assert leftovers == [] and not (out / "backup").exists()
    loaded = cnnzoo.load(result.model_path)
    assert cnnzoo.layers.class_names_of(loaded) == ["a", "b", "c"]
    img = folder / "a" / "0.png"
    assert cnnzoo.predict(loaded, img).label == cnnzoo.predict(result.model, img).label

    # The same call again returns the finished run without training.
    with pytest.warns(cnnzoo.errors.DataWarning):
        again = cnnzoo.finetune("digits_cnn", folder, input_shape=(SIZE, SIZE, 3), epochs=2, out=out, verbose=0)
    assert again.resumed and again.history == result.history and again.model_path == result.model_path
    # A different run in the same directory is refused, and nothing saved is lost.
    saved = result.model_path.read_bytes()
    with (
        pytest.raises(ConfigError, match=r"`out` already holds a different fine-tuning run.*Received: out="),
        pytest.warns(cnnzoo.errors.DataWarning),
    ):
        cnnzoo.finetune("digits_cnn", folder, input_shape=(SIZE, SIZE, 3), epochs=3, out=out, verbose=0)
    assert result.model_path.read_bytes() == saved
    # A saved zoo model fine-tunes further, from its path; its head (3 classes, names) is kept.
    with pytest.warns(cnnzoo.errors.DataWarning):
        further = cnnzoo.finetune(
            result.model_path, folder, stages="head:1:1e-4", out=tmp_path / "further", verbose=0, plots=False
        )
    assert further.class_names == ("a", "b", "c") and further.model_path.is_file()
    head_before = cnnzoo.load(result.model_path).get_layer("head").weights[0].numpy()
    change = np.abs(further.model.get_layer("head").weights[0].numpy() - head_before).max()
    assert 1e-6 < change < 0.01  # kept (not re-initialised) and fine-tuned (Adam at 1e-4 moves it ~1e-4 a step)


def test_crash_mid_stage_resumes_at_the_next_epoch(tmp_path):
    import keras

    x, y = blobs()
    seen = []

    class Crash(keras.callbacks.Callback):
        def __init__(self, crash):
            super().__init__()
            self.crash = crash
            self.stage = 0

        def on_train_begin(self, logs=None):
            self.stage += 1

        def on_epoch_begin(self, epoch, logs=None):
            seen.append((self.crash, self.stage, epoch))
            if self.crash and self.stage == 2 and epoch == 1:
                raise RuntimeError("simulated crash")

    def run(crash):
        # Each call builds its model afresh, as a new process would.
        return cnnzoo.finetune(
            tiny(),
            (x, y),
            stages=["head:2:1e-2", "all:3:1e-3"],
            out=tmp_path / "run",
            callbacks=[Crash(crash)],
            verbose=0,
            plots=False,
        )

    with pytest.raises(RuntimeError, match="simulated crash"):
        run(True)
    assert (tmp_path / "run" / "backup" / "stage_2" / "epoch_0001.weights.h5").is_file()
    assert not list((tmp_path / "run").glob("*.keras"))  # no model file until the run finishes
    result = run(False)
    assert [e for e in seen if not e[0]] == [(False, 1, 1), (False, 1, 2)]  # stage 2 from its 2nd epoch
    assert result.resumed
    assert len(result.history["1:head"]["loss"]) == 2 and len(result.history["2:all"]["loss"]) == 3
    assert result.model_path.is_file()


# ------------------------------------------------------------------ inputs and strategies


def test_dataset_pair_and_errors(tmp_path):
    import tensorflow as tf

    x, y = blobs(n=24)
    train = tf.data.Dataset.from_tensor_slices((x[:16], y[:16])).batch(8)
    val = tf.data.Dataset.from_tensor_slices((x[16:], y[16:])).batch(8)
    result = cnnzoo.finetune(
        tiny(),
        (train, val),
        class_names=["dim", "mid", "bright"],
        stages="head:1",
        out=tmp_path / "ds",
        verbose=0,
        plots=False,
    )
    assert result.class_names == ("dim", "mid", "bright")
    assert not result.stages[0].feature_cache  # a user dataset may be augmented: no cache unless asked
    with pytest.raises(DataError, match=r"`data` must be an image-folder path.*Received: data of type int"):
        cnnzoo.finetune(tiny(), 3, out=tmp_path / "bad", verbose=0)
    with pytest.raises(ConfigError, match=r"`num_classes` must equal the number of classes"):
        cnnzoo.finetune(tiny(), (train, val), class_names=["a", "b", "c"], num_classes=4, out=tmp_path / "bad")
    with pytest.raises(ConfigError, match=r"`model`.*Received"):
        cnnzoo.finetune(42, (x, y), out=tmp_path / "bad")
    with pytest.raises(cnnzoo.errors.DataNotFoundError):
        cnnzoo.finetune(tiny(), tmp_path / "no_such_folder", out=tmp_path / "bad")


def test_strategy_passes_through(tmp_path):
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    x, y = blobs(n=24)
    result = cnnzoo.finetune(
        tiny(), (x, y), stages="head:1,all:1", strategy=strategy, out=tmp_path / "run", verbose=0, plots=False
    )
    assert result.model.distribute_strategy is strategy
    assert "Mirrored" in type(result.model.get_layer("head").weights[0].value).__name__
    assert result.model_path.is_file()


# ------------------------------------------------------------------ kill -9 and resume

_KILL_SCRIPT = """
import os, sys, time, keras, cnnzoo
out, folder, log_path = sys.argv[1:4]
slow = float(os.environ.get("SLOW_BATCH", "0"))

class Log(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        with open(log_path, "a") as f:
            f.write(f"{os.getpid()} {epoch}\\n")
    def on_train_batch_end(self, batch, logs=None):
        time.sleep(slow)

keras.utils.set_random_seed(0)
model = cnnzoo.get("bird_classifier", num_classes=3, input_shape=(12, 12, 3), compile=False,
                   blocks=[{"filters": 4, "batch_norm": True}, {"filters": 8, "batch_norm": True}], dense=[8])
result = cnnzoo.finetune(model, folder, stages=["head:2:1e-2", "all:4:1e-3"], out=out, batch_size=4,
                         callbacks=[Log()], verbose=0, plots=False)
print("DONE", result.resumed, [len(s.history["loss"]) for s in result.stages])
"""


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_loses_at_most_one_epoch(tmp_path, reliability):
    folder = write_image_folder(tmp_path / "images", classes=("a", "b", "c"), per_class=8, size=(SIZE, SIZE))
    out, log = tmp_path / "run", tmp_path / "epochs.log"
    cmd = [PYTHON, "-c", _KILL_SCRIPT, str(out), str(folder), str(log)]
    env = {**os.environ, "SLOW_BATCH": "0.25", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    target = out / "backup" / "stage_2" / "epoch_0001.weights.h5"  # first checkpoint of stage 2
    deadline = time.monotonic() + 240
    while not target.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert target.exists(), proc.communicate()[1].decode()[-3000:]
    time.sleep(1.0)  # well inside the next epoch (5 batches x 0.25 s)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    first = log.read_text().split()
    assert not list(out.glob("*.keras"))

    env["SLOW_BATCH"] = "0"
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DONE True [2, 4]" in done.stdout
    epochs_begun = len(log.read_text().split()) // 2
    planned = 2 + 4
    assert epochs_begun - planned <= 1, (first, log.read_text())
    reliability.record(
        "fine-tuning killed with kill -9 mid-epoch, then the same call again",
        kills=1,
        resumed=1,
        epochs_lost=epochs_begun - planned,
    )
    assert (out / "bird_classifier.keras").is_file()
    state = json.loads((out / "state.json").read_text())
    assert state["finished"] and [r["epoch"] for r in state["history"]["2"]] == [0, 1, 2, 3]
    leftovers = [p.name for p in out.rglob("*") if ".partial" in p.name]
    assert leftovers == []
