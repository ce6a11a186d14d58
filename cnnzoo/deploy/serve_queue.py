"""The bounded fair queue of `cnnzoo serve`: at most N uploads at work, each client address its fair share.

`FairQueue` decides which waiting upload runs next (round-robin by client
address, each client at most its max-min fair share of the places); the guard
(`cnnzoo.deploy.serve_guard.Guard`) asks it for a place before an upload reaches
the app. Plain asyncio, one event loop, no Starlette.
"""

import asyncio
import collections
import time

__all__ = ["FairQueue", "QueueFull", "RECENT_S"]

RECENT_S = 1.0  # a client served this recently still counts among those sharing the places


class QueueFull(Exception):
    """The fair queue is full, or the wait for a turn ran out (`reason`: `queue_full` or `queue_timeout`)."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class FairQueue:
    """At most `max_active` holders at once, each client at most its fair share of them; waiters served round-robin.

    A client's fair share is `max_active` divided among the clients holding,
    waiting or served within the last `RECENT_S` seconds (rounded up; a client
    that waits for its answer and then asks again stays counted in between):
    alone, a client may take every place; beside 16
    others, a flood from one address holds its share and waits for the rest,
    while each of the others' requests is served in its turn (max-min fairness,
    as in fair queuing). Used from one event loop: `acquire(client)` returns
    when the caller may run (then `release(client)` once).

    Raises (from `acquire`):
        QueueFull: `queue_full` when `max_queue` requests are already waiting,
            `queue_timeout` after `timeout_s` of waiting.

    Example:

    >>> queue = FairQueue(max_active=4, max_queue=16, timeout_s=30)
    >>> await queue.acquire("10.0.0.7")  # doctest: +SKIP
    >>> queue.release("10.0.0.7")  # doctest: +SKIP
    """

    def __init__(self, max_active, max_queue, timeout_s):
        self.max_active, self.max_queue, self.timeout_s = max_active, max_queue, timeout_s
        self.active = 0
        self.waiting = 0
        self._running = collections.Counter()  # client -> places it holds
        self._seen = {}  # client -> monotonic time its last place was given back
        self._pruned = 0.0
        self._queues = collections.OrderedDict()  # client -> deque of futures; the first client is served next

    async def acquire(self, client):
        future = asyncio.get_running_loop().create_future()
        self._queues.setdefault(client, collections.deque()).append(future)
        self.waiting += 1
        self._grant()
        if future.done():
            return
        if self.waiting > self.max_queue:
            self._forget(client, future)
            self._grant()  # this client's absence may raise the others' share
            raise QueueFull("queue_full")
        try:
            await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
        except (asyncio.TimeoutError, asyncio.CancelledError) as e:
            if future.done() and not future.cancelled():  # granted as the wait ended: give the place back
                self.release(client)
            else:
                future.cancel()
                self._forget(client, future)
                self._grant()
            if isinstance(e, asyncio.TimeoutError):
                raise QueueFull("queue_timeout") from None
            raise

    def release(self, client):
        self.active -= 1
        self._seen[client] = time.monotonic()
        self._running[client] -= 1
        if self._running[client] <= 0:
            del self._running[client]
        self._grant()

    def state(self):
        return {
            "active": self.active,
            "waiting": self.waiting,
            "max_active": self.max_active,
            "max_queue": self.max_queue,
            "clients": self._present(),
        }

    def _present(self):
        now = time.monotonic()
        if now - self._pruned > RECENT_S:
            self._seen = {c: t for c, t in self._seen.items() if now - t < RECENT_S}
            self._pruned = now
        return len(self._running.keys() | self._queues.keys() | self._seen.keys())

    def _forget(self, client, future):
        waiting = self._queues.get(client)
        if waiting is not None and future in waiting:
            waiting.remove(future)
            self.waiting -= 1
            if not waiting:
                del self._queues[client]

    def _grant(self):
        while self.active < self.max_active and self._queues:
            share = -(-self.max_active // self._present())  # rounded up: the places are all used when few ask
            client = next((c for c in self._queues if self._running[c] < share), None)  # round-robin order
            if client is None:
                return  # every waiting client holds its share: the others' turns come first
            waiting = self._queues[client]
            future = waiting.popleft()
            self.waiting -= 1
            if waiting:
                self._queues.move_to_end(client)  # round-robin: this client's next turn comes after the others'
            else:
                del self._queues[client]
            self.active += 1
            self._running[client] += 1
            future.set_result(None)
