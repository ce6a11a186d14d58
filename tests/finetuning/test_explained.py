"""finetune(plots=True) adds Grad-CAM overlays of validation images, right and wrong, to the run directory."""

import numpy as np
import pytest
from PIL import Image

import cnnzoo
from cnnzoo.finetuning.explained import gradcam_examples, pick_examples
from conftest import write_image_folder

SIZE = 12


def test_finetune_writes_gradcam_next_to_the_other_plots(tmp_path):
    folder = write_image_folder(tmp_path / "images", classes=("a", "b", "c"), per_class=6, size=(SIZE, SIZE))
    out = tmp_path / "run"
    result = cnnzoo.finetune("digits_cnn", folder, input_shape=(SIZE, SIZE, 3), epochs=2, out=out, verbose=0)
    assert set(result.plots) == {"learning_curve", "confusion_matrix", "gradcam"}
    assert result.plots["gradcam"] == out / "gradcam.png"
    with Image.open(result.plots["gradcam"]) as im:
        assert im.format == "PNG" and im.size[0] > 200
    again = cnnzoo.finetune("digits_cnn", folder, input_shape=(SIZE, SIZE, 3), epochs=2, out=out, verbose=0)
    assert again.resumed and again.plots == result.plots  # a finished run lists its pictures again

    none = cnnzoo.finetune(
        "digits_cnn", folder, input_shape=(SIZE, SIZE, 3), epochs=1, out=tmp_path / "quiet", verbose=0, plots=False
    )
    assert none.plots == {} and not (tmp_path / "quiet" / "gradcam.png").exists()


def _dataset(x, y, batch=4):
    for i in range(0, len(x), batch):
        yield x[i : i + batch], y[i : i + batch]


@pytest.fixture(scope="module")
def trained():
    """A small grayscale CNN trained a little on bright and dark images."""
    rng = np.random.default_rng(0)
    y = np.arange(64) % 2
    x = np.clip(rng.normal(0, 10, (64, SIZE, SIZE, 1)) + 60 + 120 * y[:, None, None, None], 0, 255).astype("float32")
    model = cnnzoo.get(
        "digits_cnn",
        num_classes=2,
        input_shape=(SIZE, SIZE, 1),
        class_names=["dark", "bright"],
        blocks=[{"filters": 4}],
        dense=[8],
        dropout=0.0,
    )
    model.fit(x, y, epochs=3, verbose=0)
    return model, x


def test_rows_of_right_and_wrong_predictions(trained, tmp_path):
    model, x = trained
    predicted = np.argmax(model.predict(x, verbose=0), axis=1)
    # labels equal to the predictions: all right; flipped: all wrong; three flipped: three of each shown
    mixed = predicted.copy()
    mixed[:3] = 1 - mixed[:3]
    for labels, name in ((predicted, "right.png"), (1 - predicted, "wrong.png"), (mixed, "mixed.png")):
        written = gradcam_examples(model, _dataset(x, labels), ["dark", "bright"], tmp_path / name, count=6)
        assert written == {"gradcam": tmp_path / name}
        with Image.open(written["gradcam"]) as im:
            assert im.format == "PNG" and im.size[0] > 200
    with Image.open(tmp_path / "right.png") as one_row, Image.open(tmp_path / "mixed.png") as two_rows:
        assert two_rows.size[1] > 1.5 * one_row.size[1]
    assert gradcam_examples(model, iter(()), ["dark", "bright"], tmp_path / "empty.png") == {}
    assert not (tmp_path / "empty.png").exists()


def test_examples_are_half_wrong_when_there_are_wrong_ones():
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
    right, wrong = pick_examples(labels, labels, 6)
    assert right.tolist() == [0, 1, 2, 3, 4, 5] and wrong.tolist() == []
    predicted = labels.copy()
    predicted[[1, 4, 6, 7, 9]] ^= 1
    right, wrong = pick_examples(predicted, labels, 6)
    assert wrong.tolist() == [1, 4, 6] and right.tolist() == [0, 2, 3]
    predicted[[2]] ^= 1
    right, wrong = pick_examples(predicted, labels, 7)
    assert wrong.tolist() == [1, 2, 4] and right.tolist() == [0, 3, 5, 8]


def test_a_model_without_convolutions_gets_no_gradcam_and_a_log_line(tmp_path, caplog):
    import keras

    model = keras.Sequential(
        [keras.Input((SIZE, SIZE, 1)), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")], name="flat"
    )
    x = np.zeros((4, SIZE, SIZE, 1), "float32")
    with caplog.at_level("WARNING", logger="cnnzoo"):
        assert gradcam_examples(model, _dataset(x, np.zeros(4, int)), ["a", "b"], tmp_path / "g.png") == {}
    assert "no Grad-CAM pictures for flat" in caplog.text and not (tmp_path / "g.png").exists()
