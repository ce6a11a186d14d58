"""Who may ask `cnnzoo serve`, and how much: the API key, body time-outs, the bounded fair queue, `/metrics`.

Real uvicorn servers on 127.0.0.1 and real requests (http.client, raw sockets,
from 127.0.0.2 and 127.0.0.3 where a test needs other client addresses), real
`cnnzoo serve` processes, and the page's own `api()` JavaScript run by Node.
Every server stops by itself (`running(..., timeout=...)`); no test waits on a
clock: each waits for the server's own counters to say what happened.
"""

import asyncio
import contextlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse

import pytest

import cnnzoo
from conftest import PYTHON, REPO, write_image_folder

pytest.importorskip("uvicorn", reason="the `serve` extra (uvicorn) is not installed")
pytest.importorskip("starlette", reason="the `serve` extra (starlette) is not installed")

from cnnzoo.deploy.serve import create_app, page_html, running  # noqa: E402
from cnnzoo.deploy.serve_guard import Limits  # noqa: E402
from cnnzoo.deploy.serve_queue import FairQueue, QueueFull  # noqa: E402

KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
SERVER_TIMEOUT = 180  # seconds: a server left behind by a failing test stops by itself


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    import keras

    root = tmp_path_factory.mktemp("guard")
    keras.utils.set_random_seed(0)
    model = cnnzoo.get(
        "bird_classifier",
        num_classes=2,
        input_shape=(16, 16, 3),
        compile=False,
        blocks=[{"filters": 4}],
        dense=[4],
        class_names=["robin", "owl"],
    )
    path = root / "birds.keras"
    model.save(path)
    folder = write_image_folder(root / "png", classes=["robin"], per_class=1, size=(20, 20))
    return path, next(folder.rglob("*.png")).read_bytes()


@contextlib.contextmanager
def serving(saved, explain=None, **limits):
    limits.setdefault("reject_pause_s", 0.01)  # rejections are held 1 s by default: the tests make many
    app = create_app(
        saved[0], top_k=2, max_batch=4, max_delay_ms=1, explain=explain, api_key=KEY, limits=Limits(**limits)
    )
    with running(app, timeout=SERVER_TIMEOUT) as url:
        yield url, urllib.parse.urlsplit(url).port


def request(port, method, path, body=None, headers=None, source="127.0.0.1"):
    """(status, headers dict (lower-case names), body bytes), from the client address `source`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def metrics(port):
    """The `/metrics` samples: {(name, frozenset of label pairs): value}, checked line by line as Prometheus reads."""
    status, headers, body = request(port, "GET", "/metrics", headers=AUTH)
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    samples, typed, helped = {}, {}, set()
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_]\w*="(?:[^"\\]|\\.)*",?)*)\})? (\S+)$')
    for line in body.decode().splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            typed[name] = kind
        else:
            m = sample.match(line)
            assert m, f"not a sample line: {line!r}"
            labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            samples[(m.group(1), labels)] = float(m.group(3))
    for name, _ in samples:
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in typed else name
        assert family in typed and family in helped, name
    return samples, typed


def value(samples, name, **labels):
    return samples.get((name, frozenset((k, str(v)) for k, v in labels.items())), 0.0)


def held(port):
    """(uploads active, uploads waiting) as `/metrics` says now."""
    samples, _ = metrics(port)
    return value(samples, "cnnzoo_requests_active"), value(samples, "cnnzoo_requests_waiting")


def wait_for(condition, what):
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"the server never showed {what}"
        time.sleep(0.02)


def test_every_route_but_the_page_needs_the_key(saved):
    with serving(saved) as (_, port):
        assert request(port, "GET", "/")[0] == 200 and request(port, "GET", "/favicon.ico")[0] == 204
        for method, path in [("GET", "/info"), ("GET", "/health"), ("GET", "/api"), ("GET", "/metrics"),
                             ("POST", "/predict"), ("POST", "/explain"), ("GET", "/nowhere")]:  # fmt: skip
            body = saved[1] if method == "POST" else None
            status, headers, answer = request(port, method, path, body)
            assert status == 401 and headers["www-authenticate"] == 'Bearer realm="cnnzoo"', path
            assert "Authorization: Bearer" in json.loads(answer)["error"]
            for wrong in ("Bearer not-the-key", f"Basic {KEY}", f"Bearer {KEY}x", "Bearer"):
                status, headers, _ = request(port, method, path, body, {"Authorization": wrong})
                assert status == 401 and 'error="invalid_token"' in headers["www-authenticate"], (path, wrong)
        status, _, answer = request(port, "POST", "/predict", saved[1], {"Authorization": f"bearer {KEY}"})
        assert status == 200 and json.loads(answer)["label"] in ("robin", "owl")
        assert request(port, "GET", "/info", headers=AUTH)[0] == 200
        samples, _ = metrics(port)
        assert value(samples, "cnnzoo_http_rejected_total", reason="unauthorized") == 7 * 5
        assert value(samples, "cnnzoo_http_requests_total", route="other", method="GET", status=401) == 5


def test_a_slow_body_gets_408_and_never_holds_a_worker(saved):
    head = (
        f"POST /predict HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {KEY}\r\n"
        "Content-Type: application/octet-stream\r\nContent-Length: 5000\r\n\r\n"
    ).encode()
    with serving(saved, body_timeout_s=600, max_active=1, client_share=0) as (_, port):
        slow = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(3)]
        try:
            for s in slow:
                s.sendall(head + b"x" * 100)  # 100 of the 5,000 bytes promised, and then nothing
            status, _, _ = request(port, "POST", "/predict", saved[1], AUTH)  # the one worker is free
            assert status == 200
            for s in slow:
                s.setblocking(False)
                with pytest.raises(BlockingIOError):  # still unanswered: read, not refused
                    s.recv(1)
        finally:
            for s in slow:
                s.close()
    with serving(saved, body_timeout_s=0.3) as (_, port):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(head + b"x" * 100)
            answer = b""
            while chunk := s.recv(65536):  # the server answers, then closes the connection
                answer += chunk
        top, _, body = answer.partition(b"\r\n\r\n")
        assert top.startswith(b"HTTP/1.1 408") and b"connection: close" in top.lower()
        assert "did not arrive within 0.3 s" in json.loads(body)["error"]
        samples, _ = metrics(port)
        assert value(samples, "cnnzoo_http_rejected_total", reason="body_timeout") == 1
        assert value(samples, "cnnzoo_http_requests_total", route="/predict", method="POST", status=408) == 1


def test_a_full_queue_answers_503_and_a_greedy_client_429_with_retry_after(saved):
    gate = threading.Event()

    def held_explainer(model, rgb, class_name):  # /explain holds the one worker until the test lets it go
        gate.wait(120)
        return rgb

    answers = {}

    def send(name, path, source):
        answers[name] = request(port, "POST", path, saved[1], AUTH, source=source)

    limits = {"max_active": 1, "max_queue": 1, "client_share": 2}
    with serving(saved, explain=held_explainer, **limits) as (_, port):
        threads = []
        try:
            for name, path, source, active, waiting in [("a", "/explain", "127.0.0.1", 1, 0),
                                                        ("b", "/predict", "127.0.0.1", 1, 1)]:  # fmt: skip
                threads.append(threading.Thread(target=send, args=(name, path, source)))
                threads[-1].start()
                wait_for(lambda a=active, w=waiting: held(port) == (a, w), f"{active} active and {waiting} waiting")
            status, headers, body = request(port, "POST", "/predict", saved[1], AUTH, source="127.0.0.1")
            assert status == 429 and headers["retry-after"] == "1" and "127.0.0.1" in json.loads(body)["error"]
            status, headers, body = request(port, "POST", "/predict", saved[1], AUTH, source="127.0.0.2")
            assert status == 503 and headers["retry-after"] == "1" and "queue is full" in json.loads(body)["error"]
            assert request(port, "GET", "/health", headers=AUTH)[0] == 200  # reading routes are never queued
        finally:
            gate.set()
            for t in threads:
                t.join(60)
        assert answers["a"][0] == 200 and answers["a"][1]["content-type"] == "image/png"
        assert answers["b"][0] == 200 and json.loads(answers["b"][2])["label"] in ("robin", "owl")
        samples, _ = metrics(port)
        assert value(samples, "cnnzoo_http_rejected_total", reason="client_share") == 1
        assert value(samples, "cnnzoo_http_rejected_total", reason="queue_full") == 1
        assert value(samples, "cnnzoo_requests_active") == 0 and value(samples, "cnnzoo_requests_max_queue") == 1


def test_the_fair_queue_serves_clients_round_robin_and_times_out():
    async def scenario():
        queue, order = FairQueue(max_active=1, max_queue=5, timeout_s=60), []
        await queue.acquire("flood")

        async def one(client):
            await queue.acquire(client)
            order.append(client)

        tasks = []
        for client in ["flood", "flood", "flood", "alice", "bob"]:
            tasks.append(asyncio.create_task(one(client)))
            await asyncio.sleep(0)
        assert queue.state()["waiting"] == 5
        with pytest.raises(QueueFull, match="queue_full"):
            await queue.acquire("carol")
        holder = "flood"
        for turn in range(5):
            queue.release(holder)
            while len(order) <= turn:  # the granted task runs
                await asyncio.sleep(0)
            holder = order[-1]
        await asyncio.gather(*tasks)
        quick = FairQueue(max_active=1, max_queue=5, timeout_s=0.01)
        await quick.acquire("a")
        with pytest.raises(QueueFull, match="queue_timeout"):
            await quick.acquire("b")
        return order, queue.state(), quick.state()

    order, state, quick = asyncio.run(scenario())
    assert order == ["flood", "alice", "bob", "flood", "flood"]  # one turn each, not first come first served
    assert state == {"active": 1, "waiting": 0, "max_active": 1, "max_queue": 5, "clients": 3}  # served within 1 s
    assert quick["waiting"] == 0 and quick["active"] == 1


def test_metrics_count_requests_latency_batches_and_errors(saved):
    with serving(saved) as (_, port):
        for _ in range(3):
            assert request(port, "POST", "/predict", saved[1], AUTH)[0] == 200
        assert request(port, "POST", "/predict", b"not an image", AUTH)[0] == 415
        health = json.loads(request(port, "GET", "/health", headers=AUTH)[2])
        samples, typed = metrics(port)
    assert typed["cnnzoo_http_request_duration_seconds"] == "histogram" and typed["cnnzoo_batch_size"] == "histogram"
    assert typed["cnnzoo_http_requests_total"] == "counter" and typed["cnnzoo_queue_depth"] == "gauge"
    assert value(samples, "cnnzoo_http_requests_total", route="/predict", method="POST", status=200) == 3
    assert value(samples, "cnnzoo_http_requests_total", route="/predict", method="POST", status=415) == 1
    assert value(samples, "cnnzoo_upload_errors_total") == 1 and value(samples, "cnnzoo_model_errors_total") == 0
    for name, labels, count in [("cnnzoo_http_request_duration_seconds", {"route": "/predict"}, 4),
                                ("cnnzoo_batch_size", {}, health["forward_passes"])]:  # fmt: skip
        rows = [(dict(k), v) for (n, k), v in samples.items() if n == f"{name}_bucket"]
        buckets = sorted((float(k["le"]), v) for k, v in rows if labels.items() <= k.items())
        assert [v for _, v in buckets] == sorted(v for _, v in buckets) and buckets[-1][0] == float("inf")
        assert buckets[-1][1] == value(samples, f"{name}_count", **labels) == count
    assert value(samples, "cnnzoo_batch_size_sum") == health["images"] == 3
    assert value(samples, "cnnzoo_queue_depth") == 0 and value(samples, "cnnzoo_model_seconds_total") > 0
    info = [dict(labels) for (name, labels), v in samples.items() if name == "cnnzoo_model_info" and v == 1]
    assert len(info) == 1 and info[0]["runtime"] and info[0]["model"]


def _serve(args, env):
    return subprocess.Popen(
        [PYTHON, "-m", "cnnzoo.cli", "serve", *args],
        cwd=REPO,
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_an_open_host_without_a_key_refuses_to_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CNNZOO_API_KEY"}
    missing = str(tmp_path / "not-loaded.keras")  # never read: the refusal comes first
    for args in (["--host", "0.0.0.0"], ["--host", "::"], ["--host", "0.0.0.0", "--api-key", ""]):
        proc = _serve([missing, *args], env)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 2, out
        assert "not-loaded" not in out and "tensorflow" not in out.lower(), out
        if "" in args:
            assert "`--api-key` must not be empty" in out
        else:
            assert all(word in out for word in ("--api-key", "CNNZOO_API_KEY", "--insecure")), out


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two `cnnzoo serve` processes load TensorFlow: 15-35 s
def test_the_command_with_a_key_from_the_environment_and_with_insecure(saved):
    env = {k: v for k, v in os.environ.items() if k != "CNNZOO_API_KEY"}
    ports = [_free_port(), _free_port()]
    keyed = _serve(
        [str(saved[0]), "--host", "0.0.0.0", "--port", str(ports[0]), "--no-explain"], {**env, "CNNZOO_API_KEY": KEY}
    )
    insecure = _serve([str(saved[0]), "--host", "0.0.0.0", "--port", str(ports[1]), "--no-explain", "--insecure"], env)
    try:
        for proc, port in ((keyed, ports[0]), (insecure, ports[1])):
            deadline = time.monotonic() + 150
            while True:
                try:
                    request(port, "GET", "/")
                    break
                except OSError:
                    assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
                    time.sleep(0.2)
        assert request(ports[0], "GET", "/info")[0] == 401
        assert request(ports[0], "POST", "/predict", saved[1], AUTH)[0] == 200
        status, _, body = request(ports[0], "GET", "/metrics", headers=AUTH)
        # the command freezes the loaded model out of the collector (full collections stalled every request)
        frozen = re.search(rb"^python_gc_frozen_objects (\d+)$", body, re.M)
        assert status == 200 and frozen and int(frozen.group(1)) > 100_000, body[-2000:]
        assert request(ports[1], "GET", "/info")[0] == 200
        assert request(ports[1], "POST", "/predict", saved[1])[0] == 200
    finally:
        for proc in (keyed, insecure):
            proc.terminate()
        outputs = [proc.communicate(timeout=30)[0] for proc in (keyed, insecure)]
    assert "(API key required)" in outputs[0]
    assert "without an API key (--insecure)" in outputs[1]


@pytest.mark.skipif(shutil.which("node") is None, reason="no Node.js to run the page's script")
def test_the_page_asks_for_the_key_once_and_sends_it(saved, tmp_path):
    script = re.search(r"<script>(.*)</script>", page_html(), re.S).group(1)
    helper = re.search(r"const KEY = .*?\n}\n", script, re.S).group(0)  # the page's own key handling and api()
    with serving(saved) as (url, port):
        program = tmp_path / "page_api.mjs"
        program.write_text(
            "const store = new Map(); let asked = 0;\n"
            "globalThis.sessionStorage = { getItem: k => store.get(k) ?? null, setItem: (k, v) => store.set(k, v) };\n"
            f"globalThis.prompt = () => {{ asked += 1; return {json.dumps(KEY)}; }};\n"
            f"globalThis.location = {{ hash: '', pathname: '/', search: '' }};\n"
            f"const base = {json.dumps(url + '/')}, realFetch = fetch;\n"
            "globalThis.fetch = (path, options) => realFetch(new URL(path, base), options);\n"
            + helper
            + "const photo = new Blob([Buffer.from(process.argv[2], 'base64')]);\n"
            "const form = new FormData(); form.append('file', photo, 'robin.png');\n"
            "const asking = [api('info'), api('predict', { method: 'POST', body: form })];\n"
            "const [info, predicted] = await Promise.all(asking);\n"
            "console.log(JSON.stringify({ asked, info: info.status, predict: predicted.status,"
            " label: (await predicted.json()).label, key: store.get(KEY) }));\n"
        )
        import base64

        proc = subprocess.run(
            ["node", str(program), base64.b64encode(saved[1]).decode()], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        samples, _ = metrics(port)
    assert result["asked"] == 1 and result["key"] == KEY  # two calls, one question
    assert result["info"] == 200 and result["predict"] == 200 and result["label"] in ("robin", "owl")
    assert value(samples, "cnnzoo_http_rejected_total", reason="unauthorized") == 2  # each call's first try
