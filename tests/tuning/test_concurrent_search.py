"""Two searches in one project directory: the second is refused and touches nothing."""

import os
import subprocess
import time

from cnnzoo.tuning.records import read_runs
from conftest import PYTHON, REPO

_SEARCH = """
import os, sys, time, keras, cnnzoo
directory, release, overwrite = sys.argv[1], sys.argv[2], sys.argv[3] == "overwrite"
deadline = time.monotonic() + 180
class Held(keras.callbacks.Callback):  # the search waits, mid-trial, until the test lets it go on
    def on_train_batch_end(self, batch, logs=None):
        while release != "-" and not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.05)
d = cnnzoo.data.digits(seed=0)
try:
    result = cnnzoo.tune("digits_cnn", (d.x_train[:160], d.y_train[:160]), tuner="random", max_trials=3, max_epochs=2,
                         out=directory, seed=0, early_stopping=0, overwrite=overwrite, callbacks=[Held()])
except cnnzoo.RunLockedError as e:
    print("LOCKED", e, flush=True)
    sys.exit(3)
print("DONE", [t.status for t in result.trials], flush=True)
"""


def test_a_second_search_in_the_same_directory_is_refused(tmp_path, reliability):
    directory, release = tmp_path / "search", tmp_path / "release"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.Popen(
        [PYTHON, "-c", _SEARCH, str(directory), str(release), "keep"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not read_runs(directory / "digits_cnn") and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert read_runs(directory / "digits_cnn"), first.communicate()[1][-3000:]
        # overwrite=True would wipe the first search's project, were it let in
        second = subprocess.run(
            [PYTHON, "-c", _SEARCH, str(directory), "-", "overwrite"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 3, second.stderr[-3000:]
        assert "`out` is in use" in second.stdout and f"process {first.pid}" in second.stdout
        release.touch()  # the first search, held mid-trial until now, finishes its trials
        stdout, stderr = first.communicate(timeout=240)
    finally:
        release.touch()
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr[-3000:]
    assert "DONE ['COMPLETED', 'COMPLETED', 'COMPLETED']" in stdout
    runs = read_runs(directory / "digits_cnn")
    assert sorted(r["trial_id"] for r in runs if r["status"] == "completed") == ["0", "1", "2"]
    assert {r["pid"] for r in runs} == {first.pid}  # the refused process ran nothing
    reliability.record(
        "two searches started in one project directory",
        searches=2,
        refused=1,
        trials_run_by_the_refused_one=0,
        trials_completed=3,
    )
