"""cnnzoo.weights: named weights, hash-checked atomic downloads from a real local
HTTP server on 127.0.0.1, the cache, offline mode, ImageNet backbones and the
shipped digits_cnn weights. Nothing here reaches the internet."""

import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

import cnnzoo
from cnnzoo.errors import UnknownWeightsError, WeightsDownloadError, WeightsError, WeightsNotFoundError
from cnnzoo.zoo import config, config_writer, registry, weights

# ----------------------------------------------------------------- fixtures


class LocalServer:
    """A real HTTP server on 127.0.0.1 in a thread; routes map paths to (body, mode)."""

    def __init__(self):
        self.routes, self.requests = {}, []
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                state.requests.append(self.path)
                if self.path not in state.routes:
                    self.send_error(404, "Not Found")
                    return
                body, mode = state.routes[self.path]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))  # the full length, also when cut short
                self.end_headers()
                self.wfile.write(body if mode == "ok" else body[: len(body) // 3])
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def serve(self, path, body, mode="ok"):
        self.routes[path] = (body, mode)
        return self.url + path

    def stop(self):
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join()


@pytest.fixture
def server():
    s = LocalServer()
    yield s
    s.stop()


@pytest.fixture
def closed_port_url():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there any more: connection refused
    return f"http://127.0.0.1:{port}/net.weights.h5"


@pytest.fixture
def add_config(tmp_path, monkeypatch):
    """Writes zoo configs into a CNNZOO_CONFIG_PATH directory, as a user would."""
    directory = tmp_path / "configs"
    directory.mkdir()
    monkeypatch.setenv("CNNZOO_CONFIG_PATH", str(directory))

    def add(raw):
        (directory / f"{raw['name']}.toml").write_text(config_writer.dumps(raw))
        registry.refresh()
        return raw["name"]

    return add


TINY = {
    "name": "served_net",
    "description": "A tiny net whose weights come from a local server.",
    "input_shape": [8, 8, 1],
    "num_classes": 3,
    "blocks": [{"filters": 4}],
    "head": {"dense": [8]},
}


@pytest.fixture
def trained_file(tmp_path, rng):
    """A real .weights.h5 of the tiny net, with non-default weights; returns (path, bytes, weights)."""
    model = cnnzoo.build(config.parse(TINY))
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    path = tmp_path / "served_net.weights.h5"
    model.save_weights(path)
    return path, path.read_bytes(), model.get_weights()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def cache_files(home):
    directory = home / "weights"
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def assert_same_weights(model, expected):
    for got, want in zip(model.get_weights(), expected, strict=True):
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------ downloads


def test_good_download_is_cached_verified_and_reused_without_network(server, add_config, trained_file, isolated_home):
    _, body, expected = trained_file
    url = server.serve("/files/served_net.weights.h5", body)
    add_config({**TINY, "weights": {"served": {"url": url, "sha256": sha256(body)}}})

    model = cnnzoo.get("served_net", weights="served")
    assert_same_weights(model, expected)
    assert cache_files(isolated_home) == ["served_net.weights.h5"]  # no temp file left
    assert (isolated_home / "weights" / "served_net.weights.h5").read_bytes() == body
    assert server.requests == ["/files/served_net.weights.h5"]

    server.stop()  # the second get must come from the cache alone
    again = cnnzoo.get("served_net", weights="served")
    assert_same_weights(again, expected)


def test_wrong_hash_fails_clearly_and_leaves_nothing(server, add_config, trained_file, isolated_home, reliability):
    _, body, _ = trained_file
    url = server.serve("/served_net.weights.h5", body)
    add_config({**TINY, "weights": {"served": {"url": url, "sha256": "0" * 64}}})
    with pytest.raises(WeightsError) as info:
        cnnzoo.get("served_net", weights="served")
    message = str(info.value)
    assert url in message and sha256(body) in message and "0" * 64 in message
    assert "try again" in message and str(isolated_home / "weights" / "served_net.weights.h5") in message
    assert cache_files(isolated_home) == []
    reliability.record(
        "weights download with a wrong sha256 (127.0.0.1 server)", downloads=1, refused=1, files_left_in_cache=0
    )


def test_truncated_transfer_fails_clearly_and_leaves_nothing(
    server, add_config, trained_file, isolated_home, reliability
):
    _, body, _ = trained_file
    url = server.serve("/served_net.weights.h5", body, mode="truncated")
    add_config({**TINY, "weights": {"served": {"url": url, "sha256": sha256(body)}}})
    with pytest.raises(WeightsDownloadError, match=f"ended after .* of {len(body):,} bytes") as info:
        cnnzoo.get("served_net", weights="served")
    assert url in str(info.value) and "put it at" in str(info.value)
    assert cache_files(isolated_home) == []
    reliability.record("weights download cut off mid-transfer", downloads=1, refused=1, files_left_in_cache=0)


def test_server_down_fails_clearly_and_leaves_nothing(add_config, closed_port_url, isolated_home, reliability):
    add_config({**TINY, "weights": {"served": {"url": closed_port_url, "sha256": "1" * 64}}})
    with pytest.raises(WeightsDownloadError, match="could not download") as info:
        cnnzoo.get("served_net", weights="served")
    message = str(info.value)
    assert closed_port_url in message and "refused" in message.lower()
    assert str(isolated_home / "weights" / "net.weights.h5") in message  # the fix: where to put it
    assert cache_files(isolated_home) == []
    reliability.record(
        "weights server down", downloads=1, refused_with_the_path_to_put_the_file_at=1, files_left_in_cache=0
    )


def test_http_error_names_the_status(server, isolated_home):
    with pytest.raises(WeightsDownloadError, match="HTTP 404"):
        weights.download(
            server.url + "/missing.weights.h5", isolated_home / "weights" / "m.weights.h5", sha256="2" * 64
        )
    assert cache_files(isolated_home) == []


def test_download_requires_a_hash(server, tmp_path):
    with pytest.raises(WeightsError, match="`sha256` \\(or `md5`\\) is required"):
        weights.download(server.serve("/x.h5", b"abc"), tmp_path / "x.h5")
    assert server.requests == []


def test_damaged_cache_is_downloaded_again_online_and_reported_offline(
    server, add_config, trained_file, isolated_home, monkeypatch
):
    _, body, expected = trained_file
    url = server.serve("/served_net.weights.h5", body)
    add_config({**TINY, "weights": {"served": {"url": url, "sha256": sha256(body)}}})
    cached = isolated_home / "weights" / "served_net.weights.h5"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(body[:-10] + b"x" * 10)  # a damaged copy

    monkeypatch.setenv("CNNZOO_OFFLINE", "1")
    with pytest.raises(WeightsError, match="is damaged .* CNNZOO_OFFLINE is set") as info:
        cnnzoo.get("served_net", weights="served")
    assert str(cached) in str(info.value)
    assert server.requests == []

    monkeypatch.delenv("CNNZOO_OFFLINE")
    with pytest.warns(UserWarning, match="damaged .* downloading them again"):
        model = cnnzoo.get("served_net", weights="served")
    assert_same_weights(model, expected)
    assert cached.read_bytes() == body


def test_offline_never_touches_the_network_and_names_the_path(
    server, add_config, trained_file, isolated_home, monkeypatch
):
    _, body, expected = trained_file
    url = server.serve("/served_net.weights.h5", body)
    add_config({**TINY, "weights": {"served": {"url": url, "sha256": sha256(body)}}})
    monkeypatch.setenv("CNNZOO_OFFLINE", "1")
    target = isolated_home / "weights" / "served_net.weights.h5"
    with pytest.raises(WeightsNotFoundError) as info:
        cnnzoo.get("served_net", weights="served")
    message = str(info.value)
    assert f"put it at {str(target)!r}" in message and url in message and "CNNZOO_OFFLINE" in message
    assert server.requests == [] and cache_files(isolated_home) == []

    target.parent.mkdir(parents=True)  # follow the message: the file is then used, still offline
    target.write_bytes(body)
    assert_same_weights(cnnzoo.get("served_net", weights="served"), expected)
    assert server.requests == []


def test_unknown_name_lists_the_entry_names():
    with pytest.raises(UnknownWeightsError) as info:
        cnnzoo.get("digits_cnn", weights="imagenet")
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    message = str(info.value)
    assert "`digits_cnn` declares (its names: `digits`)" in message and "Received: weights='imagenet'" in message
    with pytest.raises(UnknownWeightsError, match="its names: none"):
        cnnzoo.get("lenet5", weights="imagenet")


# ------------------------------------------------------- ImageNet backbones


def _legacy_h5(model, path):
    """Writes `model`'s weights in the Keras 2 .h5 layout of the upstream keras.applications files."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


def test_shipped_imagenet_sources_are_the_ones_keras_uses():
    from keras.src.applications import efficientnet, mobilenet_v2, mobilenet_v3

    eff = cnnzoo.spec("efficientnetb0_classifier").weights["imagenet"]
    assert eff.target == "backbone"
    assert eff.url == efficientnet.BASE_WEIGHTS_PATH + "efficientnetb0_notop.h5"
    assert eff.md5 == efficientnet.WEIGHTS_HASHES["b0"][1]
    mob = cnnzoo.spec("bird_classifier_mobilenetv2").weights["imagenet"]
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    assert mob.target == "backbone" and mob.file == name and not mob.url  # keras publishes no hash for it
    assert mob.description.count(mobilenet_v2.BASE_WEIGHT_PATH + name) == 1
    small = cnnzoo.spec("mobilenetv3small_classifier").weights["imagenet"]
    assert small.target == "backbone"
    assert small.url == mobilenet_v3.BASE_WEIGHT_PATH + "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"
    assert small.md5 == mobilenet_v3.WEIGHTS_HASHES["small_224_1.0_float"][1]


def test_imagenet_backbone_weights_download_into_the_backbone(server, add_config, tmp_path, isolated_home):
    """The efficientnetb0_classifier entry with only its url and md5 pointed at a locally-made file."""
    from cnnzoo.zoo.builders import backbone_model

    spec = cnnzoo.spec("efficientnetb0_classifier")
    source = _legacy_h5(backbone_model(spec, input_shape=(32, 32, 3)), tmp_path / "efficientnetb0_notop.h5")
    body = source.read_bytes()
    raw = config.to_dict(spec)
    raw["name"] = "served_efficientnetb0"
    raw["weights"]["imagenet"]["url"] = server.serve("/keras-applications/efficientnetb0_notop.h5", body)
    raw["weights"]["imagenet"]["md5"] = hashlib.md5(body).hexdigest()  # md5-checked, like the real one
    add_config(raw)

    model = cnnzoo.get("served_efficientnetb0", num_classes=5, input_shape=(64, 64, 3), weights="imagenet")
    import keras

    expected = keras.models.clone_model(model.get_layer("backbone"))
    expected.load_weights(source)
    assert_same_weights(model.get_layer("backbone"), expected.get_weights())
    assert cache_files(isolated_home) == ["efficientnetb0_notop.h5"]
    assert model.output_shape == (None, 5)


def test_imagenet_offline_messages_for_the_shipped_entries(monkeypatch, isolated_home):
    monkeypatch.setenv("CNNZOO_OFFLINE", "1")
    eff = cnnzoo.spec("efficientnetb0_classifier").weights["imagenet"]
    with pytest.raises(WeightsNotFoundError) as info:
        weights.resolve(eff, "efficientnetb0_classifier")
    assert f"put it at {str(isolated_home / 'weights' / 'efficientnetb0_notop.h5')!r}" in str(info.value)
    assert eff.url in str(info.value) and eff.md5 in str(info.value)

    with pytest.raises(WeightsNotFoundError) as info:
        cnnzoo.get("bird_classifier_mobilenetv2", num_classes=3, input_shape=(96, 96, 3), weights="imagenet")
    target = isolated_home / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    assert f"Put the file at {str(target)!r}" in str(info.value)
    assert "storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/" in str(info.value)


def test_mobilenetv2_imagenet_file_put_in_the_cache_is_loaded(isolated_home, monkeypatch):
    from cnnzoo.zoo.builders import backbone_model

    monkeypatch.setenv("CNNZOO_OFFLINE", "1")
    spec = cnnzoo.spec("bird_classifier_mobilenetv2")
    backbone = backbone_model(spec, input_shape=(96, 96, 3))
    backbone.set_weights([w + 0.5 for w in backbone.get_weights()])  # recognisably not the fresh init
    target = weights.cache_path(spec.weights["imagenet"])
    target.parent.mkdir(parents=True)
    _legacy_h5(backbone, target)
    model = cnnzoo.get("bird_classifier_mobilenetv2", num_classes=3, input_shape=(96, 96, 3), weights="imagenet")
    assert_same_weights(model.get_layer("backbone"), backbone.get_weights())


# ------------------------------------------------------ shipped digits weights


def test_shipped_digits_weights_score_at_least_98_percent():
    data = cnnzoo.data.digits()
    model = cnnzoo.get("digits_cnn", weights="digits")
    _, accuracy = model.evaluate(data.x_test, data.y_test, verbose=0)
    assert accuracy >= 0.98
    source = cnnzoo.spec("digits_cnn").weights["digits"]
    path = weights.resolve(source, "digits_cnn")
    assert path.parent.name == "pretrained" and path.stat().st_size < 1_000_000
    assert weights.file_hash(path) == source.sha256
    assert model.get_layer("head").class_names == [str(i) for i in range(10)]


def test_digits_weights_at_another_input_shape_fail_clearly():
    with pytest.raises(WeightsError, match="does not match `digits_cnn`"):
        cnnzoo.get("digits_cnn", weights="digits", input_shape=(16, 16, 1))


# Where retraining is bit-identical to the shipped file: the stack it was trained on. Decided by measurement on
# that machine (2-core x86-64 with AVX-512, TF 2.21.0, Keras 3.15.1): the script rerun there gives the shipped
# sha256 every time, but the same machine with TF_NUM_INTRAOP/INTEROP_THREADS=1 (98.61% held-out accuracy) or
# TF_ENABLE_ONEDNN_OPTS=0 (98.89%) gives another file: reduction order depends on the kernels, the instruction
# sets and the thread count. Elsewhere only the tolerances below are asserted; seeds 1-18 and those two runs (which
# stand in for other CPUs) scored 98.61-100% (shipped: 99.44%, so within 0.83 points) and agreed with the shipped
# model's predictions on 98.33-99.72% of the 360 held-out images (at most 6 differ; the test allows 7).
REFERENCE_STACK = {
    "tensorflow": "2.21.0",
    "keras": "3.15.1",
    "machine": "x86_64",
    "cache": "1024 KB",
    "threads": (2, None, None),
    "onednn": None,
    "isa": ["avx", "avx2", "avx512_bf16", "avx512_vnni", "avx512bw", "avx512f", "avx_vnni", "fma"],
}
_ISA = {
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
}


def _stack():
    """What decides the rounding of training on a CPU: versions, instruction sets, cache, threads, oneDNN."""
    import os
    import platform

    import keras
    import tensorflow as tf

    flags, cache = set(), None
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            if key.strip() == "flags" and not flags:
                flags = set(value.split())
            elif key.strip() == "cache size" and cache is None:
                cache = value.strip()
    except OSError:
        pass
    threads = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        os.environ.get("TF_NUM_INTRAOP_THREADS"),
        os.environ.get("TF_NUM_INTEROP_THREADS"),
    )
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "machine": platform.machine(),
        "cache": cache,
        "threads": threads,
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "isa": sorted(flags & _ISA),
    }


@pytest.mark.slow
def test_training_script_reproduces_the_shipped_weights(tmp_path):
    from cnnzoo.pretrained import train_digits

    path, accuracy, digest = train_digits.train(tmp_path / "digits.weights.h5")
    data = cnnzoo.data.digits()
    assert len(data.x_test) == 360
    retrained = cnnzoo.get("digits_cnn", weights=path)
    assert retrained.evaluate(data.x_test, data.y_test, verbose=0)[1] == pytest.approx(accuracy)
    ours = retrained.predict(data.x_test, verbose=0).argmax(axis=1)
    theirs = cnnzoo.get("digits_cnn", weights="digits").predict(data.x_test, verbose=0).argmax(axis=1)
    shipped_accuracy = float(np.mean(theirs == data.y_test))
    assert accuracy >= 0.98
    assert abs(accuracy - shipped_accuracy) <= 4 / 360 + 1e-6  # about 1 point: 4 of the 360 held-out images
    assert np.mean(ours == theirs) >= 0.98  # the same predictions on nearly all held-out images
    shipped = cnnzoo.spec("digits_cnn").weights["digits"].sha256
    assert weights.file_hash(train_digits.DEFAULT_OUT) == shipped  # the script's default output is the shipped file
    if _stack() == REFERENCE_STACK:  # deterministic here: the very same bytes
        assert digest == shipped, f"retrained weights differ bitwise on the reference stack {REFERENCE_STACK}"


def test_training_script_is_deterministic_on_this_machine(tmp_path):
    """Seeded, with TensorFlow's op determinism: two runs in one process write the same bytes, on any CPU."""
    from cnnzoo.pretrained import train_digits

    first = train_digits.train(tmp_path / "a.weights.h5", epochs=1)
    second = train_digits.train(tmp_path / "b.weights.h5", epochs=1)
    assert first[2] == second[2] and first[1] == second[1]
    other_seed = train_digits.train(tmp_path / "c.weights.h5", seed=1, epochs=1)
    assert other_seed[2] != first[2]
