"""Run locks: one process at a time in a fine-tuning run directory or a search directory.

An OS file lock (`flock` on POSIX, `msvcrt.locking` on Windows) on
`<directory>/.cnnzoo.lock`: the kernel releases it when the process ends, however
it ends, so `kill -9` never leaves a stale lock. The file also records who holds
the lock (pid, host, what, since when), so that a second process is told which
one to wait for. The lock file itself is never deleted (deleting it would let
two processes lock two different files).
"""

import json
import os
import socket
import time
from pathlib import Path

from cnnzoo.errors import RunLockedError

__all__ = ["RunLock", "LOCK_NAME"]

LOCK_NAME = ".cnnzoo.lock"

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None
    import msvcrt


class RunLock:
    """Holds `<directory>/.cnnzoo.lock` while a process uses `directory`.

    Args:
        directory: the directory to lock (created if missing).
        what: what runs there, for messages (`"fine-tuning run"`, `"search"`).
        argument: the argument that named the directory, for messages (`"out"`).
        shared: take a shared lock: processes that cooperate in one directory
            (the chief and workers of a distributed search) all hold it, while
            an exclusive holder (a standalone run) excludes them all.
        name: the lock file's name (several searches may share a directory,
            one lock file per project).

    Example:

    >>> with RunLock("runs/birds", "fine-tuning run"):  # doctest: +SKIP
    ...     train()
    """

    def __init__(self, directory, what="run", argument="out", shared=False, name=LOCK_NAME):
        self.directory = Path(directory)
        self.path = self.directory / name
        self.what = what
        self.argument = argument
        self.shared = shared
        self._fd = None

    def acquire(self):
        """Takes the lock or raises `RunLockedError` naming the holder; touches nothing else."""
        if self._fd is not None:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(fd, self.shared)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunLockedError(
                f"`{self.argument}` is in use: {str(self.directory)!r} is locked by {_describe(holder)}. Wait for "
                f"that process to finish (or stop it), or choose another `{self.argument}`. Nothing in the "
                f"directory was touched. Received: {self.argument}={str(self.directory)!r}."
            ) from None
        if not self.shared:
            record = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "what": self.what,
                "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd
        return self

    def release(self):
        """Releases the lock (the kernel does it too when the process ends)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                _unlock(fd)
            finally:
                os.close(fd)

    @property
    def held(self):
        return self._fd is not None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


def _lock(fd, shared):
    if fcntl is not None:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    else:  # pragma: no cover - Windows: no shared locks; lock the first byte
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)


def _unlock(fd):
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:  # pragma: no cover
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _read_holder(fd):
    try:
        raw = os.pread(fd, 4096, 0)
        return json.loads(raw.decode()) if raw.strip() else {}
    except (OSError, ValueError):
        return {}


def _describe(holder):
    if not holder:
        return "another process (a distributed search, or one that recorded no details)"
    return (
        f"process {holder.get('pid', '?')} on host {holder.get('host', '?')} "
        f"(a {holder.get('what', 'run')} started {holder.get('since', '?')})"
    )
