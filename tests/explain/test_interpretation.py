"""`cnnzoo.interpret` and `cnnzoo.evaluate` on a real test folder (Pillow PNGs) and a tiny model trained a little.

Every number is checked against the model's own answers (`cnnzoo.predict` on the files) and scikit-learn's
metrics; the picks of the Grad-CAM examples against hand-made probabilities.
"""

import json

import numpy as np
import pytest
from PIL import Image

import cnnzoo
from cnnzoo.errors import ConfigError, DataError, DataNotFoundError
from cnnzoo.explain.interpretation import Interpretation
from conftest import brightness_blobs

SIZE = 12
CLASSES = ("dark", "grey", "light")


def write_folder(root, x, y, names=CLASSES):
    """`root/<class>/<i>.png` for uint8 images `x` with labels `y`; returns root."""
    for i, (image, label) in enumerate(zip(x, y)):
        (root / names[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.astype(np.uint8)).save(root / names[label] / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny zoo CNN trained for a few steps (right on some images, wrong on others), and a test folder it never
    saw."""
    import keras

    keras.utils.set_random_seed(0)
    x, y = brightness_blobs(96, 3, seed=0, size=SIZE)
    model = cnnzoo.get(
        "digits_cnn",
        num_classes=3,
        input_shape=(SIZE, SIZE, 3),
        class_names=list(CLASSES),
        blocks=[{"filters": 4, "convs": 1}],
        dense=[8],
        dropout=0.0,
    )
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    test_x, test_y = brightness_blobs(30, 3, seed=1, size=SIZE)
    folder = write_folder(tmp_path_factory.mktemp("interpret") / "test", test_x, test_y)
    return model, folder


def test_a_test_folder_needs_no_arguments_and_the_numbers_are_the_models(trained, tmp_path):
    from sklearn.metrics import confusion_matrix, precision_score, recall_score

    model, folder = trained
    interp = cnnzoo.interpret(model, folder)  # no validation_split, no num_classes
    files = sorted(str(p) for p in folder.rglob("*.png"))
    assert sorted(interp.sources) == files and len(interp.labels) == 30
    said = {p.source: p for p in cnnzoo.predict(model, files, top_k=3)}
    truth = [CLASSES.index(folder.joinpath(s).parent.name) for s in interp.sources]
    predicted = [CLASSES.index(said[s].label) for s in interp.sources]
    assert interp.labels.tolist() == truth and interp.predicted.tolist() == predicted
    assert interp.accuracy == pytest.approx(np.mean(np.array(truth) == np.array(predicted)))
    np.testing.assert_array_equal(interp.confusion_matrix, confusion_matrix(truth, predicted, labels=[0, 1, 2]))
    np.testing.assert_allclose(
        interp.precision, precision_score(truth, predicted, labels=[0, 1, 2], average=None, zero_division=np.nan)
    )
    np.testing.assert_allclose(interp.recall, recall_score(truth, predicted, labels=[0, 1, 2], average=None))
    probability_of_truth = [dict(said[s].top_k)[CLASSES[t]] for s, t in zip(interp.sources, truth)]
    np.testing.assert_allclose(interp.losses, -np.log(probability_of_truth), rtol=1e-4)
    losses, order = interp.top_losses(5)
    assert np.all(np.diff(losses) <= 0) and losses[0] == interp.losses.max() and len(order) == 5

    wrong = interp.mistakes
    assert 0 < len(wrong) < 30, "the fixture should leave the model some mistakes"
    pairs = interp.most_confused()
    assert sum(n for _, _, n in pairs) == len(wrong)
    assert [n for _, _, n in pairs] == sorted((n for _, _, n in pairs), reverse=True)
    assert interp.most_confused(min_count=pairs[0][2] + 1) == []
    text = repr(interp)
    assert len(text) < 250 + len(str(folder)) and f"accuracy {interp.accuracy:.2%}" in text and "digits_cnn" in text
    assert f"{len(wrong)} mistake" in text and f"30 images of the folder {str(folder)!r}" in text
    assert f"({30 - len(wrong)}/30 images)" in interp.report()

    accuracy, matrix = cnnzoo.evaluate(model, folder)  # the same, without num_classes (it used to be required)
    assert accuracy == interp.accuracy and np.array_equal(matrix, interp.confusion_matrix)
    assert cnnzoo.evaluate(model, folder, 3)[0] == accuracy

    written = interp.save(tmp_path / "eval", k=4)
    assert set(written) == {"confusion_matrix", "top_losses", "metrics"}
    for name in ("confusion_matrix", "top_losses"):
        with Image.open(written[name]) as im:
            assert im.format == "PNG" and min(im.size) > 224
    metrics = json.loads(written["metrics"].read_text())
    assert metrics["accuracy"] == interp.accuracy and metrics["confusion_matrix"] == matrix.tolist()
    top = metrics["top_losses"]
    assert len(top) == 4 and top[0]["source"] == interp.sources[order[0]] and top[0]["loss"] == pytest.approx(losses[0])
    assert [c["name"] for c in metrics["classes"]] == list(CLASSES)


def test_every_form_of_data_is_scored_whole(trained, tmp_path):
    model, folder = trained
    x, y = brightness_blobs(20, 3, seed=3, size=16)  # another size: fitted to the model's input as files are
    whole = cnnzoo.interpret(model, (x, y))
    assert len(whole.labels) == 20 and whole.description == "20 images"
    validation = cnnzoo.interpret(model, (x[:5], y[:5], x[5:], y[5:]))  # the validation part
    assert validation.labels.tolist() == y[5:].tolist()
    np.testing.assert_allclose(validation.probabilities, whole.probabilities[5:], atol=1e-5)
    batches = [(x[:8], y[:8]), (x[8:], y[8:])]  # a list of batches (not mistaken for x, y arrays)
    assert cnnzoo.interpret(model, batches).labels.tolist() == y.tolist()
    assert cnnzoo.interpret(model, iter(batches)).labels.tolist() == y.tolist()  # a generator, read once
    record = cnnzoo.data.Arrays(x[:5], y[:5], x[5:], y[5:], CLASSES)
    assert cnnzoo.interpret(model, record).labels.tolist() == y[5:].tolist()  # a record: its test part
    held = cnnzoo.data.image_folder(folder, image_size=(SIZE, SIZE), validation_split=0.5, seed=0)
    part = cnnzoo.interpret(model, held)  # an ImageFolder: its validation images, in their order
    assert len(part.labels) == held.num_validation and list(part.sources) == [str(f) for f in held.validation_files]
    with pytest.raises(DataError, match="`data` must be .*Received: data of type int"):
        cnnzoo.interpret(model, 3)


def test_folder_classes_are_matched_by_name(trained, tmp_path):
    model, folder = trained
    x, y = brightness_blobs(6, 3, seed=4, size=SIZE)
    only_light = write_folder(tmp_path / "light_only", x[y == 2], np.zeros(2, int), names=("light",))
    interp = cnnzoo.interpret(model, only_light)  # one sub-folder: label 0 of the folder is the model's "light"
    assert interp.labels.tolist() == [2, 2] and interp.confusion_matrix[2].sum() == 2
    strange = write_folder(tmp_path / "strange", x[:2], np.array([0, 1]), names=("dark", "purple"))
    with pytest.raises(DataError, match=r"`data` classes must be among the model's classes .*\['purple'\] are not"):
        cnnzoo.interpret(model, strange)


def test_errors_name_the_argument(trained, tmp_path):
    model, folder = trained
    with pytest.raises(DataNotFoundError, match=r"`data` as a path must be an existing folder.*does not exist"):
        cnnzoo.interpret(model, tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"`num_classes` must be None or the model's number of classes \(3\)"):
        cnnzoo.evaluate(model, folder, 5)
    x, y = brightness_blobs(4, 3, seed=5, size=SIZE)
    with pytest.raises(DataError, match=r"`data` labels must be class indices of the model, 0 to 2. Received: label 7"):
        cnnzoo.interpret(model, (x, np.array([0, 1, 7, 2])))
    x, y = brightness_blobs(8, 3, seed=5, size=SIZE)
    interp = cnnzoo.interpret(model, (x, y), keep=2)  # 2 losses, 2 right answers at most
    assert len(interp.images) <= 4
    with pytest.raises(ConfigError, match=r"`k` must be at most the \d images `interpret` kept .*keep=8"):
        interp.plot_top_losses(8, tmp_path / "t.png")
    assert not (tmp_path / "t.png").exists()
    with pytest.raises(ConfigError, match="`keep` must be"):
        cnnzoo.interpret(model, (x, y), keep=-1)


def test_examples_are_the_worst_mistakes_taking_turns_across_classes(trained):
    model, _ = trained
    # 12 images: class 0 has three mistakes (losses ~2.3, 1.6, 0.9), class 1 one (~1.2), class 2 none
    p = np.full((12, 3), 0.05, np.float32)
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    right_p = {0: 0.9, 4: 0.9, 6: 0.9, 7: 0.9, 8: 0.9, 9: 0.9, 10: 0.9, 11: 0.9}
    for i, q in right_p.items():
        p[i, labels[i]] = q
    for i, (q_true, other) in {1: (0.1, 2), 2: (0.2, 1), 3: (0.4, 1), 5: (0.3, 0)}.items():
        p[i, labels[i]], p[i, other] = q_true, 0.85
    images = {i: np.zeros((SIZE, SIZE, 3), np.float32) for i in range(12)}
    interp = Interpretation(model, p, labels, CLASSES, images, None, "12 made-up images")
    right, wrong = interp.examples(6)
    assert wrong.tolist() == [1, 5, 2, 3][:4] and right.tolist() == [0, 6]  # class 1's mistake before class 0's next
    right, wrong = interp.examples(8)  # room for all four mistakes, the rest right, one class after another
    assert wrong.tolist() == [1, 5, 2, 3] and right.tolist() == [0, 6, 8, 4]
    few = Interpretation(model, p, labels, CLASSES, {i: images[i] for i in (0, 1, 5)}, None, "kept")
    assert [a.tolist() for a in few.examples(8)] == [[0], [1, 5]]  # only kept images count
