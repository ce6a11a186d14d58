"""`cnnzoo serve` under abuse: good clients' latency, quiet vs beside a flood and slow bodies, in one run.

The server is the real command (`python -m cnnzoo.cli serve MODEL --api-key ...`,
its default limits) in its own process on 127.0.0.1. Good clients: 16 threads,
each from its own loopback address (127.0.0.10-25: 16 users) with a keep-alive
connection, posting a 96x96 JPEG with the key and waiting for each answer. The
abuse runs in a second process (this script with `--abuse`):

- a flood: 64 threads from one address (127.0.0.2) posting as fast as they
  can with the key, retrying at once on 429/503 (ignoring Retry-After);
- slow bodies: 48 connections from three addresses (127.0.0.3-5) that promise
  a JPEG and send one byte every 0.2 s (held until the body time-out, then again);
- no key: 4 threads from 127.0.0.6 posting without the key.

Phases alternate, quiet then abused, for ROUNDS rounds; each phase is GOOD
requests from the good clients. The same is run against a server with the
guard's limits opened up (`--client-share 0`, `--max-active`/`--max-queue`
100000, `--body-timeout 3600`): what the limits buy. Records the good clients'
p50/p99 latency and any answer other than 200 they get, and what the abusers got.

Run: `.venv/bin/python benchmarks/bench_serve_abuse.py` (writes its section of docs/benchmarks.md).
"""

import collections
import http.client
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
KEY = "bench-abuse-key-0123456789abcdef"
GOOD_CLIENTS = 16
GOOD = 500  # good requests per phase
ROUNDS = 5
SHAPE = (96, 96, 3)
SERVERS = {
    "guarded (the defaults)": [],
    "limits opened up": ["--client-share", "0", "--max-active", "100000", "--max-queue", "100000",
                         "--body-timeout", "3600"],
}  # fmt: skip


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model, options):
    port = free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CNNZOO_API_KEY": KEY}
    command = [sys.executable, "-m", "cnnzoo.cli", "serve", str(model), "--port", str(port), "--no-explain"]
    proc = subprocess.Popen(
        [*command, *options], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()  # the page needs no key
            return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the server did not start") from None
            time.sleep(0.2)


def bodies():
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(32):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, SHAPE, dtype=np.uint8)).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def post(conn, body, key=True):
    headers = {"Content-Type": "image/jpeg", **({"Authorization": f"Bearer {KEY}"} if key else {})}
    conn.request("POST", "/predict", body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    return response.status


def good_load(port, images, n):
    """n POST /predict from GOOD_CLIENTS threads, each from its own address; (latencies of 200s, other answers)."""
    latencies, other, lock = [], collections.Counter(), threading.Lock()
    counter = iter(range(n))

    def client(i):
        source = (f"127.0.0.{10 + i}", 0)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120, source_address=source)
        while (k := next(counter, None)) is not None:
            start = time.perf_counter()
            try:
                status = post(conn, images[k % len(images)])
            except (OSError, http.client.HTTPException) as e:
                status = type(e).__name__
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120, source_address=source)
            with lock:
                if status == 200:
                    latencies.append(time.perf_counter() - start)
                else:
                    other[str(status)] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(GOOD_CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, other


def abuse(port):
    """The abusers (a process of their own): run until stdin closes, then print what they got as JSON."""
    images, stop, lock = bodies(), threading.Event(), threading.Lock()
    got = collections.Counter()

    def count(kind, status):
        with lock:
            got[f"{kind} {status}"] += 1

    def flood(source, key):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60, source_address=(source, 0))
        while not stop.is_set():
            try:
                count("flood" if key else "no key", post(conn, images[0], key))
            except (OSError, http.client.HTTPException) as e:
                count("flood" if key else "no key", type(e).__name__)
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60, source_address=(source, 0))

    def slow(source):
        head = (
            f"POST /predict HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: image/jpeg\r\nContent-Length: {len(images[0])}\r\n\r\n"
        ).encode()
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as s:
                    s.sendall(head)
                    for byte in images[0]:
                        if stop.wait(0.2):
                            return
                        s.sendall(bytes([byte]))  # fails once the server answered 408 and closed
            except OSError:
                count("slow body", "cut")

    threads = [threading.Thread(target=flood, args=("127.0.0.2", True)) for _ in range(64)]
    threads += [threading.Thread(target=slow, args=(f"127.0.0.{3 + i % 3}",)) for i in range(48)]
    threads += [threading.Thread(target=flood, args=("127.0.0.6", False)) for _ in range(4)]
    for t in threads:
        t.daemon = True
        t.start()
    sys.stdin.read()
    stop.set()
    time.sleep(0.5)
    print(json.dumps(dict(got)))


def abused(port, images):
    proc = subprocess.Popen(
        [sys.executable, __file__, "--abuse", str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    time.sleep(3)  # the abusers are at full tilt
    try:
        latencies, other = good_load(port, images, GOOD)
    finally:
        out, _ = proc.communicate("", timeout=120)
    return latencies, other, json.loads(out.strip().splitlines()[-1])


def p99(values):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def main():  # long: the run, then the table
    import keras

    import cnnzoo

    keras.utils.set_random_seed(0)
    work = Path(tempfile.mkdtemp(prefix="bench_serve_abuse_"))
    model = cnnzoo.get("bird_classifier", num_classes=10, input_shape=SHAPE)
    path = work / "bird_classifier_96.keras"
    model.save(path)
    images = bodies()
    servers = {name: start_server(path, options) for name, options in SERVERS.items()}
    results = {name: {"quiet": [], "abused": [], "ratios": [], "p50_ratios": [], "other": collections.Counter(),
                      "abusers": collections.Counter()} for name in SERVERS}  # fmt: skip
    try:
        for _, port in servers.values():
            good_load(port, images, 100)  # warm: connections, first passes
        for _ in range(ROUNDS):
            for name, (_, port) in servers.items():
                quiet, other = good_load(port, images, GOOD)
                results[name]["quiet"] += quiet
                results[name]["other"].update({f"quiet {k}": v for k, v in other.items()})
                latencies, other, abusers = abused(port, images)
                results[name]["abused"] += latencies
                results[name]["ratios"].append(p99(latencies) / p99(quiet))
                results[name]["p50_ratios"].append(statistics.median(latencies) / statistics.median(quiet))
                results[name]["other"].update({f"abused {k}": v for k, v in other.items()})
                results[name]["abusers"].update(abusers)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
    lines = [
        "## Serve under abuse: good clients beside a flood and slow bodies",
        "",
        f"Measured by `benchmarks/bench_serve_abuse.py` on {machine()}: bird_classifier at {SHAPE[0]}x{SHAPE[1]} "
        f"behind the real `cnnzoo serve --api-key` command on 127.0.0.1. Good clients: {GOOD_CLIENTS} threads, each "
        f"from its own loopback address, {GOOD} `POST /predict` per phase with the key. Abusers, in a process of "
        "their own on the same 2 cores: a flood of 64 threads from one address retrying at once on 429/503, 48 "
        "slow-body connections from 3 addresses (one byte every 0.2 s), 4 threads without the key. Quiet and abused "
        f"phases alternate, {ROUNDS} rounds per server, both servers in the same run; the second server opens up "
        "the limits (`--client-share 0`, `--max-active` and `--max-queue` 100000, `--body-timeout 3600`) but keeps "
        "the key and its one-second pause before a 401. Latency is the good clients' own, client-side, of their "
        "200 answers.",
        "",
        "| server | quiet p50 | quiet p99 | abused p50 | abused p99 | p99 abused / quiet (rounds) | median | "
        "good answers not 200 |",
        "|---|---:|---:|---:|---:|---|---:|---|",
    ]
    ratios = {}
    for name, r in results.items():
        q, a = r["quiet"], r["abused"]
        ratios[name] = statistics.median(r["ratios"])
        other = ", ".join(f"{k}: {v}" for k, v in sorted(r["other"].items())) or "none"
        rounds = ", ".join(f"{x:.2f}x" for x in r["ratios"])
        lines.append(
            f"| {name} | {statistics.median(q) * 1e3:.1f} ms | {p99(q) * 1e3:.1f} ms | "
            f"{statistics.median(a) * 1e3:.1f} ms | {p99(a) * 1e3:.1f} ms | {rounds} | {ratios[name]:.2f}x | {other} |"
        )
    lines.append("")
    for name, r in results.items():
        got = ", ".join(f"{k}: {v:,}" for k, v in sorted(r["abusers"].items()))
        lines.append(f"What the abusers got from the {name} server: {got}.")
    guarded = ratios["guarded (the defaults)"]
    lines += [
        "",
        "Latencies above are pooled over the rounds; the ratio is each round's abused p99 over the same round's "
        "quiet p99, and its median over the rounds. Median p50 abused / quiet: "
        + ", ".join(f"{name} {statistics.median(r['p50_ratios']):.2f}x" for name, r in results.items())
        + ".",
        "",
        f"Goal: the good clients' p99 beside the abuse within 2x of the quiet p99 on the guarded server: "
        f"{guarded:.2f}x (median of rounds), {'met' if guarded <= 2 else 'not met'}.",
    ]
    text = "\n".join(lines)
    print(text)
    write_section("serve-abuse", text)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--abuse"]:
        abuse(int(sys.argv[2]))
    else:
        sys.exit(main())
