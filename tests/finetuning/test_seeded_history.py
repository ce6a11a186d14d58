"""Seeded fine-tuning runs repeat the histories recorded before the Recipe refactor (issue 15).

`tests/fixtures/seeded_histories.json` was written by this module (`python
tests/finetuning/test_seeded_history.py`) on the code before `cnnzoo.Recipe`
existed. The same calls on today's code must give the same per-epoch
histories: the refactor moved options around, it did not change training.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "seeded_histories.json"
SIZE = 12


def _cases(tmp):
    """name -> (model, data, keyword arguments): a folder run with the defaults, an array run with
    mixing, EMA, two stages and the feature cache."""
    import cnnzoo

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from conftest import brightness_blobs, write_image_folder

    def tiny():
        return cnnzoo.get(
            "bird_classifier",
            num_classes=3,
            input_shape=(SIZE, SIZE, 3),
            compile=False,
            blocks=[{"filters": 4, "batch_norm": True}, {"filters": 8, "batch_norm": True, "dropout": 0.2}],
            dense=[8],
            dropout=0.5,
        )

    folder = write_image_folder(Path(tmp) / "folder", classes=("a", "b", "c"), per_class=10, size=(SIZE, SIZE))
    x, y = brightness_blobs(48, 3, 0, SIZE)
    return {
        "folder_defaults": (tiny, folder, {"epochs": 2, "out": Path(tmp) / "run_folder"}),
        "arrays_regularised": (
            tiny,
            (x, y),
            {
                "stages": ["head:2:1e-2", "all:2:1e-3"],
                "mixup": 0.2,
                "ema": 0.9,
                "label_smoothing": 0.05,
                "batch_size": 16,
                "out": Path(tmp) / "run_arrays",
            },
        ),
        "arrays_cached": (
            tiny,
            (x, y),
            {
                "stages": ["head:2:1e-2"],
                "augment": False,
                "cache_features": True,
                "pretrained": True,
                "seed": 3,
                "out": Path(tmp) / "run_cached",
            },
        ),
    }


def histories(tmp):
    import keras

    import cnnzoo

    out = {}
    for name, (make, data, kwargs) in _cases(tmp).items():
        keras.utils.set_random_seed(0)  # the same initial weights (finetune restores the caller's state)
        result = cnnzoo.finetune(make(), data, plots=False, verbose=0, **kwargs)
        out[name] = [{k: [float(v) for v in vs] for k, vs in stage.history.items()} for stage in result.stages]
    return out


@pytest.mark.slow
def test_seeded_runs_repeat_the_histories_recorded_before_the_recipe(tmp_path):
    expected = json.loads(FIXTURE.read_text())
    got = histories(tmp_path)
    assert set(got) == set(expected)
    for name in expected:
        assert len(got[name]) == len(expected[name]), name
        for stage_got, stage_expected in zip(got[name], expected[name]):
            assert set(stage_got) == set(stage_expected), name
            for key in stage_expected:
                np.testing.assert_allclose(
                    stage_got[key], stage_expected[key], rtol=1e-5, atol=1e-6, err_msg=f"{name}: {key}"
                )


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        FIXTURE.write_text(json.dumps(histories(tmp), indent=1) + "\n")
    print("wrote", FIXTURE)
