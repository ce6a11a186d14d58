"""finetune() under a real two-worker MultiWorkerMirroredStrategy, configured by TF_CONFIG.

Two worker processes on 127.0.0.1 (CPU only) run the same `cnnzoo.finetune`
call into one shared run directory, as multi-node users do ("set TF_CONFIG,
pass MultiWorkerMirroredStrategy()", docs/finetune.md). The chief (worker 0)
must write the run directory; worker 1 must train in step and write nothing
there.
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
from conftest import PYTHON, REPO, write_image_folder

from cnnzoo.utils.locks import LOCK_NAME

SIZE = 16  # tiny_vgg's two valid-padded blocks need at least 16x16

_WORKER = """
import json, sys
import tensorflow as tf
strategy = tf.distribute.MultiWorkerMirroredStrategy()  # reads TF_CONFIG; first TF call in the process
import cnnzoo
folder, out = sys.argv[1:3]
result = cnnzoo.finetune("tiny_vgg", folder, input_shape=(16, 16, 3), stages="all:2:1e-3", out=out,
                         strategy=strategy, batch_size=8, seed=0, plots=False, verbose=0)
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
    return json.loads(lines[0][len("RESULT "):])


@pytest.mark.slow
def test_multi_worker_mirrored_strategy_with_tf_config(tmp_path):
    folder = write_image_folder(tmp_path / "images", classes=("a", "b", "c"), per_class=8, size=(SIZE, SIZE))
    out = tmp_path / "shared_run"
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    try:
        for index in range(2):
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2",
                   "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
            procs.append(subprocess.Popen([PYTHON, "-c", _WORKER, str(folder), str(out)], cwd=REPO, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          start_new_session=True))
        deadline = time.monotonic() + 180
        outputs = []
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            outputs.append((proc.returncode, stdout, stderr))
    finally:
        for proc in procs:  # a hung or failed run must not leave a worker behind
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    for rc, stdout, stderr in outputs:
        assert rc == 0, stderr[-4000:]
    chief, other = (_result(stdout) for _, stdout, _ in outputs)
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
    assert sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME) == ["state.json", "tiny_vgg.keras"]
    state = json.loads((out / "state.json").read_text())
    assert state["finished"] and state["stages_done"] == [1]
    assert [r["val_accuracy"] for r in state["history"]["1"]] == chief["history"]["1:all"]["val_accuracy"]
    assert state["val_accuracy"] == chief["val_accuracy"]
    leftovers = [p for p in out.rglob("*") if ".partial" in p.name or ".tmp" in p.name]
    assert leftovers == []

    model = cnnzoo.load(model_path)
    predictions = cnnzoo.predict(model, sorted((folder / "a").iterdir())[:2])
    assert len(predictions) == 2 and all(p.label in ("a", "b", "c") for p in predictions)
