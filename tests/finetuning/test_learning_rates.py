"""Learning rates (issue 11, item 2): one-cycle, per-unit rates, the LR finder, `learning_rate="auto"`.
(Rates, ranges and schedules written in a `Stage` are tested with the stages, in test_stages.py.)

Real TensorFlow training of tiny zoo CNNs on tiny images; the plot is a real PNG read back with Pillow.
"""

import json
import logging
import random

import numpy as np
import pytest

import cnnzoo
from cnnzoo.errors import ConfigError
from cnnzoo.finetuning import freezing, lr_finder, schedules
from cnnzoo.finetuning.stages import Stage
from cnnzoo.zoo.config import OPTIMIZERS
from conftest import brightness_blobs, crash_at, write_image_folder

SIZE = 12


def tiny(num_classes=3, blocks=3, batch_norm=True, dtype=None):
    return cnnzoo.get(
        "bird_classifier",
        num_classes=num_classes,
        input_shape=(SIZE, SIZE, 3),
        compile=False,
        blocks=[{"filters": 4 + 2 * i, "batch_norm": batch_norm} for i in range(blocks)],
        dense=[8],
        dropout=0.0,
        dtype=dtype,
    )


def blobs(n=48, classes=3, seed=0):
    return brightness_blobs(n, classes, seed, SIZE)


def test_one_cycle_warms_up_then_anneals():
    schedule = schedules.learning_rate_schedule(Stage("all", 4, 1e-2, "one_cycle"), 25)  # 100 steps
    lr = [float(schedule(step)) for step in range(101)]
    assert lr[0] == pytest.approx(1e-2 / 25)
    assert max(lr) == pytest.approx(1e-2) and int(np.argmax(lr)) == 25  # peak after 25% of the steps
    assert all(a <= b for a, b in zip(lr[:25], lr[1:26])) and all(a >= b for a, b in zip(lr[25:], lr[26:]))
    assert lr[100] == pytest.approx(1e-2 / 1e5, rel=1e-3)
    cosine = schedules.learning_rate_schedule(Stage("all", 4, 1e-2), 25)
    assert float(cosine(0)) == pytest.approx(1e-2) and float(cosine(100)) == pytest.approx(1e-4)
    assert schedules.learning_rate_schedule(Stage("all", 4, 1e-2, "constant"), 25) == 1e-2
    assert float(schedules.learning_rate_schedule(Stage(0, 1, 1e-2, "one_cycle"), 1)(0)) == pytest.approx(1e-2)
    assert float(schedules.learning_rate_schedule(Stage(0, 1, "auto"), 10, rate=0.5)(0)) == pytest.approx(0.5)


# ------------------------------------------------------------------ per-unit rates


def _unit_changes(optimizer, rate, steps=3, dtype=None):
    """Mean absolute change of each unit's weights (and the head's) after `steps` batches of one stage."""
    from cnnzoo.utils.seeding import seeded

    with seeded(0):  # the same initial weights for every rate: only the rates differ
        model = tiny(dtype=dtype)
    parts = freezing.anatomy(model)
    stage = Stage("all", 1, rate, "constant", optimizer)
    freezing.apply_stage(parts, stage, freeze_batchnorm=False)
    net = schedules.compile_stage(freezing.stage_model(parts), stage, parts, steps)
    groups = [*parts.units, ("head", [parts.head])]
    before = [[v.numpy().copy() for layer in layers for v in layer.trainable_weights] for _, layers in groups]
    x, y = blobs(16 * steps)
    net.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    after = [[v.numpy() for layer in layers for v in layer.trainable_weights] for _, layers in groups]
    return np.array([np.mean([np.abs(a - b).mean() for a, b in zip(aa, bb)]) for aa, bb in zip(after, before)]), net


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_lower_units_move_less_with_every_optimizer(optimizer):
    ranged, net = _unit_changes(optimizer, (1e-4, 1e-2))
    uniform, _ = _unit_changes(optimizer, 1e-2)
    assert type(net.optimizer).__name__.lower() == f"perunit{optimizer}"
    ratio = ranged / uniform  # about (lo/hi)^(1 - j/k): 0.01, 0.046, 0.22, 1 (exactly, for one step)
    assert np.all(np.diff(ratio) > 0), ratio
    assert ratio[0] < 0.05 and ratio[-1] > 0.5, ratio


def test_per_unit_rates_compose_with_mixed_float16_and_a_head_only_stage():
    import keras

    ranged, net = _unit_changes("adam", (1e-4, 1e-2), steps=2, dtype="mixed_float16")
    assert isinstance(net.optimizer, keras.optimizers.LossScaleOptimizer)
    assert type(net.optimizer.inner_optimizer).__name__ == "PerUnitAdam"
    assert ranged[0] < ranged[-2] < ranged[-1]
    model = tiny()
    parts = freezing.anatomy(model)
    head = Stage(0, 1, (1e-4, 1e-2))
    freezing.apply_stage(parts, head)
    net = schedules.compile_stage(freezing.stage_model(parts), head, parts, 1)
    assert type(net.optimizer).__name__ == "Adam" and float(net.optimizer.learning_rate) == pytest.approx(1e-2)


def test_per_unit_run_resumes_from_its_epoch_checkpoint(tmp_path):
    import keras

    x, y = blobs()
    seen = []

    class Crash(keras.callbacks.Callback):
        def __init__(self, crash):
            super().__init__()
            self.crash = crash

        def on_epoch_begin(self, epoch, logs=None):
            seen.append(
                (self.crash, epoch, type(self.model.optimizer).__name__, int(self.model.optimizer.iterations.numpy()))
            )
            if self.crash and epoch == 1:
                raise RuntimeError("simulated crash")

    def run(crash):
        return cnnzoo.finetune(
            tiny(),
            (x, y),
            stages="all:3:1e-4..1e-2:one_cycle",
            out=tmp_path / "run",
            callbacks=[Crash(crash)],
            verbose=0,
            plots=False,
            steps_per_execution=1,
        )

    with pytest.raises(RuntimeError, match="simulated crash"):
        run(True)
    result = run(False)
    steps = int(np.ceil(len(x) * 0.8 / 32))
    assert [e for e in seen if not e[0]] == [(False, 1, "PerUnitAdam", steps), (False, 2, "PerUnitAdam", 2 * steps)]
    assert result.resumed and len(result.history["1:all"]["loss"]) == 3
    assert type(result.model.optimizer).__name__ == "Adam"  # the saved model is compiled the plain way
    assert float(result.model.optimizer.learning_rate) == pytest.approx(1e-2)
    assert cnnzoo.load(result.model_path).output_shape == (None, 3)


# ------------------------------------------------------------------ the LR finder


def test_find_lr_sweeps_suggests_plots_and_leaves_the_model_and_random_state(tmp_path):
    from PIL import Image

    model = tiny()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    weights = [w.copy() for w in model.get_weights()]
    flags = [layer.trainable for layer in model.layers]
    random.seed(7)
    np.random.seed(7)
    expected = (random.random(), np.random.rand())
    random.seed(7)
    np.random.seed(7)
    found = cnnzoo.find_lr(model, blobs(96), steps=40, start=1e-6, end=10.0, out=tmp_path / "lr.png", batch_size=8)
    assert (random.random(), np.random.rand()) == expected
    rates = np.array(found.learning_rates)
    assert rates[0] == pytest.approx(1e-6) and np.all(np.diff(rates) > 0) and len(found.losses) == len(rates)
    assert 1e-6 < found.suggestion < rates[-1] and found.stage == Stage("all", 1)  # from scratch: everything
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights))
    assert [layer.trainable for layer in model.layers] == flags
    assert type(model.optimizer).__name__ == "SGD"  # its own compiled optimizer, untouched
    with Image.open(found.plot) as image:
        assert image.format == "PNG" and image.size[0] > 300
    assert lr_finder.valley([1, 2, 3, 4, 5, 6, 7], [5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 9.0]) == 3
    with pytest.raises(ConfigError, match=r"`start` and `end`.*Received: start=1.0, end=0.1"):
        cnnzoo.find_lr(model, blobs(), start=1.0, end=0.1)


def test_find_lr_on_a_pretrained_model_sweeps_the_head_and_stops_when_the_loss_diverges():
    from cnnzoo.utils.seeding import seeded

    with seeded(0):
        model = tiny()
    model.get_layer("head").pretrained = True
    found = cnnzoo.find_lr(model, blobs(96), steps=60, start=1e-5, end=10.0, diverge=1.05, batch_size=8)
    assert found.stage == Stage(0, 1)  # a pretrained backbone: the head, as finetune's first stage
    assert len(found.losses) < 60 and found.losses[-1] > 1.05 * min(found.losses[:-1])
    assert found.learning_rates[-1] < 10.0 and found.suggestion < found.learning_rates[-1]


def test_auto_rate_is_found_once_kept_in_the_run_state_and_reused(tmp_path, caplog):
    x, y = blobs()

    def run(callbacks=()):
        return cnnzoo.finetune(
            tiny(),
            (x, y),
            stages="all:2",
            learning_rate="auto",
            out=tmp_path / "run",
            callbacks=list(callbacks),
            verbose=0,
            plots=False,
        )

    caplog.set_level(logging.INFO, logger="cnnzoo")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run([crash_at(1)])
    found = json.loads((tmp_path / "run" / "state.json").read_text())["learning_rates"]["1"]
    assert "found by the LR finder" in caplog.text
    caplog.clear()
    result = run()
    assert "found before (run state)" in caplog.text and "found by the LR finder" not in caplog.text
    assert json.loads((tmp_path / "run" / "state.json").read_text())["learning_rates"]["1"] == found
    assert str(result.stages[0].stage) == "all:2:auto"
    assert float(result.model.optimizer.learning_rate) == pytest.approx(found)


def test_cli_lr_flag(tmp_path, capsys):
    from cnnzoo.cli.app import main

    folder = write_image_folder(tmp_path / "images", classes=("a", "b", "c"), per_class=8)
    status = main(
        [
            "finetune",
            "digits_cnn",
            str(folder),
            "--input-shape",
            "12x12x3",
            "--stages",
            "all:1",
            "--lr",
            "1e-4..1e-2",
            "--out",
            str(tmp_path / "run"),
            "--quiet",
        ]
    )
    assert status == 0 and "stage 1 all:1:0.0001..0.01" in capsys.readouterr().out
    assert main(["finetune", "digits_cnn", str(folder), "--lr", "fast", "--out", str(tmp_path / "x")]) == 2
    assert "`learning_rate` must be" in capsys.readouterr().err
