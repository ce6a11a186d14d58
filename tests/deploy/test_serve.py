"""`cnnzoo serve`: a real uvicorn server on 127.0.0.1, real HTTP requests (urllib, http.client).

Every server here is bounded: `running(..., timeout=...)` stops it by itself,
and the CLI subprocess is killed after its check.
"""

import asyncio
import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

import cnnzoo
from conftest import PYTHON, REPO, write_image_folder

pytest.importorskip("uvicorn", reason="the `serve` extra (uvicorn) is not installed")
pytest.importorskip("starlette", reason="the `serve` extra (starlette) is not installed")

from cnnzoo.deploy.serve import create_app, running  # noqa: E402
from cnnzoo.deploy.serve_batch import Batcher  # noqa: E402

CLASSES = ["robin", "heron", "owl"]
SERVER_TIMEOUT = 300  # seconds: a server left behind by a failing test stops by itself


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    import keras

    root = tmp_path_factory.mktemp("serve")
    keras.utils.set_random_seed(0)
    model = cnnzoo.get(
        "bird_classifier",
        num_classes=3,
        input_shape=(16, 16, 3),
        compile=False,
        blocks=[{"filters": 4, "batch_norm": True}, {"filters": 8}],
        dense=[8],
        class_names=CLASSES,
    )
    path = root / "birds.keras"
    model.save(path)
    folder = write_image_folder(root / "png", classes=CLASSES, per_class=2, size=(24, 20))
    jpegs = write_image_folder(root / "jpg", classes=CLASSES[:1], per_class=2, size=(40, 30), fmt="JPEG")
    files = sorted(folder.rglob("*.png")) + sorted(jpegs.rglob("*.jpg"))
    return path, files


@pytest.fixture(scope="module")
def server(saved):
    from cnnzoo.cli.serve import build_app

    app = build_app(saved[0], top_k=3, max_batch=16, max_delay_ms=20)
    with running(app, timeout=SERVER_TIMEOUT) as url:
        yield url


def post(url, body, headers=None):
    """(status, headers, body bytes) of a POST; 4xx/5xx answers are returned, not raised."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def get_json(url):
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read())


def multipart(data, field="file", filename="photo.png"):
    boundary = "cnnzoo-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_predict_raw_and_multipart_agree_with_cnnzoo_predict(server, saved):
    path, files = saved
    expected = cnnzoo.predict(str(path), [str(f) for f in files], top_k=3)
    for file, want in zip(files, expected):
        data = file.read_bytes()
        status, headers, raw = post(server + "/predict", data, {"Content-Type": "application/octet-stream"})
        assert status == 200 and headers["content-type"] == "application/json"
        status, _, form = post(server + "/predict", *multipart(data, filename=file.name))
        assert status == 200
        for answer in (json.loads(raw), json.loads(form)):
            assert answer["label"] == want.label
            assert [t["label"] for t in answer["top_k"]] == [label for label, _ in want.top_k]
            np.testing.assert_allclose(
                [t["probability"] for t in answer["top_k"]], [p for _, p in want.top_k], atol=1e-5
            )
        assert json.loads(form)["source"] == file.name and json.loads(raw)["source"] is None
    status, _, body = post(server + "/predict?top_k=1", files[0].read_bytes())
    assert status == 200 and len(json.loads(body)["top_k"]) == 1
    status, _, body = post(server + "/predict?top_k=9", files[0].read_bytes())
    assert status == 400 and "top_k" in json.loads(body)["error"]


def test_health_and_info_describe_the_model(server, saved):
    import keras

    health = get_json(server + "/health")
    assert health["status"] == "ok" and health["max_batch"] == 16
    info = get_json(server + "/info")
    model = keras.saving.load_model(saved[0], compile=False)
    assert info["input_shape"] == [16, 16, 3] and info["classes"] == CLASSES and info["num_classes"] == 3
    assert info["parameters"] == model.count_params() and info["model"] == model.name
    assert info["file"] == str(saved[0]) and info["top_k"] == 3 and info["explain"] is True
    assert info["max_upload_bytes"] == 10 * 2**20 and "forward_passes" in info["stats"]


def test_bad_uploads_are_answered_with_4xx_and_the_reason(server, saved):
    png = saved[1][0].read_bytes()
    buffer = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(buffer, "TIFF")
    cases = {
        "empty": (b"", 400, "empty"),
        "text": (b"hello, not a picture", 415, "not an image"),
        "tiff": (buffer.getvalue(), 415, "not supported"),
        "truncated png": (png[: len(png) // 2], 400, "corrupt or truncated"),
    }
    for name, (body, status, reason) in cases.items():
        got, headers, answer = post(server + "/predict", body)
        assert got == status, name
        assert headers["content-type"] == "application/json" and reason in json.loads(answer)["error"], name
    got, _, answer = post(server + "/predict", *multipart(png, field="image"))
    assert got == 400 and "`file`" in json.loads(answer)["error"]
    got, _, answer = post(server + "/predict", *multipart(b""))
    assert got == 400 and "empty" in json.loads(answer)["error"]
    with pytest.raises(urllib.error.HTTPError) as wrong_method:
        urllib.request.urlopen(server + "/predict", timeout=30)
    assert wrong_method.value.code == 405 and "error" in json.loads(wrong_method.value.read())
    assert get_json(server + "/health")["status"] == "ok"  # still serving


def test_uploads_over_the_limit_are_refused_with_413(saved):
    limit_mb = 0.01  # 10,485 bytes
    big = np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    from PIL import Image

    Image.fromarray(big).save(buffer, "PNG")  # noise does not compress: ~19 KB
    data = buffer.getvalue()
    assert len(data) > limit_mb * 2**20
    with running(create_app(saved[0], max_upload_mb=limit_mb), timeout=SERVER_TIMEOUT) as url:
        status, _, answer = post(url + "/predict", data)
        assert status == 413 and "too large" in json.loads(answer)["error"] and "10,485" in json.loads(answer)["error"]
        status, _, answer = post(url + "/predict", *multipart(data))
        assert status == 413
        host, port = url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)  # chunked: no Content-Length to check first
        conn.request(
            "POST", "/predict", body=iter([data[i : i + 4096] for i in range(0, len(data), 4096)]), encode_chunked=True
        )
        response = conn.getresponse()
        assert response.status == 413 and "too large" in json.loads(response.read())["error"]
        conn.close()
        status, _, _ = post(url + "/predict", saved[1][0].read_bytes())  # small files still pass
        assert status == 200
        status, _, answer = post(url + "/explain", saved[1][0].read_bytes())
        assert status == 501 and "explainer" in json.loads(answer)["error"]  # create_app has none by default


def test_the_page_is_served_without_external_resources(server):
    with urllib.request.urlopen(server + "/", timeout=30) as r:
        assert r.status == 200 and r.headers["content-type"].startswith("text/html")
        page = r.read().decode()
    assert "<html" in page and 'api("predict"' in page and 'api("explain"' in page and 'type="file"' in page
    assert 'src="http' not in page and 'href="http' not in page and "//cdn" not in page


def test_the_page_links_its_api_which_describes_every_route(server):
    with urllib.request.urlopen(server + "/", timeout=30) as r:
        page = r.read().decode()
    assert '<a href="api">' in page and '<link rel="icon" href="favicon.ico">' in page
    api = get_json(server + "/api")
    assert api["model"] == get_json(server + "/info")["model"] == "bird_classifier"
    described = {(e["method"], e["path"]) for e in api["endpoints"]}
    assert described == {
        ("GET", "/"), ("GET", "/api"), ("GET", "/info"), ("GET", "/health"), ("POST", "/predict"), ("POST", "/explain"),
        ("GET", "/metrics"),
    }  # fmt: skip
    assert f"curl -F file=@photo.jpg {server}/predict" in api["examples"]
    for _, path in described - {("POST", "/predict"), ("POST", "/explain")}:  # each GET answers
        with urllib.request.urlopen(server + path, timeout=30) as r:
            assert r.status == 200, path
    with urllib.request.urlopen(server + "/favicon.ico", timeout=30) as r:  # no 404 for the browser's icon request
        assert r.status == 204 and r.read() == b""


def test_concurrent_requests_share_forward_passes(server, saved):
    path, files = saved
    data = [f.read_bytes() for f in files]
    expected = cnnzoo.predict(str(path), [str(f) for f in files], top_k=3)
    before = get_json(server + "/health")
    answers, failures = [], []
    barrier = threading.Barrier(16)

    def client(i):
        barrier.wait()
        for j in range(4):
            k = (i + j) % len(files)
            status, _, body = post(server + "/predict", *multipart(data[k], filename=f"{k}.img"))
            (answers if status == 200 else failures).append(json.loads(body))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures and len(answers) == 64
    for answer in answers:
        want = expected[int(answer["source"].split(".")[0])]
        assert answer["label"] == want.label and answer["probability"] == pytest.approx(want.probability, abs=1e-5)
    after = get_json(server + "/health")
    images = after["images"] - before["images"]
    passes = after["forward_passes"] - before["forward_passes"]
    assert images == 64
    assert passes < images / 2, after  # batched: several requests per forward pass
    assert after["largest_batch"] > 1


def test_explain_returns_a_readable_gradcam_png(server, saved):
    from PIL import Image

    file = saved[1][-1]  # a 40x30 JPEG: drawn enlarged, with a title and a colour bar beside it
    status, headers, body = post(server + "/explain", file.read_bytes())
    assert status == 200 and headers["content-type"] == "image/png" and body[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(body)) as im:
        assert im.mode == "RGB" and im.size[1] >= 224 and im.size[0] > im.size[1] * 30 / 40
    status, _, body = post(server + "/explain?class=owl", *multipart(file.read_bytes()))
    assert status == 200 and body[:4] == b"\x89PNG"
    status, _, body = post(server + "/explain?class=eagle", file.read_bytes())
    assert status == 400 and "eagle" in json.loads(body)["error"]


@pytest.mark.filterwarnings("ignore:In the future `np.object`:FutureWarning")  # Keras's tf2onnx on NumPy 2
def test_an_exported_onnx_model_is_served_in_its_runtime(saved, tmp_path):
    pytest.importorskip("onnxruntime", reason="the `export` extra (onnxruntime) is not installed")
    import keras

    model = keras.saving.load_model(saved[0], compile=False)
    model(np.zeros((1, 16, 16, 3), np.float32))  # Keras exports only a model that has been called
    onnx_path = tmp_path / "birds.onnx"
    model.export(str(onnx_path), format="onnx", verbose=False)  # plain Keras export: no labels inside
    expected = cnnzoo.predict(model, [str(f) for f in saved[1]], top_k=3)
    with running(create_app(onnx_path, top_k=3), timeout=SERVER_TIMEOUT) as url:
        info = get_json(url + "/info")
        assert info["runtime"] == "onnx" and info["input_shape"] == [16, 16, 3] and info["parameters"] is None
        for file, want in zip(saved[1], expected):
            status, _, body = post(url + "/predict", file.read_bytes())
            answer = json.loads(body)
            assert status == 200 and answer["label"] == info["classes"][CLASSES.index(want.label)]
            np.testing.assert_allclose(
                [t["probability"] for t in answer["top_k"]], [p for _, p in want.top_k], atol=1e-5
            )
        status, _, body = post(url + "/explain", saved[1][0].read_bytes())
        assert status == 501 and ".keras" in json.loads(body)["error"]


def test_batcher_groups_waiting_images_and_max_batch_1_turns_it_off():
    calls = []

    def fn(batch):
        calls.append(len(batch))
        time.sleep(0.01)
        return batch.reshape(len(batch), -1)[:, :2] * 2

    async def scenario(max_batch):
        batcher = Batcher(fn, max_batch=max_batch, max_delay_ms=5)
        await batcher.start()
        try:
            rows = await asyncio.gather(*(batcher.submit(np.full((1, 1, 2), i, np.float32)) for i in range(10)))
        finally:
            await batcher.stop()
        return rows, batcher.stats()

    rows, stats = asyncio.run(scenario(4))
    assert [row.tolist() for row in rows] == [[2.0 * i, 2.0 * i] for i in range(10)]  # each caller gets its row
    assert calls == [4, 4, 2] and stats["forward_passes"] == 3 and stats["images"] == 10
    assert stats["batch_sizes"] == {"2": 1, "4": 2} and stats["largest_batch"] == 4
    calls.clear()
    rows, stats = asyncio.run(scenario(1))
    assert calls == [1] * 10 and stats["mean_batch"] == 1.0


def test_importing_serve_needs_neither_tensorflow_nor_starlette():
    code = (
        "import sys; import cnnzoo.deploy, cnnzoo.deploy.serve, cnnzoo.cli.serve, cnnzoo.cli.app\n"
        "cnnzoo.cli.app.build_parser()\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'starlette', 'uvicorn') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_missing_serve_extra_is_named(saved, monkeypatch):
    from cnnzoo.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "starlette", None)  # import starlette -> ImportError
    with pytest.raises(MissingExtraError, match=r"cnnzoo\[serve\]"):
        create_app(saved[0])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cnnzoo_serve_command_runs_uvicorn(saved, tmp_path):
    port = _free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "cnnzoo.cli",
            "serve",
            str(saved[0]),
            "--port",
            str(port),
            "--top-k",
            "2",
            "--max-batch",
            "4",
            "--no-explain",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                info = get_json(f"http://127.0.0.1:{port}/info")
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
                time.sleep(0.2)
        assert info["top_k"] == 2 and info["explain"] is False and info["stats"]["max_batch"] == 4
        status, _, body = post(f"http://127.0.0.1:{port}/predict", saved[1][0].read_bytes())
        assert status == 200 and len(json.loads(body)["top_k"]) == 2
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _chromium():
    return next(
        (found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))), None
    )


@pytest.mark.slow
def test_headless_chromium_screenshot_of_the_page_with_a_prediction(server, saved, tmp_path):
    import base64

    from PIL import Image

    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium here (looked for chromium, chromium-browser, google-chrome on PATH)")
    src = "data:image/png;base64," + base64.b64encode(saved[1][0].read_bytes()).decode()
    shot = tmp_path / "page.png"
    keep = os.environ.get("CNNZOO_KEEP_SCREENSHOT")  # a path to keep the picture at, for a person to look at
    before = get_json(server + "/health")["images"]
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=10000",
            f"--screenshot={shot}",
            "--window-size=1000,700",
            server + "/?src=" + urllib.request.quote(src, safe=""),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    if keep:
        shutil.copy(shot, keep)
    with Image.open(shot) as im:
        assert im.size == (1000, 700)
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
    assert get_json(server + "/health")["images"] > before  # the page asked for a prediction
    bar_green = np.all(np.abs(pixels.astype(int) - [0x1F, 0x9D, 0x55]) < 8, axis=1).sum()
    assert bar_green > 50  # the top-1 bar is drawn


@pytest.mark.slow
def test_headless_chromium_lists_several_images_in_the_order_given(server, saved):
    import functools
    import http.server
    import re

    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium here (looked for chromium, chromium-browser, google-chrome on PATH)")
    folder = saved[1][0].parent

    class Images(http.server.SimpleHTTPRequestHandler):  # the photos on another origin, readable by the page
        def end_headers(self):
            self.send_header("Access-Control-Allow-Origin", "*")
            super().end_headers()

        def log_message(self, *args):
            pass

    images = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Images, directory=str(folder)))
    threading.Thread(target=images.serve_forever, daemon=True).start()
    try:
        names = sorted(p.name for p in folder.iterdir())[:3]
        urls = [f"http://127.0.0.1:{images.server_address[1]}/{name}" for name in reversed(names)]  # not sorted
        query = "&".join("src=" + urllib.request.quote(u, safe="") for u in urls)
        proc = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", "--dump-dom",
             f"{server}/?{query}"],
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
    finally:
        images.shutdown()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.findall(r'<div class="name">([^<]*)</div>', proc.stdout) == urls  # the order given, not reversed
