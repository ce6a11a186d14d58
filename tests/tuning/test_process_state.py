"""A search that raises leaves the process as it found it: gc unfrozen, no heartbeat thread, the
worker's unfinished trial free for another worker; plotting never switches the matplotlib backend."""

import gc
import threading
import time

import keras
import numpy as np
import pytest

import cnnzoo
from cnnzoo.tuning import distributed, engine
from cnnzoo.tuning.records import TrialRecord, TuneResult


def _digits(n=96):
    d = cnnzoo.data.digits(seed=0)
    return d.x_train[:n], d.y_train[:n], d.x_test[:48], d.y_test[:48]


def _heartbeat_threads():
    return [t for t in threading.enumerate() if t.name.startswith("cnnzoo-heartbeat-") and t.is_alive()]


class _Abort(BaseException):
    """What a worker killed mid-trial by an interrupt looks like: keras-tuner does not catch it."""


class _RaiseAtEpochEnd(keras.callbacks.Callback):
    seen = []  # (gc freeze count, live heartbeat threads) when it raised; a class attribute, as
    #            keras-tuner deep-copies the callbacks of each trial

    def __init__(self, error):
        super().__init__()
        self.error = error
        _RaiseAtEpochEnd.seen = []

    def on_epoch_end(self, epoch, logs=None):
        _RaiseAtEpochEnd.seen.append((gc.get_freeze_count(), len(_heartbeat_threads())))
        raise self.error


@pytest.fixture
def clean_process():
    assert gc.get_freeze_count() == 0 and not _heartbeat_threads()
    yield
    assert gc.get_freeze_count() == 0, "the search left gc.freeze() on"
    assert not _heartbeat_threads(), "the search left its heartbeat thread beating"


def _as_worker(monkeypatch, tuner_id="tuner0"):
    """Makes keras-tuner see a distributed worker from now on, so the search starts a heartbeat
    (the tuner made before keeps its local oracle: it plays the chief's part in-process)."""
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "1")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", tuner_id)


def test_a_fit_that_raises_through_the_search_restores_gc_and_stops_the_heartbeat(tmp_path, monkeypatch, clean_process):
    x, y, xv, yv = _digits()
    hm = cnnzoo.hypermodel("digits_cnn")
    tuner = engine.make_tuner(
        hm,
        engine.TunerOptions(
            "random",
            "val_accuracy",
            3,
            1,
            tmp_path,
            "p",
            True,
            seed=0,
            max_consecutive_failed_trials=1,
            heartbeat_timeout=1.2,
        ),
    )
    _as_worker(monkeypatch)
    boom = _RaiseAtEpochEnd(RuntimeError("callback failed"))
    with pytest.raises(RuntimeError, match="consecutive failures"):  # keras-tuner ends the search on it
        tuner.search(x, y, validation_data=(xv, yv), epochs=1, batch_size=32, verbose=0, callbacks=[boom])
    assert boom.seen and boom.seen[0][0] > 0 and boom.seen[0][1] == 1  # it was frozen and beating mid-search


def test_a_worker_whose_trial_raised_stops_beating_and_its_trial_goes_to_another(tmp_path, monkeypatch, clean_process):
    x, y, xv, yv = _digits()
    hm = cnnzoo.hypermodel("digits_cnn")
    timeout = 1.2
    tuner = engine.make_tuner(
        hm, engine.TunerOptions("random", "val_accuracy", 3, 1, tmp_path, "p", True, seed=0, heartbeat_timeout=timeout)
    )
    _as_worker(monkeypatch, "tuner0")
    boom = _RaiseAtEpochEnd(_Abort())
    with pytest.raises(_Abort):
        tuner.search(x, y, validation_data=(xv, yv), epochs=1, batch_size=32, verbose=0, callbacks=[boom])
    assert boom.seen == [(boom.seen[0][0], 1)] and boom.seen[0][0] > 0
    oracle = tuner.oracle
    unfinished = oracle.ongoing_trials["tuner0"].trial_id  # the chief still counts it as running
    beat = tmp_path / "p" / distributed.HEARTBEATS_DIR / "tuner0"
    stamp = beat.stat().st_mtime
    time.sleep(timeout + 0.4)
    assert beat.stat().st_mtime == stamp  # nobody beats for tuner0 any more
    handed = oracle.create_trial("tuner1")  # the next worker that asks
    assert handed.trial_id == unfinished and "tuner0" not in oracle.ongoing_trials
    assert oracle.ongoing_trials["tuner1"].trial_id == unfinished


def test_tune_whose_progress_callback_raises_restores_the_process(tmp_path, clean_process):
    x, y, xv, yv = _digits()
    calls = []

    def progress(record):
        calls.append((record.trial_id, gc.get_freeze_count()))
        raise RuntimeError("progress display failed")

    with pytest.raises(RuntimeError, match="progress display failed"):
        cnnzoo.tune(
            "digits_cnn",
            (x, y, xv, yv),
            tuner="random",
            max_trials=2,
            max_epochs=1,
            out=tmp_path,
            seed=0,
            early_stopping=0,
            verbose=progress,
        )
    assert len(calls) == 1 and calls[0][1] > 0


def test_a_search_keeps_a_freeze_the_caller_made(tmp_path, monkeypatch):
    x, y, xv, yv = _digits(64)
    gc.freeze()
    try:
        before = gc.get_freeze_count()
        tuner = engine.make_tuner(
            cnnzoo.hypermodel("digits_cnn"),
            engine.TunerOptions("random", "val_accuracy", 1, 1, tmp_path, "p", True, seed=0),
        )
        tuner.search(x, y, validation_data=(xv, yv), epochs=1, batch_size=32, verbose=0)
        assert gc.get_freeze_count() > before // 2  # cnnzoo did not unfreeze what it did not freeze
    finally:
        gc.unfreeze()


# --------------------------------------------------------------------------- plotting


def test_plotting_never_switches_the_callers_matplotlib_backend(tmp_path):
    import matplotlib

    from cnnzoo.finetuning import plots
    from cnnzoo.tuning import records

    previous = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        assert matplotlib.get_backend() == "svg"
        trials = [
            TrialRecord(
                trial_id=f"{i:02d}",
                status="COMPLETED",
                score=0.5 + 0.1 * i,
                hyperparameters={
                    "conv_blocks": 1 + i,
                    "learning_rate": 1e-3 * (i + 1),
                    "optimizer": ["adam", "sgd"][i % 2],
                },
            )
            for i in range(3)
        ]
        result = TuneResult(
            name="digits_cnn",
            tuner="random",
            objective="val_accuracy",
            direction="max",
            directory=tmp_path,
            trials=trials,
            best_trial=trials[2],
        )
        written = [records.plot_scores(result, tmp_path / "scores.png")]
        written.append(plots.confusion_matrix_plot(np.array([[3, 1], [0, 4]]), ["a", "b"], tmp_path / "cm.png"))

        class _Stage:
            name, index = "head", 0

            def __str__(self):
                return "head"

        class _Result:
            index, stage = 0, _Stage()
            history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8], "val_accuracy": [0.4, 0.7]}

        written.append(plots.learning_curve((_Result(),), tmp_path / "curve.png"))
        assert matplotlib.get_backend() == "svg"
        for path in written:
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        matplotlib.use(previous)
