"""finetune(plots=True) writes the validation set's confusion matrix, top losses and Grad-CAM examples picked from
its real mistakes (`cnnzoo/finetuning/explained.py`), and returns their `Interpretation`."""

import numpy as np
from PIL import Image

import cnnzoo
from cnnzoo.explain.interpretation import Interpretation
from cnnzoo.finetuning.explained import gradcam_examples
from conftest import write_image_folder

SIZE = 12


def test_finetune_writes_the_validation_pictures_next_to_the_learning_curve(tmp_path):
    folder = write_image_folder(tmp_path / "images", classes=("a", "b", "c"), per_class=6, size=(SIZE, SIZE))
    out = tmp_path / "run"
    result = cnnzoo.finetune("digits_cnn", folder, input_shape=(SIZE, SIZE, 3), epochs=2, out=out, verbose=0)
    assert set(result.plots) == {"learning_curve", "confusion_matrix", "top_losses", "gradcam"}
    assert result.plots["gradcam"] == out / "gradcam.png" and result.plots["top_losses"] == out / "top_losses.png"
    for name in ("gradcam", "top_losses", "confusion_matrix"):
        with Image.open(result.plots[name]) as im:
            assert im.format == "PNG" and im.size[0] > 224
    interp = result.interpretation  # the validation images, as the run scored them
    assert isinstance(interp, Interpretation) and len(interp.labels) == result.confusion_matrix.sum()
    assert interp.accuracy == result.val_accuracy and np.array_equal(interp.confusion_matrix, result.confusion_matrix)
    assert "validation images" in interp.description
    again = cnnzoo.finetune("digits_cnn", folder, input_shape=(SIZE, SIZE, 3), epochs=2, out=out, verbose=0)
    assert again.resumed and again.plots == result.plots  # a finished run lists its pictures again
    assert again.interpretation.accuracy == result.val_accuracy
    assert np.array_equal(again.confusion_matrix, result.confusion_matrix)

    none = cnnzoo.finetune(
        "digits_cnn", folder, input_shape=(SIZE, SIZE, 3), epochs=1, out=tmp_path / "quiet", verbose=0, plots=False
    )
    assert none.plots == {} and not (tmp_path / "quiet" / "gradcam.png").exists()
    assert none.interpretation is not None


def _interpretation(model, x, labels):
    """The `Interpretation` of `model` on images `x` with the given labels."""
    return cnnzoo.interpret(model, [(x[i : i + 8], labels[i : i + 8]) for i in range(0, len(x), 8)])


def test_the_mistakes_row_shows_real_mistakes_balanced_across_classes(tmp_path):
    model = cnnzoo.get(
        "digits_cnn",
        num_classes=3,
        input_shape=(SIZE, SIZE, 1),
        class_names=["r", "g", "b"],
        blocks=[{"filters": 4}],
        dense=[8],
        dropout=0.0,
    )
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (24, SIZE, SIZE, 1)).astype("float32")
    predicted = np.argmax(model.predict(x, verbose=0), axis=1)
    labels = predicted.copy()
    wrong = [3, 7, 11, 15, 19]  # five mistakes, spread over the true classes below
    labels[wrong] = (predicted[wrong] + 1) % 3
    interp = _interpretation(model, x, labels)
    right, shown_wrong = interp.examples(8)
    assert sorted(shown_wrong.tolist()) == wrong  # every mistake, and only mistakes, in the wrong row
    assert len(right) == 3 and all(predicted[i] == labels[i] for i in right)
    first_of_each = {}
    for i in shown_wrong:
        first_of_each.setdefault(int(labels[i]), int(i))
    turns = list(first_of_each.values())  # each true class's worst mistake comes before any class's second
    assert shown_wrong[: len(turns)].tolist() == turns
    losses = interp.losses
    assert losses[shown_wrong[0]] == losses[wrong].max()  # the worst mistake first

    written = gradcam_examples(interp, tmp_path / "g.png")
    assert written == {"gradcam": tmp_path / "g.png"}
    everything_right = _interpretation(model, x, predicted)
    assert gradcam_examples(everything_right, tmp_path / "right.png") == {"gradcam": tmp_path / "right.png"}
    with Image.open(tmp_path / "right.png") as one_row, Image.open(tmp_path / "g.png") as two_rows:
        assert two_rows.size[1] > 1.5 * one_row.size[1]


def test_a_model_without_convolutions_gets_no_gradcam_and_a_log_line(tmp_path, caplog):
    import keras

    model = keras.Sequential(
        [keras.Input((SIZE, SIZE, 1)), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")], name="flat"
    )
    x = np.zeros((4, SIZE, SIZE, 1), "float32")
    interp = cnnzoo.interpret(model, (x, np.zeros(4, int)))
    with caplog.at_level("WARNING", logger="cnnzoo"):
        assert gradcam_examples(interp, tmp_path / "g.png") == {}
    assert "no Grad-CAM pictures for flat" in caplog.text and not (tmp_path / "g.png").exists()
    path = interp.plot_top_losses(2, tmp_path / "top.png")  # the images alone
    with Image.open(path) as im:
        assert im.format == "PNG"
