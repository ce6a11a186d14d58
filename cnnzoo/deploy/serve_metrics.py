"""`GET /metrics` of `cnnzoo serve`: counters and histograms in the Prometheus text format (0.0.4).

`Metrics` is filled by the guard (`cnnzoo.deploy.serve_guard.Guard`: every
request's route, method, status and latency, and why one was turned away) and
rendered with the batcher's and the fair queue's state at the moment of the
scrape: batch sizes, model seconds, queue depth. Exposition format:
https://prometheus.io/docs/instrumenting/exposition_formats/ (what Prometheus,
VictoriaMetrics and the OpenTelemetry collector scrape). No Starlette import,
no `prometheus_client` dependency.
"""

import gc
import threading
import time
from collections import Counter

__all__ = ["Metrics", "metrics_endpoint", "CONTENT_TYPE", "LATENCY_BUCKETS", "BATCH_BUCKETS"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# seconds, as the Prometheus client libraries' defaults, from 5 ms to 10 s
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
REJECTIONS = ("unauthorized", "body_timeout", "client_share", "queue_full", "queue_timeout")


def _escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels):
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _number(x):
    if x == float("inf"):
        return "+Inf"
    return repr(float(x)) if isinstance(x, float) else str(x)


def _histogram(lines, name, buckets, counts, total, labels=None):
    """Appends the `_bucket`, `_sum` and `_count` samples; `counts[i]` falls in bucket i (len(buckets)+1: +Inf)."""
    labels = labels or {}
    running = 0
    for bound, n in zip((*buckets, float("inf")), counts):
        running += n
        lines.append(f"{name}_bucket{_labels(**labels, le=_number(float(bound)))} {running}")
    lines.append(f"{name}_sum{_labels(**labels)} {_number(float(total))}")
    lines.append(f"{name}_count{_labels(**labels)} {running}")


def _bucket_of(value, buckets):
    for i, bound in enumerate(buckets):
        if value <= bound:
            return i
    return len(buckets)


class Metrics:
    """What a `cnnzoo serve` app counts, rendered for `GET /metrics`.

    Args:
        routes: the paths counted by name; any other path is counted as `other`
            (a scanner probing a thousand paths adds one label value, not a thousand).

    Example:

    >>> metrics = Metrics(["/predict"])
    >>> metrics.observe("/predict", "POST", 200, 0.031)
    >>> "cnnzoo_http_requests_total" in metrics.render()
    True
    """

    def __init__(self, routes):
        self.routes = frozenset(routes)
        self.started = time.time()
        self._lock = threading.Lock()
        self._requests = Counter()  # (route, method, status) -> requests
        self._latency = {}  # route -> [bucket counts..., +Inf count, sum of seconds]
        self._rejected = Counter({reason: 0 for reason in REJECTIONS})

    def route_of(self, path):
        """The route label of `path`: itself when it is a route of the app, else `other`."""
        return path if path in self.routes else "other"

    def observe(self, route, method, status, seconds):
        """Counts one answered request and its latency (seconds from its first byte to its answer)."""
        with self._lock:
            self._requests[(route, method, int(status))] += 1
            row = self._latency.setdefault(route, [0] * (len(LATENCY_BUCKETS) + 2))
            row[_bucket_of(seconds, LATENCY_BUCKETS)] += 1
            row[-1] += seconds

    def reject(self, reason):
        """Counts a request the guard turned away (`unauthorized`, `body_timeout`, `client_share`, ...)."""
        with self._lock:
            self._rejected[reason] += 1

    def render(self, batcher=None, counts=None, queue=None, facts=None):
        """The exposition text.

        Args:
            batcher: the batcher's `stats()` (forward passes by batch size, model seconds, queued images).
            counts: the app's `{"requests", "rejected", "failed"}` of the model routes.
            queue: the fair queue's `{"active", "waiting", "max_active", "max_queue", "clients"}`.
            facts: `{"model", "runtime"}` for `cnnzoo_model_info`.

        Returns:
            str, ending in a newline.
        """
        out = []

        def metric(name, kind, help_text):
            out.extend((f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"))

        with self._lock:
            requests = sorted(self._requests.items())
            latency = {k: list(v) for k, v in sorted(self._latency.items())}
            rejected = sorted(self._rejected.items())
        metric("cnnzoo_http_requests_total", "counter", "HTTP requests answered, by route, method and status.")
        for (route, method, status), n in requests:
            out.append(f"cnnzoo_http_requests_total{_labels(route=route, method=method, status=status)} {n}")
        metric("cnnzoo_http_request_duration_seconds", "histogram", "Latency from a request's arrival to its answer.")
        for route, row in latency.items():
            _histogram(
                out, "cnnzoo_http_request_duration_seconds", LATENCY_BUCKETS, row[:-1], row[-1], {"route": route}
            )
        metric("cnnzoo_http_rejected_total", "counter", "Requests turned away by the guard, by reason.")
        for reason, n in rejected:
            out.append(f"cnnzoo_http_rejected_total{_labels(reason=reason)} {n}")
        if counts is not None:
            metric(
                "cnnzoo_upload_errors_total", "counter", "Uploads answered with a 4xx (not an image, too large, ...)."
            )
            out.append(f"cnnzoo_upload_errors_total {counts.get('rejected', 0)}")
            metric("cnnzoo_model_errors_total", "counter", "Requests on which the model failed (500).")
            out.append(f"cnnzoo_model_errors_total {counts.get('failed', 0)}")
        if batcher is not None:
            self._render_batcher(metric, out, batcher)
        if queue is not None:
            for key, help_text in (
                ("active", "Requests decoding or in the model now."),
                ("waiting", "Requests waiting for a turn (fair queue)."),
                ("max_active", "Most requests decoding or in the model at once."),
                ("max_queue", "Most requests waiting; more are answered 503."),
                ("clients", "Client addresses holding or waiting for a place now."),
            ):
                metric(f"cnnzoo_requests_{key}", "gauge", help_text)
                out.append(f"cnnzoo_requests_{key} {queue[key]}")
        if facts is not None:
            metric("cnnzoo_model_info", "gauge", "The model served (always 1).")
            out.append(f"cnnzoo_model_info{_labels(model=facts.get('model'), runtime=facts.get('runtime'))} 1")
        metric("python_gc_collections_total", "counter", "Garbage collections of this process, by generation.")
        for generation, stats in enumerate(gc.get_stats()):
            out.append(f"python_gc_collections_total{_labels(generation=str(generation))} {stats['collections']}")
        metric(
            "python_gc_frozen_objects",
            "gauge",
            "Objects frozen out of the collector (`cnnzoo serve` freezes its model).",
        )
        out.append(f"python_gc_frozen_objects {gc.get_freeze_count()}")
        metric("cnnzoo_start_time_seconds", "gauge", "Unix time the server started.")
        out.append(f"cnnzoo_start_time_seconds {_number(round(self.started, 3))}")
        return "\n".join(out) + "\n"

    @staticmethod
    def _render_batcher(metric, out, stats):
        counts = [0] * (len(BATCH_BUCKETS) + 1)
        images = 0
        for size, passes in stats.get("batch_sizes", {}).items():
            counts[_bucket_of(int(size), BATCH_BUCKETS)] += passes
            images += int(size) * passes
        metric("cnnzoo_batch_size", "histogram", "Images per forward pass.")
        _histogram(out, "cnnzoo_batch_size", BATCH_BUCKETS, counts, images)
        metric("cnnzoo_model_seconds_total", "counter", "Seconds spent in forward passes.")
        out.append(f"cnnzoo_model_seconds_total {_number(float(stats.get('model_seconds', 0.0)))}")
        metric("cnnzoo_queue_depth", "gauge", "Images decoded and waiting for a forward pass.")
        out.append(f"cnnzoo_queue_depth {stats.get('queued', 0)}")


def metrics_endpoint(metrics, scrape):
    """The Starlette handler of `GET /metrics`: `metrics.render(**scrape())` as `CONTENT_TYPE`.

    Args:
        metrics: `Metrics`.
        scrape: `() -> dict` of `render`'s keyword arguments at the moment of the scrape.

    Returns:
        An async `handler(request) -> Response`.

    Example:

    >>> Route("/metrics", metrics_endpoint(metrics, lambda: {"batcher": batcher.stats()}))  # doctest: +SKIP
    """

    async def handler(request):
        from starlette.responses import Response

        return Response(metrics.render(**scrape()), media_type=CONTENT_TYPE)

    return handler
