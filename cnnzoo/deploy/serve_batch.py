"""Dynamic batching for `cnnzoo serve`: concurrent requests share one forward pass.

Requests put their image on an asyncio queue; one worker takes the first
waiting image, gathers more until it holds `max_batch` of them or
`max_delay_ms` have passed since the first one arrived, and runs the model once
on the stack in a thread (the event loop keeps accepting requests meanwhile).
Images that arrive while a pass runs wait in the queue and form the next batch.
No Starlette, no TensorFlow here: `fn` is any `batch -> probabilities` callable.
"""

import asyncio
import threading
import time
from collections import Counter

import numpy as np

from cnnzoo.errors import ConfigError
from cnnzoo.utils.checks import check_int

__all__ = ["Batcher"]


class _Item:
    __slots__ = ("x", "future", "arrived")

    def __init__(self, x, future):
        self.x, self.future, self.arrived = x, future, time.perf_counter()


class Batcher:
    """Runs `fn` on batches of the images submitted concurrently.

    Args:
        fn: `fn(batch float32 [N, H, W, C]) -> probabilities [N, classes]`
            (e.g. `cnnzoo.deploy.inference.predictor(model)`).
        max_batch: int >= 1, most images in one forward pass (1: no batching).
        max_delay_ms: number >= 0, longest wait for more images after the
            first one of a batch arrived.

    Example:

    >>> batcher = Batcher(predictor(model), max_batch=16, max_delay_ms=2)  # doctest: +SKIP
    >>> probs = await batcher.submit(image)  # in a coroutine; one row  # doctest: +SKIP
    """

    def __init__(self, fn, max_batch=32, max_delay_ms=2.0):
        self.fn = fn
        self.max_batch = check_int(max_batch, "max_batch", hi=1024)
        if (
            isinstance(max_delay_ms, bool)
            or not isinstance(max_delay_ms, (int, float))
            or not 0 <= max_delay_ms <= 10_000
        ):
            raise ConfigError(
                f"`max_delay_ms` must be a number from 0 to 10000. Received: max_delay_ms={max_delay_ms!r}."
            )
        self.max_delay = float(max_delay_ms) / 1000.0
        self.sizes = Counter()  # batch size -> forward passes of that size
        self.compute_s = 0.0
        self._lock = threading.Lock()  # stats are read from other threads (/health)
        self._queue = self._task = self._enough = None

    async def start(self):
        """Starts the worker on the running event loop (the app's startup)."""
        self._queue = asyncio.Queue()
        self._enough = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._work())

    async def stop(self):
        """Stops the worker; images still waiting get a `RuntimeError`."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        while self._queue is not None and not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.future.done():
                item.future.set_exception(RuntimeError("the server is shutting down"))

    async def submit(self, x):
        """Queues one image (float32 [H, W, C]); returns its row of probabilities."""
        if self._task is None:
            raise RuntimeError("the batcher is not started (call `await batcher.start()` first)")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(x, future))
        if self._queue.qsize() >= self.max_batch:
            self._enough.set()
        return await future

    def stats(self):
        """Forward passes, images, mean and largest batch, passes per batch size, model seconds."""
        with self._lock:
            sizes = dict(sorted(self.sizes.items()))
            compute = self.compute_s
        passes = sum(sizes.values())
        images = sum(k * v for k, v in sizes.items())
        return {
            "forward_passes": passes,
            "images": images,
            "mean_batch": round(images / passes, 3) if passes else 0.0,
            "largest_batch": max(sizes, default=0),
            "batch_sizes": {str(k): v for k, v in sizes.items()},
            "model_seconds": round(compute, 4),
            "queued": self._queue.qsize() if self._queue else 0,
            "max_batch": self.max_batch,
            "max_delay_ms": self.max_delay * 1000.0,
        }

    async def _gather(self):
        items = [await self._queue.get()]
        deadline = items[0].arrived + self.max_delay
        while len(items) < self.max_batch:
            while len(items) < self.max_batch and not self._queue.empty():
                items.append(self._queue.get_nowait())
            remaining = deadline - time.perf_counter()
            if len(items) >= self.max_batch or remaining <= 0:
                break
            self._enough.clear()
            try:  # woken early when enough images are queued for a full batch
                await asyncio.wait_for(self._enough.wait(), remaining)
            except asyncio.TimeoutError:
                pass
        return [item for item in items if not item.future.done()]  # a client that left is not waited for

    async def _work(self):
        while True:
            items = await self._gather()
            if not items:
                continue
            batch = np.stack([item.x for item in items]).astype(np.float32, copy=False)
            start = time.perf_counter()
            try:
                probs = await asyncio.to_thread(self.fn, batch)
            except Exception as e:  # noqa: BLE001 - every waiting request gets the failure
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(e)
                continue
            with self._lock:
                self.sizes[len(items)] += 1
                self.compute_s += time.perf_counter() - start
            for item, row in zip(items, np.asarray(probs)):
                if not item.future.done():
                    item.future.set_result(row)
