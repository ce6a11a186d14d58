"""finetune() under real strategies: a two-worker MultiWorkerMirroredStrategy configured by TF_CONFIG, and a
MirroredStrategy over two logical CPU devices.

Two worker processes on 127.0.0.1 (CPU only) run the same `cnnzoo.finetune`
call into one shared run directory, as multi-node users do ("set TF_CONFIG,
pass MultiWorkerMirroredStrategy()", docs/finetune.md). The chief (worker 0)
must write the run directory; worker 1 must train in step and write nothing
there. With `learning_rate="auto"` both must train at one found rate, which a
resumed run keeps. Logical devices can only be set before TensorFlow starts,
so the MirroredStrategy run (EMA under mixed_float16) is a subprocess too.
"""

import json
import os
import signal
import socket
import subprocess
import time

import numpy as np
import pytest

import cnnzoo
from cnnzoo.utils.locks import LOCK_NAME
from conftest import PYTHON, REPO, write_image_folder

SIZE = 16  # tiny_vgg's two valid-padded blocks need at least 16x16

_WORKER = """
import json, sys
import tensorflow as tf
strategy = tf.distribute.MultiWorkerMirroredStrategy()  # reads TF_CONFIG; first TF call in the process
import cnnzoo
folder, out = sys.argv[1:3]
result = cnnzoo.finetune("tiny_vgg", folder, input_shape=(16, 16, 3), stages="all:2:1e-3", out=out,
                         strategy=strategy, batch_size=4, seed=0, plots=False, verbose=0)
resolver = strategy.cluster_resolver
print("RESULT " + json.dumps({"index": resolver.task_id, "workers": strategy.num_replicas_in_sync,
                              "val_accuracy": result.val_accuracy, "history": result.history,
                              "model_path": str(result.model_path), "weights_sum": float(sum(
                                  float(abs(w).sum()) for w in result.model.get_weights()))}), flush=True)
"""


def _free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _result(stdout):
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, stdout[-3000:]
    return json.loads(lines[0][len("RESULT ") :])


def _two_workers(script, *args, timeout=180):
    """Runs `script` (`python -c`) in two worker processes of one TF_CONFIG cluster; returns their RESULTs.

    Both must exit 0; a hung or failed run leaves no worker behind.
    """
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    try:
        for index in range(2):
            env = {
                **os.environ,
                "CUDA_VISIBLE_DEVICES": "",
                "TF_CPP_MIN_LOG_LEVEL": "2",
                "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
            }
            procs.append(
                subprocess.Popen(
                    [PYTHON, "-c", script, *map(str, args)],
                    cwd=REPO,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + timeout
        outputs = []
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            outputs.append((proc.returncode, stdout, stderr))
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    for rc, _, stderr in outputs:
        assert rc == 0, stderr[-4000:]
    return [_result(stdout) for _, stdout, _ in outputs]


@pytest.mark.slow
def test_multi_worker_mirrored_strategy_with_tf_config(tmp_path):
    # 27 images in batches of 4: neither the workers' training shares nor the validation set divide into whole
    # batches (this crashed one worker: a validation batch split unevenly, issue 19)
    folder = write_image_folder(tmp_path / "images", classes=("a", "b", "c"), per_class=9, size=(SIZE, SIZE))
    out = tmp_path / "shared_run"
    chief, other = _two_workers(_WORKER, folder, out)
    assert (chief["index"], other["index"]) == (0, 1)
    assert chief["workers"] == other["workers"] == 2

    # One training run, in step: the same per-epoch history (all-reduced metrics) and the same final model.
    assert chief["history"] == other["history"]
    assert list(chief["history"]) == ["1:all"] and len(chief["history"]["1:all"]["loss"]) == 2
    assert chief["val_accuracy"] is not None and chief["val_accuracy"] == other["val_accuracy"]
    assert np.isclose(chief["weights_sum"], other["weights_sum"], rtol=1e-6)

    # The chief wrote the run directory; worker 1 wrote nothing competing in it.
    model_path = out / "tiny_vgg.keras"
    assert chief["model_path"] == other["model_path"] == str(model_path)
    assert sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME) == [
        "recipe.json",
        "state.json",
        "state.json.sha256",
        "state.previous.json",
        "state.previous.json.sha256",
        "tiny_vgg.keras",
        "tiny_vgg.keras.sha256",
    ]
    state = json.loads((out / "state.json").read_text())
    assert state["finished"] and state["stages_done"] == [1]
    assert [r["val_accuracy"] for r in state["history"]["1"]] == chief["history"]["1:all"]["val_accuracy"]
    assert state["val_accuracy"] == chief["val_accuracy"]
    leftovers = [p for p in out.rglob("*") if ".partial" in p.name or ".tmp" in p.name]
    assert leftovers == []

    model = cnnzoo.load(model_path)
    predictions = cnnzoo.predict(model, sorted((folder / "a").iterdir())[:2])
    assert len(predictions) == 2 and all(p.label in ("a", "b", "c") for p in predictions)


_AUTO_WORKER = """
import json, logging, sys
import tensorflow as tf
strategy = tf.distribute.MultiWorkerMirroredStrategy()  # reads TF_CONFIG; first TF call in the process
import keras, numpy as np, cnnzoo
folder, out = sys.argv[1:3]
lines = []

class Lines(logging.Handler):
    def emit(self, record):
        lines.append(record.getMessage())

logging.getLogger("cnnzoo").addHandler(Lines())
logging.getLogger("cnnzoo").setLevel(logging.INFO)

class Probe(keras.callbacks.Callback):
    def __init__(self, crash):
        super().__init__()
        self.crash, self.rates, self.epochs = crash, [], []
    def on_train_begin(self, logs=None):  # a constant schedule: the rate the stage trains at
        self.rates.append(float(self.model.optimizer.learning_rate.numpy()))
    def on_epoch_begin(self, epoch, logs=None):
        if self.crash and epoch == 1:
            raise RuntimeError("simulated crash")
        self.epochs.append(epoch)

def run(crash):
    probe = Probe(crash)
    lines.clear()
    report = {}
    try:
        result = cnnzoo.finetune("tiny_vgg", folder, input_shape=(16, 16, 3), stages="all:2:constant",
                                 learning_rate="auto", out=out, strategy=strategy, batch_size=8, seed=0,
                                 plots=False, verbose=0, callbacks=[probe])
    except RuntimeError as e:
        report["error"] = str(e)
    else:
        report.update(resumed=result.resumed, history=result.history,
                      weights=[np.asarray(w).tolist() for w in result.model.get_weights()])
    report.update(rates=probe.rates, epochs=probe.epochs, log=[m for m in lines if "learning rate" in m])
    return report

crashed = run(True)
resumed = run(False)  # the same call again: it resumes from the chief's state and epoch checkpoint
print("RESULT " + json.dumps({"index": strategy.cluster_resolver.task_id, "crashed": crashed,
                              "resumed": resumed}), flush=True)
"""


@pytest.mark.slow
def test_auto_learning_rate_is_one_rate_for_every_worker_and_kept_on_resume(tmp_path):
    folder = write_image_folder(tmp_path / "images", classes=("a", "b", "c"), per_class=8, size=(SIZE, SIZE))
    out = tmp_path / "shared_run"
    chief, other = _two_workers(_AUTO_WORKER, folder, out)
    assert (chief["index"], other["index"]) == (0, 1)
    state = json.loads((out / "state.json").read_text())
    found = state["learning_rates"]["1"]  # the chief's record of the sweep
    for worker in (chief, other):
        crashed, resumed = worker["crashed"], worker["resumed"]
        assert crashed["error"] == "simulated crash" and crashed["epochs"] == [0]
        assert len(crashed["log"]) == 1 and "found by the LR finder" in crashed["log"][0]
        assert len(resumed["log"]) == 1 and "found before (run state)" in resumed["log"][0]  # no second sweep
        assert resumed["resumed"] and resumed["epochs"] == [1]
        assert crashed["rates"] == resumed["rates"] == [pytest.approx(found, rel=1e-6)]  # float32 in the optimizer
    # Each worker swept its own shard; the losses are all-reduced, so the workers found the same rate.
    assert chief["crashed"]["rates"] == other["crashed"]["rates"]
    assert chief["resumed"]["history"] == other["resumed"]["history"]
    assert len(chief["resumed"]["history"]["1:all"]["loss"]) == 2
    for a, b in zip(chief["resumed"]["weights"], other["resumed"]["weights"]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert state["finished"] and state["stages_done"] == [1]
    assert (out / "tiny_vgg.keras").is_file()


_EMA_MIXED = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
import keras, numpy as np, cnnzoo
from cnnzoo.deploy.inference import predictor
from cnnzoo.zoo.precision import dtype_of

def blobs(n, seed):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = np.clip(rng.normal(0, 20, (n, 12, 12, 3)) + 40 + 70 * y[:, None, None, None], 0, 255)
    return x.astype("float32"), y

def arrays(variables):
    return [keras.ops.convert_to_numpy(v) for v in variables]

def averages(optimizer):
    return arrays(v for v in optimizer.variables if v.name.endswith("_average"))

def largest(a, b):
    assert len(a) == len(b) and all(p.shape == q.shape for p, q in zip(a, b))
    return max(float(np.max(np.abs(p - q))) for p, q in zip(a, b))

seen = {"validated": [], "raw": [], "average": [], "optimizer": []}

class Probe(keras.callbacks.Callback):
    def on_test_begin(self, logs=None):
        seen["validated"].append(arrays(self.model.trainable_weights))
    def on_epoch_end(self, epoch, logs=None):
        seen["raw"].append(arrays(self.model.trainable_weights))
        seen["average"].append(averages(self.model.optimizer))
        inner = getattr(self.model.optimizer, "inner_optimizer", None)
        seen["optimizer"].append([type(self.model.optimizer).__name__, bool(getattr(inner, "use_ema", False))])

(x, y), (xv, yv) = blobs(36, 0), blobs(12, 1)
model = cnnzoo.get("bird_classifier", num_classes=3, input_shape=(12, 12, 3), compile=False,
                   blocks=[{"filters": 4, "batch_norm": True}, {"filters": 8}], dense=[8], dropout=0.0)
result = cnnzoo.finetune(model, (x, y, xv, yv), stages=["all:3:1e-3..3e-2"], out=sys.argv[1], batch_size=8,
                         verbose=0, plots=False, pretrained=True, ema=True, dtype="mixed_float16",
                         strategy=strategy, callbacks=[Probe()])
final = arrays(result.model.trainable_weights)
probs = predictor(result.model)(xv)
loaded = cnnzoo.load(result.model_path)
saved = {w.path: keras.ops.convert_to_numpy(w) for w in loaded.weights}
print("RESULT " + json.dumps({
    "replicas": result.model.distribute_strategy.num_replicas_in_sync, "dtype": dtype_of(result.model),
    "optimizer": seen["optimizer"], "history": result.history,
    "validated_vs_average": [largest(v, a) for v, a in zip(seen["validated"], seen["average"])],
    "validated_vs_raw": [largest(v, r) for v, r in zip(seen["validated"], seen["raw"])],
    "final_vs_average": largest(final, seen["average"][-1]),
    "val_loss_now": float(np.mean(keras.losses.sparse_categorical_crossentropy(yv, probs))),
    "loaded_dtype": dtype_of(loaded), "same_paths": sorted(saved) == sorted(w.path for w in result.model.weights),
    "loaded_vs_final": largest([saved[w.path] for w in result.model.weights], arrays(result.model.weights)),
    "loaded_predictions": float(np.max(np.abs(predictor(loaded)(xv) - probs)))}), flush=True)
"""


@pytest.mark.slow
def test_ema_under_mixed_float16_and_a_two_device_mirrored_strategy(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [PYTHON, "-c", _EMA_MIXED, str(tmp_path / "run")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    found = _result(proc.stdout)
    assert found["replicas"] == 2 and found["dtype"] == found["loaded_dtype"] == "mixed_float16"
    assert found["optimizer"] == [["LossScaleOptimizer", True]] * 3  # EMA on the optimizer inside the loss scaling
    history = found["history"]["1:all"]
    assert len(history["loss"]) == 3 and all(np.isfinite(history["loss"]))
    # Each validation ran on the averaged weights, not the raw ones ...
    assert found["validated_vs_average"] == [0.0] * 3 and min(found["validated_vs_raw"]) > 0
    # ... and the averages are what the model holds, evaluates with and saves.
    assert found["final_vs_average"] == 0.0
    assert np.isclose(history["val_loss"][-1], found["val_loss_now"], rtol=1e-4)
    assert found["same_paths"] and found["loaded_vs_final"] == 0.0 and found["loaded_predictions"] == 0.0
