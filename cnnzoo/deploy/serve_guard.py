"""Who may ask `cnnzoo serve`, and how much: an API key, body time-outs, a bounded fair queue (ASGI middleware).

`Guard` sits in front of the app made by `cnnzoo.deploy.serve.create_app`; for each HTTP request, in order:

1. **Key.** With an API key set, every route but the page (`/`) and its icon
   needs `Authorization: Bearer <key>`; the key is compared in constant time
   (`hmac.compare_digest` of the SHA-256 digests, so not even its length leaks).
   Otherwise: 401 with `WWW-Authenticate: Bearer` (RFC 6750), held for
   `reject_pause_s` (as a login slows down guesses).
2. **Fair share.** One client address holds at most `client_share` uploads in
   the server at once (reading, waiting or running); one more is answered 429
   with `Retry-After` (Kubernetes' API priority and fairness does the same),
   held for `reject_pause_s` first, so that a flood ignoring Retry-After is slowed
   down rather than answered as fast as it asks.
3. **Body time-out.** An upload is read whole, under a deadline
   (`body_timeout_s`), before it takes a place in the queue, as nginx buffers a
   request body before it reaches a worker: a client that sends its body
   slowly holds a connection, never a worker. Past the deadline: 408, and the
   connection is closed.
4. **Bounded fair queue.** At most `max_active` uploads are decoded or in the
   model at once, one client address at most its fair share of them (the
   places divided among the clients asking now); up to `max_queue` more wait,
   served round-robin by client address (one client's flood waits behind the
   others' single requests).
   With the queue full, or after `queue_timeout_s` of waiting: 503 with `Retry-After`.

Every answer is counted in `cnnzoo.deploy.serve_metrics.Metrics` (route,
method, status, latency; rejections by reason). Requests other than POST (the
page, `/info`, `/health`, `/metrics`) pass steps 2-4: they are cheap. No
Starlette import.
"""

import asyncio
import collections
import dataclasses
import hashlib
import hmac
import json
import time

from cnnzoo.deploy.serve_queue import FairQueue, QueueFull
from cnnzoo.errors import ConfigError

__all__ = ["Guard", "Limits", "PUBLIC_PATHS", "check_api_key", "guard_middleware"]

PUBLIC_PATHS = frozenset({"/", "/favicon.ico"})  # the page loads without the key; its API calls send it


@dataclasses.dataclass(frozen=True)
class Limits:
    """How much one `cnnzoo serve` app takes on (`create_app(limits=...)`, the `cnnzoo serve` options).

    Args:
        body_timeout_s: seconds within which an upload's whole body must arrive (408 after).
        max_active: uploads decoded or in the model at once (None: twice the app's
            `max_batch`, at least 8).
        max_queue: uploads waiting for a turn beyond those; one more is answered 503.
        queue_timeout_s: longest wait for a turn (503 after).
        client_share: most uploads one client address has in the server at once
            (429 beyond); 0 turns the per-client bound off.
        retry_after_s: the `Retry-After` seconds of 429 and 503 answers.
        reject_pause_s: seconds a 401, 429 or queue-full 503 is held before it
            is sent: a flood that ignores Retry-After, or guesses keys, slows to
            one request per connection per pause instead of costing the server a
            rejection per millisecond (0: answer at once).

    Example:

    >>> Limits(body_timeout_s=10, max_queue=32).client_share
    16
    """

    body_timeout_s: float = 30.0
    max_active: int | None = None
    max_queue: int = 128
    queue_timeout_s: float = 30.0
    client_share: int = 16
    retry_after_s: int = 1
    reject_pause_s: float = 1.0

    def __post_init__(self):
        for name, zero in (("body_timeout_s", False), ("queue_timeout_s", False), ("reject_pause_s", True)):
            value = getattr(self, name)
            number = not isinstance(value, bool) and isinstance(value, (int, float))
            if not number or not (0 <= value if zero else 0 < value) or value > 3600:
                raise ConfigError(
                    f"`{name}` must be a number of seconds {'from 0' if zero else 'above 0'} and at most 3600. "
                    f"Received: {name}={value!r}."
                )
        for name, low in (("max_active", 1), ("max_queue", 0), ("client_share", 0), ("retry_after_s", 1)):
            value = getattr(self, name)
            if name == "max_active" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 1_000_000:
                raise ConfigError(f"`{name}` must be an integer from {low} to 1000000. Received: {name}={value!r}.")


def check_api_key(api_key):
    """`api_key` as bytes, or None; an empty or non-string key is a `ConfigError`."""
    if api_key is None:
        return None
    if not isinstance(api_key, str) or not api_key.strip() or api_key != api_key.strip():
        raise ConfigError(
            "`api_key` must be a non-empty string without surrounding spaces (e.g. from "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`). "
            f"Received: api_key of type {type(api_key).__name__}{' (blank)' if isinstance(api_key, str) else ''}."
        )
    return api_key.encode()


async def _answer(send, status, reason, headers=()):
    body = json.dumps({"error": reason}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class _Slow(Exception):
    pass


class Guard:
    """ASGI middleware: the API key, the per-client share, body time-outs and the fair queue of an app.

    Args:
        app: the ASGI app guarded.
        metrics: a `cnnzoo.deploy.serve_metrics.Metrics` counting every answer.
        limits: `Limits`.
        api_key: None (no key), or the key every route but `PUBLIC_PATHS` needs.
        max_body: bytes of a body read ahead (the app's upload limit); a larger
            body goes to the app unread, which refuses it (413).
        queue: the `cnnzoo.deploy.serve_queue.FairQueue` of the uploads (its state is in `/metrics`).

    Example:

    >>> app = Starlette(routes, middleware=[Middleware(Guard, metrics=m, limits=Limits(), api_key="s3cret",
    ...                                                max_body=2**20, queue=FairQueue(64, 128, 30))])  # doctest: +SKIP
    """

    def __init__(self, app, *, metrics, limits, api_key, max_body, queue):
        self.app, self.metrics, self.limits, self.max_body, self.queue = app, metrics, limits, max_body, queue
        key = check_api_key(api_key)
        self._key_digest = hashlib.sha256(key).digest() if key is not None else None
        self.holding = collections.Counter()  # client address -> uploads it has in the server

    def authorized(self, headers):
        """Whether `headers` (the ASGI list) carry `Authorization: Bearer <the key>`."""
        if self._key_digest is None:
            return True
        value = next((v for k, v in headers if k == b"authorization"), b"")
        scheme, _, token = value.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(hashlib.sha256(token.strip()).digest(), self._key_digest)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500
        route, method = self.metrics.route_of(scope["path"]), scope["method"]

        async def counted_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, counted_send)
        finally:
            self.metrics.observe(route, method, status, time.perf_counter() - start)

    async def _handle(self, scope, receive, send):
        if scope["path"] not in PUBLIC_PATHS and not self.authorized(scope["headers"]):
            self.metrics.reject("unauthorized")
            await asyncio.sleep(self.limits.reject_pause_s)  # a guesser or a keyless flood is slowed down
            presented = any(k == b"authorization" for k, _ in scope["headers"])
            challenge = 'Bearer realm="cnnzoo"' + (', error="invalid_token"' if presented else "")
            return await _answer(
                send,
                401,
                "this server needs its API key: send `Authorization: Bearer <key>` "
                f"({'the key sent is wrong' if presented else 'none was sent'})",
                [("www-authenticate", challenge)],
            )
        if scope["method"] != "POST":
            return await self.app(scope, receive, send)
        client = (scope.get("client") or ("unknown", 0))[0]
        share = self.limits.client_share
        if share and self.holding[client] >= share:
            self.metrics.reject("client_share")
            await asyncio.sleep(self.limits.reject_pause_s)
            return await _answer(
                send,
                429,
                f"too many requests from {client} at once: {share} is this server's share per client "
                "(`cnnzoo serve --client-share`); retry after the time in Retry-After",
                [("retry-after", str(self.limits.retry_after_s))],
            )
        self.holding[client] += 1
        try:
            await self._admit(scope, receive, send, client)
        finally:
            self.holding[client] -= 1
            if not self.holding[client]:
                del self.holding[client]

    async def _admit(self, scope, receive, send, client):
        try:
            replay = await self._read_ahead(scope, receive)
        except _Slow:
            self.metrics.reject("body_timeout")
            return await _answer(
                send,
                408,
                f"the request body did not arrive within {self.limits.body_timeout_s:g} s "
                "(`cnnzoo serve --body-timeout`)",
                [("connection", "close")],
            )
        if replay is None:  # the client left while sending
            return None
        try:
            await self.queue.acquire(client)
        except QueueFull as e:
            self.metrics.reject(e.reason)
            if e.reason == "queue_full":
                await asyncio.sleep(self.limits.reject_pause_s)
            why = "the queue is full" if e.reason == "queue_full" else "the wait for a turn ran out"
            return await _answer(
                send,
                503,
                f"the server is busy ({why}: `cnnzoo serve --max-queue`); retry after the time in Retry-After",
                [("retry-after", str(self.limits.retry_after_s))],
            )
        try:
            await self.app(scope, replay, send)
        finally:
            self.queue.release(client)

    async def _read_ahead(self, scope, receive):
        """A `receive` that replays the body read now (whole, or `max_body` bytes of it); None if the client left.

        Raises:
            _Slow: the body did not arrive within `limits.body_timeout_s`.
        """
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            return receive  # the app refuses it from its Content-Length, unread
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.body_timeout_s
        chunks, size, more = [], 0, True
        while more and size <= self.max_body:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise _Slow from None
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
        pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": more}]

        async def replay():
            return pending.pop() if pending else await receive()

        return replay


def guard_middleware(metrics, limits, api_key, max_batch, max_body):
    """`(Starlette Middleware of a Guard, its FairQueue)` for an app batching `max_batch` images.

    Args:
        metrics: the app's `cnnzoo.deploy.serve_metrics.Metrics`.
        limits: `Limits` or None (the defaults).
        api_key: None or the key (checked by `check_api_key`).
        max_batch: the app's batch size: `limits.max_active` is twice it (at least 8) when None.
        max_body: the largest body the app accepts, in bytes.

    Returns:
        `(middleware, queue)`: `Starlette(middleware=[middleware])`, and the queue whose state `/metrics` shows.

    Example:

    >>> middleware, queue = guard_middleware(Metrics(["/predict"]), Limits(), "s3cret", 32, 2**20)  # doctest: +SKIP
    """
    from starlette.middleware import Middleware

    limits = Limits() if limits is None else limits
    if not isinstance(limits, Limits):
        raise ConfigError(f"`limits` must be a cnnzoo.deploy.serve_guard.Limits or None. Received: limits={limits!r}.")
    check_api_key(api_key)
    active = limits.max_active or max(2 * max_batch, 8)  # a batch in the model while the next is decoded
    queue = FairQueue(active, limits.max_queue, limits.queue_timeout_s)
    guard = Middleware(Guard, metrics=metrics, limits=limits, api_key=api_key, max_body=max_body, queue=queue)
    return guard, queue
