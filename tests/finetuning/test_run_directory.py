"""A fine-tuning run directory that already holds a run: `resume=False` starts over, and a finished run
whose saved model was deleted trains again. Real Keras training on tiny models and images."""

import json

import numpy as np
import pytest

import cnnzoo
from conftest import brightness_blobs

SIZE = 12


def tiny():
    return cnnzoo.get(
        "bird_classifier",
        num_classes=3,
        input_shape=(SIZE, SIZE, 3),
        compile=False,
        blocks=[{"filters": 4, "batch_norm": True}, {"filters": 8}],
        dense=[8],
        dropout=0.2,
    )


def blobs(n=36, classes=3, seed=0):
    return brightness_blobs(n, classes, seed, SIZE)


def epoch_recorder(seen, crash_at=None):
    """A Keras callback appending (stage, epoch) as each epoch starts; raises at `crash_at`."""
    import keras

    class Recorder(keras.callbacks.Callback):
        stage = 0

        def on_train_begin(self, logs=None):
            Recorder.stage += 1

        def on_epoch_begin(self, epoch, logs=None):
            if (Recorder.stage, epoch) == crash_at:
                raise RuntimeError("simulated crash")
            seen.append((Recorder.stage, epoch))

    return Recorder()


def state_of(out):
    return json.loads((out / "state.json").read_text())


def run(out, seen, stages=("head:2:1e-2", "all:3:1e-3"), crash_at=None, resume=True):
    x, y = blobs()
    return cnnzoo.finetune(
        tiny(),
        (x, y),
        stages=list(stages),
        out=out,
        callbacks=[epoch_recorder(seen, crash_at)],
        resume=resume,
        batch_size=8,
        verbose=0,
        plots=False,
    )


def test_resume_false_starts_an_interrupted_run_over(tmp_path):
    out = tmp_path / "run"
    seen = []
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(out, seen, crash_at=(2, 2))
    assert seen == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert (out / "backup" / "stage_2" / "epoch_0002.weights.h5").is_file() and (out / "stage_1.weights.h5").is_file()
    assert state_of(out)["stages_done"] == [1]

    seen.clear()
    result = run(out, seen, resume=False)
    assert seen == [(1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]  # every epoch again, none skipped
    assert not result.resumed
    state = state_of(out)
    assert state["finished"] and state["stages_done"] == [1, 2]
    assert [[r["epoch"] for r in state["history"][k]] for k in ("1", "2")] == [[0, 1], [0, 1, 2]]
    assert [len(s.history["loss"]) for s in result.stages] == [2, 3]
    assert not (out / "backup").exists() and not list(out.glob("stage_*.weights.h5"))  # old checkpoints gone
    assert result.model_path.is_file()

    # Without resume=False, the same call would have continued from the checkpoint instead.
    seen.clear()
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path / "other", [], crash_at=(2, 2))
    run(tmp_path / "other", seen)
    assert seen == [(1, 2)]  # only the last epoch of stage 2 (the first `fit` of that call)


def test_resume_false_replaces_a_finished_different_run(tmp_path):
    out = tmp_path / "run"
    first = run(out, [], stages=["all:2:1e-3"])
    before = first.model_path.read_bytes()
    with pytest.raises(cnnzoo.ConfigError, match="`out` already holds a different fine-tuning run"):
        run(out, [], stages=["all:3:1e-3"])
    seen = []
    second = run(out, seen, stages=["all:3:1e-3"], resume=False)
    assert seen == [(1, 0), (1, 1), (1, 2)] and not second.resumed
    state = state_of(out)
    assert state["fingerprint"]["stages"][0].startswith("all:3:0.001") and state["finished"]
    assert [r["epoch"] for r in state["history"]["1"]] == [0, 1, 2]
    assert second.model_path == first.model_path and second.model_path.read_bytes() != before
    assert run(out, [], stages=["all:3:1e-3"]).resumed  # the new run is the one kept


def test_finished_run_whose_model_was_deleted_trains_again(tmp_path, caplog):
    out = tmp_path / "run"
    first = run(out, [])
    assert first.model_path.is_file() and state_of(out)["finished"]
    seen = []
    again = run(out, seen)
    assert seen == [] and again.resumed  # finished and its model is there: nothing trains

    first.model_path.unlink()
    seen.clear()
    with caplog.at_level("WARNING", logger="cnnzoo"):
        rerun = run(out, seen)
    assert any("is gone: training again" in r.getMessage() for r in caplog.records)
    assert seen == [(1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]  # every stage trained again
    assert rerun.model_path == first.model_path and rerun.model_path.is_file()
    assert not rerun.resumed  # nothing was continued: it started over
    state = state_of(out)
    assert state["finished"] and state["stages_done"] == [1, 2]
    assert [len(state["history"][k]) for k in ("1", "2")] == [2, 3]  # new logs, not appended to the old ones
    x, _ = blobs()
    loaded = cnnzoo.load(rerun.model_path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), rerun.model.predict(x, verbose=0), atol=1e-5)
