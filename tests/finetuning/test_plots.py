"""The learning curve of `cnnzoo/finetuning/plots.py`: whole-epoch ticks, and the note on a training loss above the
validation loss (label smoothing, augmentation, dropout), with a real tiny model and a real recipe."""

import math

import numpy as np

import cnnzoo
from cnnzoo.finetuning import plots
from cnnzoo.finetuning.results import StageResult
from cnnzoo.finetuning.stages import Stage
from finetune_helpers import tiny


def _stage(index, epochs, train_above):
    """A stage's history as `fit` records it: training loss above validation loss or below it."""
    t = np.arange(epochs)
    loss = 1.6 * np.exp(-t / 3) + (0.56 if train_above else 0.05)
    val_loss = 1.2 * np.exp(-t / 3) + (0.10 if train_above else 0.30)
    history = {
        "loss": list(loss),
        "val_loss": list(val_loss),
        "accuracy": [0.5] * epochs,
        "val_accuracy": [0.6] * epochs,
    }
    return StageResult(index, Stage("all", epochs, 1e-3), history, (), False, 1.0)


def test_the_training_loss_above_validation_is_explained_and_epochs_are_whole(tmp_path):
    effects = plots.train_only_effects(cnnzoo.Recipe(), True, tiny(num_classes=10), 10)
    assert effects == ("label smoothing 0.1 (loss >= 0.50)", "augmentation", "dropout")  # the default recipe
    stages = (_stage(1, 2, True), _stage(2, 3, True))
    note = plots.loss_gap_note(stages, effects)
    last = stages[-1].history  # the last epoch of the last stage
    assert note.startswith(f"training loss ({last['loss'][-1]:.2f}) above validation loss ({last['val_loss'][-1]:.2f})")
    assert note.endswith("training batches only get label smoothing 0.1 (loss >= 0.50), augmentation, dropout")
    fig = plots.learning_curve_figure(stages, effects)
    loss_panel, accuracy_panel = fig.axes
    assert note in [t.get_text() for t in loss_panel.texts]
    for ax in (loss_panel, accuracy_panel):
        ticks = [x for x in ax.get_xticks() if 1 <= x <= 5]
        assert ticks and all(float(x).is_integer() for x in ticks), ticks  # 5 epochs: no 2.5
    path = plots.learning_curve(stages, tmp_path / "curve.png", effects)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_note_without_a_gap_or_a_cause():
    assert plots.loss_gap_note((_stage(1, 4, False),), ("augmentation",)) is None  # training loss below
    assert plots.loss_gap_note((_stage(1, 4, True),), ()) is None  # nothing acts on training batches only
    plain = cnnzoo.Recipe(label_smoothing=0, augment=False)
    assert plots.train_only_effects(plain, False, tiny(dropout=0.0, block_dropout=0.0), 3) == ()
    assert plots.train_only_effects(cnnzoo.Recipe(label_smoothing=0, mixup=0.2), False, tiny(dropout=0.0), 3) == (
        "MixUp 0.2",
        "dropout",
    )
    # the floor is the entropy of the smoothed target: 10 classes, 0.1 -> 0.91 and nine 0.01
    floor = -(0.91 * math.log(0.91) + 9 * 0.01 * math.log(0.01))
    assert f"(loss >= {floor:.2f})" in plots.train_only_effects(cnnzoo.Recipe(), False, tiny(), 10)[0]
