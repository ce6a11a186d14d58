"""What one process holds: the decoded-image cache budget, the cache mode, and worker shards.

`image_folder(cache=True)` keeps decoded images in memory only while they fit
a budget: by default 25% of the machine's physical memory (or of the
container's memory limit, whichever is smaller), else `CNNZOO_CACHE_BUDGET`
(`"2GB"`, `"512MiB"`, `"unlimited"`), else the `cache_budget=` of the call.
Beyond it the images are cached to files (when a directory is known) or
decoded every epoch (`plan_cache`). Under a multi-worker strategy each worker
reads only its shard of the training files (`worker_shard`, `shard_files`).
No TensorFlow here.
"""

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cnnzoo.errors import DataError
from cnnzoo.utils.checks import is_int

__all__ = [
    "ENV_BUDGET",
    "DEFAULT_FRACTION",
    "CachePlan",
    "physical_memory",
    "parse_budget",
    "cache_budget",
    "plan_cache",
    "shard_files",
    "worker_shard",
    "format_bytes",
]

ENV_BUDGET = "CNNZOO_CACHE_BUDGET"
DEFAULT_FRACTION = 0.25  # of physical memory, for the in-memory cache of decoded images
_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$", re.I)
_FIX = "Pass a number of bytes (2_000_000_000), a size such as '2GB' or '512MiB', or 'unlimited'."


@dataclass(frozen=True)
class CachePlan:
    """How `image_folder` caches decoded images: `mode` is `"memory"`, `"files"` or `"none"`
    (decoded every epoch); `directory` holds the cache files (mode `"files"`); `reason` says why;
    `budget` is the byte budget the images exceeded (None when they fit or no budget applied)."""

    mode: str
    directory: object
    reason: str
    budget: int = None


def physical_memory():
    """Bytes of physical memory this process may use (the smaller of the machine's and a cgroup limit);
    None when the system does not say."""
    total = None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        pass
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            value = Path(limit).read_text().strip()
        except OSError:
            continue
        if value.isdigit() and int(value) < 2**60:  # "max" or a huge number: no limit
            total = int(value) if total is None else min(total, int(value))
    return total if total and total > 0 else None


def parse_budget(value, argument="cache_budget"):
    """Bytes from a budget: an int/float >= 0, a size string (`"2GB"`, `"512MiB"`, `"1.5G"`; K/M/G/T
    are powers of 1000, KiB/MiB/GiB/TiB of 1024) or `"unlimited"` (`math.inf`).

    Example:

    >>> parse_budget("2GB"), parse_budget("512MiB"), parse_budget("unlimited")
    (2000000000, 536870912, inf)
    """
    where = f"the environment variable {argument}" if argument == ENV_BUDGET else f"`{argument}`"
    shown = f"{argument}={value!r}"
    if isinstance(value, bool):
        raise DataError(
            f"{where} must be a number of bytes >= 0 or a size string, not a bool. Received: {shown}. {_FIX}"
        )
    if isinstance(value, str):
        if value.strip().lower() in ("unlimited", "inf", "none"):
            return math.inf
        m = _SIZE.match(value)
        if not m or m.group(2).lower() not in _UNITS:
            raise DataError(
                f"{where} must be a number of bytes or a size with a unit (B, KB, MB, GB, TB, KiB, "
                f"MiB, GiB, TiB). Received: {shown}. {_FIX}"
            )
        return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if is_int(value) or isinstance(value, float):
        if value != value or value < 0:  # NaN or negative
            raise DataError(f"{where} must be >= 0 bytes (0 keeps nothing in memory). Received: {shown}. {_FIX}")
        return math.inf if value == math.inf else int(value)
    raise DataError(
        f"{where} must be a number of bytes or a size string. Received: {argument} of type "
        f"{type(value).__name__}. {_FIX}"
    )


def cache_budget(value=None):
    """`(bytes, where it came from)`: `value` if given, else `$CNNZOO_CACHE_BUDGET`, else
    `DEFAULT_FRACTION` of `physical_memory()` (2 GiB when unknown)."""
    if value is not None:
        return parse_budget(value), "cache_budget"
    env = os.environ.get(ENV_BUDGET, "").strip()
    if env:
        return parse_budget(env, ENV_BUDGET), f"${ENV_BUDGET}"
    memory = physical_memory()
    if memory is None:
        return 2**31, "default (2 GiB: physical memory unknown)"
    return int(memory * DEFAULT_FRACTION), f"default ({DEFAULT_FRACTION:.0%} of {format_bytes(memory)} memory)"


def plan_cache(cache, decoded_bytes, budget=None, cache_dir=None):
    """Chooses how decoded images are cached.

    `cache=False`: none; a directory: files there (as asked); `True`: memory
    when `decoded_bytes` fits the budget, else files in `cache_dir` when given,
    else none (decoded every epoch).

    Example:

    >>> plan_cache(True, 600 * 10**6, budget="256MB").mode
    'none'
    """
    if cache is False or cache is None:
        return CachePlan("none", None, "cache=False")
    if not isinstance(cache, bool):
        return CachePlan("files", Path(cache).expanduser(), f"cache={str(cache)!r}")
    limit, source = cache_budget(budget)
    size = f"decoded images take {format_bytes(decoded_bytes)}"
    if decoded_bytes <= limit:
        return CachePlan("memory", None, f"{size}, within the cache budget {format_bytes(limit)} ({source})")
    over = f"{size}, over the cache budget {format_bytes(limit)} ({source})"
    if cache_dir is not None:
        return CachePlan("files", Path(cache_dir).expanduser(), f"{over}: cached to files in {str(cache_dir)!r}", limit)
    return CachePlan("none", None, f"{over} and no `cache_dir`: decoded every epoch", limit)


def format_bytes(n):
    if n == math.inf:
        return "unlimited"
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def shard_files(items, index, count):
    """Worker `index`'s share of `items` (strided, so classes stay mixed), padded so every worker gets
    `ceil(len / count)` items: the short shards repeat items from the start, as PyTorch's
    `DistributedSampler` does, so all workers take the same number of steps.

    Example:

    >>> shard_files(list("abcde"), 0, 2), shard_files(list("abcde"), 1, 2)
    (['a', 'c', 'e'], ['b', 'd', 'a'])
    """
    if not (is_int(count) and count >= 1 and is_int(index) and 0 <= index < count):
        raise DataError(
            f"`shard` must be (index, count) with 0 <= index < count. Received: shard=({index!r}, {count!r})."
        )
    items = list(items)
    if count == 1 or not items:
        return items
    per = math.ceil(len(items) / count)
    padded = items + items[: per * count - len(items)]
    return padded[index::count]


def worker_shard(strategy):
    """`(index, count)` of this process among a multi-worker strategy's workers (the chief first), or
    None for no strategy, one worker, or a strategy without a cluster resolver."""
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    task_type = getattr(resolver, "task_type", None)
    if not task_type or task_type not in ("chief", "worker"):
        return None
    spec = resolver.cluster_spec().as_dict() or {}
    chiefs, workers = len(spec.get("chief", ())), len(spec.get("worker", ()))
    count = chiefs + workers
    if count <= 1:
        return None
    index = 0 if task_type == "chief" else chiefs + int(resolver.task_id)
    return index, count
