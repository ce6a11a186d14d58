"""Run locks with real processes: a holder excludes others, kill -9 frees the lock, shared holders coexist."""

import os
import signal
import subprocess

import pytest

import cnnzoo
from cnnzoo.utils.locks import LOCK_NAME, RunLock
from conftest import PYTHON, REPO

_HOLD = (
    "import sys, time\n"
    "from cnnzoo.utils.locks import RunLock\n"
    "lock = RunLock(sys.argv[1], 'fine-tuning run', shared=sys.argv[2] == 'shared').acquire()\n"
    "print('HELD', flush=True)\n"
    "time.sleep(120)\n"
)


def _holder(directory, mode="exclusive"):
    proc = subprocess.Popen([PYTHON, "-c", _HOLD, str(directory), mode], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout.readline().strip() == "HELD"
    return proc


def test_a_second_process_is_refused_with_the_holders_pid_and_host(tmp_path):
    (tmp_path / "state.json").write_text("{}")
    proc = _holder(tmp_path)
    try:
        with pytest.raises(
            cnnzoo.RunLockedError,
            match=rf"`out` is in use: .* locked by process {proc.pid} on host "
            rf".*fine-tuning run.*Received: out=",
        ) as info:
            RunLock(tmp_path, "fine-tuning run").acquire()
        assert isinstance(info.value, ValueError)
        assert (tmp_path / "state.json").read_text() == "{}"  # nothing touched
        with pytest.raises(cnnzoo.RunLockedError):
            RunLock(tmp_path, shared=True).acquire()  # an exclusive holder excludes shared ones too
    finally:
        proc.kill()
        proc.wait()


def test_kill_9_releases_the_lock(tmp_path, reliability):
    proc = _holder(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with RunLock(tmp_path, "search", argument="directory") as lock:
        assert lock.held and (tmp_path / LOCK_NAME).is_file()
    assert not lock.held
    reliability.record("a lock holder killed with kill -9", kills=1, stale_locks_left=0)


def test_shared_holders_coexist_and_exclude_an_exclusive_one(tmp_path):
    proc = _holder(tmp_path, "shared")
    try:
        with RunLock(tmp_path, shared=True) as lock:
            assert lock.held
            with pytest.raises(cnnzoo.RunLockedError, match="`directory` is in use"):
                RunLock(tmp_path, argument="directory").acquire()
    finally:
        proc.kill()
        proc.wait()


def test_the_same_lock_released_and_taken_again_in_one_process(tmp_path):
    lock = RunLock(tmp_path / "new" / "run")
    lock.acquire()
    assert lock.acquire() is lock  # re-entrant for the holder object
    with pytest.raises(cnnzoo.RunLockedError):
        RunLock(tmp_path / "new" / "run").acquire()  # another holder in the same process is refused too
    lock.release()
    RunLock(tmp_path / "new" / "run").acquire().release()
    assert os.listdir(tmp_path / "new" / "run") == [LOCK_NAME]
