"""`cnnzoo serve`: a model behind HTTP, an ASGI app (Starlette) run by uvicorn.

    GET  /          a page: drop or pick photos, see the top-k bars (and the Grad-CAM overlay)
    GET  /api       these endpoints described (JSON), with curl examples for this server
    GET  /health    {"status": "ok", ...batching statistics}
    GET  /info      model name, input shape, classes, parameters, server limits, statistics
    POST /predict   the image as the raw body or a multipart `file` field -> top-k JSON
    POST /explain   the same upload -> a PNG of the Grad-CAM overlay (when the app has an explainer)
    GET  /favicon.ico  204: no icon, and no 404 in the log
    GET  /metrics   counters and histograms in the Prometheus text format

With an API key, every route but the page and its icon needs `Authorization:
Bearer <key>`; uploads are read under a deadline and wait in a bounded fair
queue (`cnnzoo.deploy.serve_guard`); `cnnzoo.deploy.serve_metrics` counts.

The model is loaded once, when the app is made; its cached compiled forward
pass (`cnnzoo.deploy.inference.predictor`) runs in one worker thread on batches
of the requests that arrive together (`cnnzoo.deploy.serve_batch.Batcher`).
Errors are JSON `{"error": reason}` with a 4xx status. Starlette and uvicorn
(the `serve` extra) are imported only when an app is made.
"""

import contextlib
import threading
import time

import numpy as np

from cnnzoo.deploy.serve_inputs import MULTIPART_SLACK, Problem, decode_image, read_upload
from cnnzoo.deploy.serve_model import load_model, runtime_facts
from cnnzoo.errors import ConfigError, MissingExtraError
from cnnzoo.utils.checks import check_int
from cnnzoo.utils.extras import require

__all__ = ["create_app", "running", "serve", "page_html", "runtime_facts", "EXPLAIN_MAX_SIDE"]

EXPLAIN_MAX_SIDE = 512  # Grad-CAM overlays are drawn on the photo scaled down to this side at most

# (method, path, what it does): what `GET /api` answers, in the order of the module docstring
ENDPOINTS = (
    ("GET", "/", "a page: drop or pick photos, see the top-k bars (and the Grad-CAM overlay)"),
    ("GET", "/api", "this description of the endpoints"),
    ("GET", "/info", "model name, input shape, classes, parameters, server limits, statistics"),
    ("GET", "/health", '{"status": "ok", ...batching statistics}'),
    (
        "POST",
        "/predict",
        "an image as the raw body or a multipart `file` field -> JSON {source, label, probability, "
        "top_k: [{label, probability}]}; `?top_k=N` for N labels",
    ),
    (
        "POST",
        "/explain",
        "the same upload -> a PNG of the Grad-CAM overlay; `?class=NAME` explains that class "
        "(501 when the server has no explainer)",
    ),
    ("GET", "/metrics", "requests, latency, batch sizes, errors, queue depth in the Prometheus text format"),
)


def page_html():
    """The page served at `/` (package data `cnnzoo/deploy/page.html`: plain HTML and JS, no CDN)."""
    from importlib.resources import files

    return files("cnnzoo.deploy").joinpath("page.html").read_text(encoding="utf-8")


def create_app(
    model,
    top_k=5,
    max_batch=32,
    max_delay_ms=2.0,
    max_upload_mb=10.0,
    explain=None,
    api_key=None,
    limits=None,
    runtime="auto",
):
    """The ASGI app serving `model`.

    Args:
        model: a `keras.Model` (a zoo classifier), the path of a `.keras` file,
            or an exported model (`.onnx`, `.tflite`, a SavedModel directory:
            `cnnzoo.deploy.runtimes.open_runtime` runs it); loaded now, once.
        top_k: int, labels returned per image by default (at most the number of
            classes; a request may ask for fewer or more with `?top_k=N`).
        max_batch: int, most images per forward pass (1 turns batching off).
        max_delay_ms: number, longest wait for more requests to batch with the
            first one.
        max_upload_mb: number, largest accepted upload in MiB (413 above it).
        explain: None, or `fn(model, rgb uint8 [H, W, 3], class_name or None)
            -> uint8 [H, W, 3]` drawing an explanation (the CLI passes Grad-CAM
            from `cnnzoo.explain`); without it `/explain` answers 501.
        api_key: None, or the key every route but the page needs as
            `Authorization: Bearer <key>` (401 without it).
        limits: a `cnnzoo.deploy.serve_guard.Limits` (body time-out, queue
            bounds, per-client share), or None for its defaults.
        runtime: what answers `/predict` for a Keras model: `"auto"` (a `.keras`
            path runs its verified ONNX export when the `export` extra is
            installed, else the compiled Keras call, with one log line; a
            `keras.Model` in memory runs Keras), `"tensorflow"` / `"keras"`,
            `"onnx"` or `"litert"`; `/info` says which, and how it was verified.

    Returns:
        A Starlette application; `app.state.batcher` holds the batching statistics.

    Example:

    >>> app = create_app("birds.keras", top_k=3)  # doctest: +SKIP
    >>> with running(app) as url:  # doctest: +SKIP
    ...     urllib.request.urlopen(url + "/health").read()
    """
    require("starlette", "serve", "cnnzoo serve")
    try:  # python-multipart >= 0.0.13 names its module python_multipart (the old name warns)
        require("python_multipart", "serve", "cnnzoo serve (multipart uploads)")
    except MissingExtraError:
        require("multipart", "serve", "cnnzoo serve (multipart uploads)")
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    from cnnzoo.deploy.serve_batch import Batcher
    from cnnzoo.deploy.serve_guard import check_api_key, guard_middleware
    from cnnzoo.deploy.serve_metrics import Metrics, metrics_endpoint

    check_api_key(api_key)  # before the model is loaded
    model, forward, names, size, channels, facts = load_model(model, runtime)
    if model is None:
        explain = None  # Grad-CAM needs the Keras model's gradients
    top_k = min(check_int(top_k, "top_k"), len(names))
    if isinstance(max_upload_mb, bool) or not isinstance(max_upload_mb, (int, float)) or not 0 < max_upload_mb <= 1024:
        raise ConfigError(
            f"`max_upload_mb` must be a number above 0 and at most 1024. Received: max_upload_mb={max_upload_mb!r}."
        )
    forward(np.zeros((1, *size, channels), np.float32))  # traced now, not on the first request
    batcher = Batcher(forward, max_batch=max_batch, max_delay_ms=max_delay_ms)
    service = _Service(model, names, size, channels, facts, top_k, int(max_upload_mb * 2**20), explain, batcher)
    metrics = Metrics([path for _, path, _ in ENDPOINTS] + ["/favicon.ico"])
    guard, queue = guard_middleware(metrics, limits, api_key, batcher.max_batch, service.limit + MULTIPART_SLACK)
    scrape = lambda: {"batcher": batcher.stats(), "counts": service.counts, "queue": queue.state(), "facts": facts}  # noqa: E731
    routes = [
        Route("/", service.index, methods=["GET"]),
        Route("/api", service.api, methods=["GET"]),
        Route("/favicon.ico", service.favicon, methods=["GET"]),
        Route("/health", service.health, methods=["GET"]),
        Route("/info", service.info, methods=["GET"]),
        Route("/predict", service.counted(service.predict), methods=["POST"]),
        Route("/explain", service.counted(service.explain_route), methods=["POST"]),
        Route("/metrics", metrics_endpoint(metrics, scrape), methods=["GET"]),
    ]
    app = Starlette(
        routes=routes, middleware=[guard], lifespan=service.lifespan, exception_handlers={HTTPException: _http_error}
    )
    app.state.batcher, app.state.metrics, app.state.queue = batcher, metrics, queue
    app.state.model = model if model is not None else forward
    return app


async def _http_error(request, exc):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


class _Service:
    """What one app made by `create_app` serves: its routes' handlers and the counts they keep.

    `model` is the Keras model (None for an exported one); `names`, `size` and
    `channels` describe its input and output; `facts` goes into `/info`; `limit`
    is the largest upload in bytes; `explain` draws Grad-CAM (or is None);
    `batcher` runs the forward passes.
    """

    def __init__(self, model, names, size, channels, facts, top_k, limit, explain, batcher):
        self.model, self.names, self.size, self.channels, self.facts = model, names, size, channels, facts
        self.top_k, self.limit, self.explain, self.batcher = top_k, limit, explain, batcher
        self.explain_lock = threading.Lock()  # one Grad-CAM at a time: each holds a gradient tape of the model
        self.counts = {"requests": 0, "rejected": 0, "failed": 0}
        self.started = time.time()
        self.page = page_html()

    def asked_top_k(self, request):
        raw = request.query_params.get("top_k")
        if raw is None:
            return self.top_k
        if not raw.isdigit() or not 1 <= int(raw) <= len(self.names):
            raise Problem(
                400,
                f"`top_k` must be an integer from 1 to {len(self.names)} (the number of classes); got top_k={raw!r}",
            )
        return int(raw)

    async def predict(self, request):
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse

        k = self.asked_top_k(request)
        body, filename = await read_upload(request, self.limit)
        x = await run_in_threadpool(decode_image, body, self.size, self.channels)
        probs = await self.batcher.submit(x.astype(np.float32))
        order = np.argsort(-probs, kind="stable")[:k]  # as cnnzoo.predict orders them
        pairs = [{"label": self.names[j], "probability": float(probs[j])} for j in order]
        return JSONResponse(
            {"source": filename, "label": pairs[0]["label"], "probability": pairs[0]["probability"], "top_k": pairs}
        )

    def draw(self, body, class_name):
        """The PNG bytes of the explanation of the uploaded photo (scaled down to `EXPLAIN_MAX_SIDE`)."""
        from PIL import Image

        rgb = decode_image(body, None, 3)
        h, w = rgb.shape[:2]
        if max(h, w) > EXPLAIN_MAX_SIDE:
            scale = EXPLAIN_MAX_SIDE / max(h, w)
            small = Image.fromarray(rgb).resize(
                (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR
            )
            rgb = np.asarray(small)
        with self.explain_lock:
            picture = np.asarray(self.explain(self.model, rgb, class_name), np.uint8)
        import io

        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, "PNG")
        return buffer.getvalue()

    async def explain_route(self, request):
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import Response

        if self.explain is None:
            raise Problem(
                501,
                "this server has no explainer: Grad-CAM needs a .keras model, and `cnnzoo serve` "
                "(or `create_app(explain=...)`) to pass one",
            )
        names = self.names
        class_name = request.query_params.get("class")
        if class_name is not None and class_name not in names:
            raise Problem(
                400,
                f"`class` must be one of the model's classes {names[:10]}"
                f"{' ...' if len(names) > 10 else ''}; got class={class_name!r}",
            )
        body, _ = await read_upload(request, self.limit)
        png = await run_in_threadpool(self.draw, body, class_name)
        return Response(png, media_type="image/png")

    def statistics(self):
        return {**self.counts, "uptime_s": round(time.time() - self.started, 1), **self.batcher.stats()}

    async def health(self, request):
        from starlette.responses import JSONResponse

        return JSONResponse({"status": "ok", **self.statistics()})

    async def info(self, request):
        from starlette.responses import JSONResponse

        return JSONResponse(
            {
                **self.facts,
                "input_shape": [self.size[0], self.size[1], self.channels],
                "classes": self.names,
                "num_classes": len(self.names),
                "top_k": self.top_k,
                "max_upload_bytes": self.limit,
                "explain": self.explain is not None,
                "stats": self.statistics(),
            }
        )

    async def index(self, request):
        from starlette.responses import HTMLResponse

        return HTMLResponse(self.page)

    async def api(self, request):
        from starlette.responses import JSONResponse

        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "model": self.facts.get("model"),
                "endpoints": [{"method": m, "path": p, "description": d} for m, p, d in ENDPOINTS],
                "examples": [
                    f"curl -F file=@photo.jpg {base}/predict",
                    f"curl --data-binary @photo.jpg '{base}/predict?top_k=3'",
                    f"curl -F file=@photo.jpg {base}/explain -o gradcam.png",
                    f"curl {base}/info",
                ],
            }
        )

    async def favicon(self, request):
        from starlette.responses import Response

        return Response(status_code=204)  # no icon; browsers ask for one on every page load

    def counted(self, handler):
        """`handler`, counted: a `Problem` becomes its 4xx JSON, any other failure a 500 with the reason."""
        from starlette.exceptions import HTTPException
        from starlette.responses import JSONResponse

        counts = self.counts

        async def wrapped(request):
            counts["requests"] += 1
            try:
                return await handler(request)
            except Problem as e:
                counts["rejected"] += 1
                return JSONResponse({"error": e.reason}, status_code=e.status)
            except HTTPException:
                raise
            except Exception as e:  # noqa: BLE001 - the client gets the reason, the server keeps running
                counts["failed"] += 1
                return JSONResponse(
                    {"error": f"the model failed on this image: {type(e).__name__}: {e}"}, status_code=500
                )

        return wrapped

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        await self.batcher.start()
        try:
            yield
        finally:
            await self.batcher.stop()


@contextlib.contextmanager
def running(app, host="127.0.0.1", port=0, timeout=None, log_level="warning"):
    """Runs `app` under uvicorn in a background thread; yields its base URL (`http://host:port`).

    Args:
        app: an ASGI app (`create_app(...)`).
        host: address to listen on.
        port: port, 0 for a free one.
        timeout: optional seconds after which the server stops by itself.
        log_level: uvicorn's log level.

    Example:

    >>> with running(create_app(model)) as url:  # doctest: +SKIP
    ...     print(urllib.request.urlopen(url + "/info").read())
    """
    import socket

    uvicorn = require("uvicorn", "serve", "cnnzoo serve")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="cnnzoo-serve", daemon=True)
    watchdog = threading.Timer(timeout, lambda: setattr(server, "should_exit", True)) if timeout else None
    thread.start()
    if watchdog:
        watchdog.daemon = True
        watchdog.start()
    try:
        deadline = time.monotonic() + 120
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start (see the uvicorn log above)")
            time.sleep(0.01)
        bound = sock.getsockname()
        yield f"http://{'[' + bound[0] + ']' if ':' in bound[0] else bound[0]}:{bound[1]}"
    finally:
        server.should_exit = True
        if watchdog:
            watchdog.cancel()
        thread.join(30)
        sock.close()


def serve(app, host="127.0.0.1", port=8000, log_level="info"):
    """Runs `app` under uvicorn in the foreground until Ctrl-C (what `cnnzoo serve` calls)."""
    uvicorn = require("uvicorn", "serve", "cnnzoo serve")
    uvicorn.run(app, host=host, port=port, log_level=log_level)
