"""finetune in a shared world: one process per run directory, the caller's random state kept,
pretrained known from the model rather than assumed."""

import json
import os
import random
import subprocess
import sys
import time

import numpy as np
import pytest

import cnnzoo
from cnnzoo.finetuning import freezing
from cnnzoo.utils.locks import LOCK_NAME
from conftest import PYTHON, REPO

_RUN = """
import os, sys, time, numpy as np, keras, cnnzoo
out, slow, resume = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "resume"
class Slow(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        time.sleep(slow)
rng = np.random.default_rng(0)
y = np.arange(48) % 3
x = np.clip(rng.normal(0, 20, (48, 12, 12, 3)) + 40 + 70 * y[:, None, None, None], 0, 255).astype("float32")
model = cnnzoo.get("bird_classifier", num_classes=3, input_shape=(12, 12, 3), compile=False,
                   blocks=[{"filters": 4}, {"filters": 8}], dense=[8])
try:
    result = cnnzoo.finetune(model, (x, y), stages=["all:4:1e-2"], out=out, batch_size=8, callbacks=[Slow()],
                             resume=resume, verbose=0, plots=False)
except cnnzoo.RunLockedError as e:
    print("LOCKED", e, flush=True)
    sys.exit(3)
print("DONE", [len(s.history["loss"]) for s in result.stages], flush=True)
"""


def test_a_second_finetune_in_the_same_directory_is_refused_and_touches_nothing(tmp_path, reliability):
    out = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.Popen(
        [PYTHON, "-c", _RUN, str(out), "0.3", "resume"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "backup").is_dir() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the first run has written its state and its first checkpoint
        assert (out / "backup").is_dir(), first.communicate()[1][-3000:]
        holder = json.loads((out / LOCK_NAME).read_text())
        assert holder["pid"] == first.pid and holder["what"] == "fine-tuning run"
        # resume=False would delete the first run's state and checkpoints, were it let in
        second = subprocess.run(
            [PYTHON, "-c", _RUN, str(out), "0", "restart"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 3, second.stderr[-3000:]
        assert f"locked by process {first.pid} on host" in second.stdout and "Received: out=" in second.stdout
        stdout, stderr = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr[-3000:]
    assert "DONE [4]" in stdout  # the first run was not disturbed
    state = json.loads((out / "state.json").read_text())
    assert state["finished"] and [r["epoch"] for r in state["history"]["1"]] == [0, 1, 2, 3]
    # and once it is done, the directory is free again
    again = subprocess.run(
        [PYTHON, "-c", _RUN, str(out), "0", "resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0 and "DONE [4]" in again.stdout, again.stderr[-3000:]
    reliability.record(
        "two fine-tuning runs started in one directory", runs=2, refused=1, disturbed=0, first_run_epochs=4
    )


def _blobs(n=24):
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    x = np.clip(rng.normal(0, 20, (n, 12, 12, 3)) + 60 + 100 * y[:, None, None, None], 0, 255)
    return x.astype("float32"), y


def test_finetune_and_tune_leave_the_callers_random_state_alone(tmp_path):
    import keras
    import tensorflow as tf

    x, y = _blobs()

    def draws():
        return random.random(), float(np.random.rand()), float(keras.random.uniform(()))

    for run in (
        lambda: cnnzoo.finetune(
            "digits_cnn",
            (x, y),
            input_shape=(12, 12, 3),
            stages="all:1",
            out=tmp_path / "ft",
            verbose=0,
            plots=False,
            seed=3,
        ),
        lambda: cnnzoo.tune(
            "digits_cnn",
            (x, y),
            input_shape=(12, 12, 3),
            tuner="random",
            max_trials=1,
            max_epochs=1,
            out=tmp_path / "tune",
            seed=3,
            load_best=False,
        ),
    ):
        keras.utils.set_random_seed(123)
        expected = draws()
        keras.utils.set_random_seed(123)
        run()
        assert draws() == expected  # as if nothing had run in between
        assert tf.compat.v1.random.get_seed(None)[0] == 123


def test_pretrained_is_known_from_the_model_not_assumed(tmp_path):
    x, y = _blobs(40)
    untrained = cnnzoo.get("digits_cnn", input_shape=(12, 12, 3), num_classes=2, compile=False)
    assert cnnzoo.layers.pretrained_of(untrained) is False
    bn_before = [v.numpy().copy() for bn in freezing.batchnorm_layers(untrained) for v in (bn.moving_mean,)]
    result = cnnzoo.finetune(untrained, (x, y), epochs=1, out=tmp_path / "scratch", verbose=0, plots=False)
    assert [s.stage.name for s in result.stages] == ["all"]  # from scratch: everything trains ...
    assert all(bn.trainable for bn in freezing.batchnorm_layers(result.model))  # ... BatchNorm included
    bn_after = [bn.moving_mean.numpy() for bn in freezing.batchnorm_layers(result.model)]
    assert any(not np.allclose(a, b) for a, b in zip(bn_before, bn_after))
    saved = cnnzoo.load(result.model_path)
    assert cnnzoo.layers.pretrained_of(saved) is True  # what finetune saved has learned

    further = cnnzoo.finetune(result.model_path, (x, y), epochs=1, out=tmp_path / "further", verbose=0, plots=False)
    assert further.stages[0].stage.name == "head"  # a trained model is fine-tuned, its BatchNorm frozen
    assert not any(bn.trainable for bn in freezing.batchnorm_layers(further.model))

    trained = cnnzoo.get("digits_cnn", weights="digits")
    assert cnnzoo.layers.pretrained_of(trained) is True
    fitted = cnnzoo.get("digits_cnn", input_shape=(12, 12, 3), num_classes=2)
    fitted.fit(x, y, epochs=1, verbose=0)  # trained with plain Keras since get(): it has learned
    run = cnnzoo.finetune(fitted, (x, y), epochs=1, out=tmp_path / "fitted", verbose=0, plots=False)
    assert run.stages[0].stage.name == "head"
    assert (
        cnnzoo.finetune(
            cnnzoo.get("digits_cnn", input_shape=(12, 12, 3), num_classes=2),
            (x, y),
            epochs=1,
            pretrained=True,
            out=tmp_path / "forced",
            verbose=0,
            plots=False,
        )
        .stages[0]
        .stage.name
        == "head"
    )  # the argument still wins


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file locks")
def test_the_lock_file_records_its_holder(tmp_path):
    x, y = _blobs()
    cnnzoo.finetune(
        "digits_cnn", (x, y), input_shape=(12, 12, 3), stages="all:1", out=tmp_path / "r", verbose=0, plots=False
    )
    holder = json.loads((tmp_path / "r" / LOCK_NAME).read_text())
    assert set(holder) == {"pid", "host", "what", "since"} and holder["pid"] == os.getpid()
