"""The decoded-image cache has a budget; beyond it, files or streaming; workers read their own shard.

Real image folders written with Pillow (conftest `write_image_folder`), real tf.data pipelines, and
a real two-worker `MultiWorkerMirroredStrategy` in subprocesses.
"""

import json
import logging
import math
import os
import socket
import subprocess

import numpy as np
import pytest

from cnnzoo.data import memory
from cnnzoo.data.folders import image_folder
from cnnzoo.errors import DataError
from conftest import PYTHON, REPO, write_image_folder


@pytest.fixture
def folder(tmp_path):
    return write_image_folder(tmp_path / "images", classes=("a", "b", "c"), per_class=7, size=(10, 10))


def _read(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_a_tiny_budget_streams_a_big_one_caches_in_memory_and_says_so(folder, caplog):
    with caplog.at_level(logging.INFO, logger="cnnzoo"):
        tiny = image_folder(folder, image_size=8, cache_budget=100)
    assert tiny.cache_mode == "none" and tiny.cache_dir is None
    assert "over the cache budget 100 B (cache_budget)" in tiny.cache_reason
    assert "decoded every epoch" in tiny.cache_reason
    assert any("cache none" in r.getMessage() for r in caplog.records if r.name == "cnnzoo")
    decoded = (tiny.num_train + tiny.num_validation) * 8 * 8 * 3
    exact = image_folder(folder, image_size=8, cache_budget=decoded)  # the estimate: images x h x w x c bytes
    assert exact.cache_mode == "memory" and "within the cache budget" in exact.cache_reason
    assert image_folder(folder, image_size=8, cache_budget=decoded - 1).cache_mode == "none"
    assert image_folder(folder, image_size=8, cache_budget="1GB").cache_mode == "memory"
    assert image_folder(folder, image_size=8, cache_budget=None).cache_mode == "memory"  # 25% of the machine
    assert "cache_mode='memory'" in repr(exact)


def test_explicit_cache_settings_still_win_over_the_budget(folder, tmp_path):
    assert image_folder(folder, image_size=8, cache=False, cache_budget="unlimited").cache_mode == "none"
    files = image_folder(folder, image_size=8, cache=tmp_path / "c", cache_budget="unlimited")
    assert files.cache_mode == "files" and files.cache_dir == tmp_path / "c"


def test_over_budget_with_a_cache_dir_writes_files_and_reuses_them(folder, tmp_path):
    cache_dir = tmp_path / "run" / "cache"
    first = image_folder(folder, image_size=8, cache_budget=0, cache_dir=cache_dir, shuffle=False)
    assert first.cache_mode == "files" and str(cache_dir) in first.cache_reason
    train, validation = _read(first.train), _read(first.validation)
    names = sorted(p.name for p in cache_dir.iterdir())
    assert any(n.startswith("train-") and n.endswith(".index") for n in names), names
    assert any(n.startswith("validation-") and n.endswith(".index") for n in names), names
    again = image_folder(folder, image_size=8, cache_budget=0, cache_dir=cache_dir, shuffle=False)
    for path in again.train_files + again.validation_files:  # decoding now would give blank images
        with open(path, "wb") as f:
            f.write(b"no longer an image")
    np.testing.assert_array_equal(_read(again.train)[0], train[0])
    np.testing.assert_array_equal(_read(again.validation)[0], validation[0])
    assert train[0].max() > 0
    assert sorted(p.name for p in cache_dir.iterdir()) == names  # read back, nothing new written


def test_streaming_gives_the_same_images_as_the_memory_cache(folder):
    cached = image_folder(folder, image_size=(9, 7), cache_budget="unlimited", shuffle=False)
    streamed = image_folder(folder, image_size=(9, 7), cache_budget=0, shuffle=False)
    assert (cached.cache_mode, streamed.cache_mode) == ("memory", "none")
    for a, b in ((cached.train, streamed.train), (cached.validation, streamed.validation)):
        (xa, ya), (xb, yb) = _read(a), _read(b)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    for _ in range(2):  # every epoch decodes again, and again the same
        np.testing.assert_array_equal(_read(streamed.train)[0], _read(cached.train)[0])


def test_the_environment_variable_sets_the_default_budget(folder, monkeypatch):
    monkeypatch.setenv(memory.ENV_BUDGET, "1B")
    data = image_folder(folder, image_size=8)
    assert data.cache_mode == "none" and "$CNNZOO_CACHE_BUDGET" in data.cache_reason
    assert image_folder(folder, image_size=8, cache_budget="1MiB").cache_mode == "memory"  # the argument wins
    monkeypatch.setenv(memory.ENV_BUDGET, "2 GB")
    assert memory.cache_budget() == (2 * 10**9, "$CNNZOO_CACHE_BUDGET")
    monkeypatch.setenv(memory.ENV_BUDGET, "lots")
    with pytest.raises(
        DataError,
        match=r"environment variable CNNZOO_CACHE_BUDGET .*Received: "
        r"CNNZOO_CACHE_BUDGET='lots'\. Pass",
    ):
        image_folder(folder, image_size=8)
    monkeypatch.delenv(memory.ENV_BUDGET)
    budget, source = memory.cache_budget()
    assert budget == int(memory.physical_memory() * 0.25) and "25% of" in source


@pytest.mark.parametrize(
    "budget, rule",
    [
        (-1, "must be >= 0 bytes"),
        (float("nan"), "must be >= 0 bytes"),
        ("2XB", "with a unit"),
        ("", "with a unit"),
        (True, "not a bool"),
        ([1], "number of bytes or a size string"),
    ],
)
def test_bad_budgets_are_clear_errors_before_any_file_is_read(tmp_path, budget, rule):
    with pytest.raises(DataError) as info:
        image_folder(tmp_path / "does_not_exist", cache_budget=budget)
    message = str(info.value)
    assert message.startswith("`cache_budget` must") and rule in message
    assert "Received: cache_budget" in message and "Pass a number of bytes" in message


def test_sizes_parse_with_decimal_and_binary_units():
    assert memory.parse_budget("512MiB") == 512 * 2**20
    assert memory.parse_budget("1.5g") == 1_500_000_000
    assert memory.parse_budget(0) == 0 and memory.parse_budget("unlimited") == math.inf


def test_shard_files_split_evenly_and_cover_everything():
    items = list(range(11))
    shards = [memory.shard_files(items, i, 3) for i in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]  # padded from the start: every worker takes as many steps
    assert sorted(set().union(*shards)) == items
    assert shards[0] == [0, 3, 6, 9] and shards[2] == [2, 5, 8, 0]
    assert memory.shard_files(items, 0, 1) == items
    with pytest.raises(DataError, match=r"`shard` must be \(index, count\)"):
        memory.shard_files(items, 3, 3)


def test_each_shard_reads_its_files_and_keeps_the_validation_set_whole(folder):
    import tensorflow as tf

    whole = image_folder(folder, image_size=8, shuffle=False)
    parts = [image_folder(folder, image_size=8, shuffle=False, shard=(i, 2)) for i in range(2)]
    per = math.ceil(whole.num_train / 2)
    labels = []
    for i, part in enumerate(parts):
        assert part.shard == (i, 2) and part.train_files == whole.train_files  # the split is the same everywhere
        x, y = _read(part.train)
        assert len(x) == per
        labels.append(y)
        off = tf.data.experimental.AutoShardPolicy.OFF
        assert part.train.options().experimental_distribute.auto_shard_policy == off
        np.testing.assert_array_equal(_read(part.validation)[0], _read(whole.validation)[0])
    expected = memory.shard_files(whole.train_labels, 0, 2) + memory.shard_files(whole.train_labels, 1, 2)
    assert sorted(np.concatenate(labels).tolist()) == sorted(expected)
    with pytest.raises(DataError, match=r"`shard` must be \(index, count\).*Received: shard=\(2, 2\)"):
        image_folder(folder, image_size=8, shard=(2, 2))


def test_a_single_worker_strategy_is_not_sharded():
    import tensorflow as tf

    assert memory.worker_shard(None) is None
    assert memory.worker_shard(tf.distribute.MultiWorkerMirroredStrategy()) is None  # no TF_CONFIG: one worker


_WORKER = """
import json, sys
import tensorflow as tf
strategy = tf.distribute.MultiWorkerMirroredStrategy()
import keras
import cnnzoo
from cnnzoo.data import decoding
decoded = []
real = decoding.load_image
decoding.load_image = lambda path, *a: decoded.append(path) or real(path, *a)  # counts Pillow's decodes
steps = []
class Steps(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        steps.append(0)
    def on_train_batch_end(self, batch, logs=None):
        steps[-1] += 1
result = cnnzoo.finetune("tiny_vgg", sys.argv[1], input_shape=(16, 16, 3), stages="all:2:1e-3", out=sys.argv[2],
                         strategy=strategy, batch_size=8, seed=0, plots=False, verbose=0, callbacks=[Steps()])
print("RESULT " + json.dumps({"index": strategy.cluster_resolver.task_id, "decoded": sorted(decoded),
                              "steps": steps, "val_accuracy": result.val_accuracy,
                              "history": result.history}), flush=True)
"""


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.mark.slow
def test_two_real_workers_each_decode_only_their_shard(tmp_path):
    # BMP files: Pillow decodes them (in `cnnzoo.data.decoding`), so the worker script can count the decodes
    folder = write_image_folder(tmp_path / "images", classes=("a", "b", "c"), per_class=8, size=(16, 16), fmt="BMP")
    data = image_folder(folder, image_size=16)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = []
    for index in range(2):
        env = {
            **os.environ,
            "CUDA_VISIBLE_DEVICES": "",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        }
        procs.append(
            subprocess.Popen(
                [PYTHON, "-c", _WORKER, str(folder), str(tmp_path / "run")],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for proc in procs:
        try:
            stdout, stderr = proc.communicate(timeout=150)
        finally:
            proc.kill()
        assert proc.returncode == 0, stderr[-4000:]
        results.append(json.loads([line for line in stdout.splitlines() if line.startswith("RESULT ")][0][7:]))
    shards = [memory.shard_files(data.train_files, i, 2) for i in range(2)]
    for result, shard in zip(results, shards):
        train_decoded = [p for p in result["decoded"] if p in data.train_files]
        assert sorted(train_decoded) == sorted(shard)  # once each (memory cache), and only its own
    # equal shards: both workers take the same steps every epoch (the last global batch splits in two)
    assert results[0]["steps"] == results[1]["steps"] == [results[0]["steps"][0]] * 2
    assert results[0]["steps"][0] >= math.ceil(data.num_train / 8)
    assert results[0]["history"] == results[1]["history"]
    assert results[0]["val_accuracy"] == results[1]["val_accuracy"]
