"""Presets: `cnnzoo.save_preset` writes keras-hub's layout, `cnnzoo.get`/`load`/`finetune` read it back, and
keras-hub image classifier and backbone presets written by keras-hub's own `save_to_preset` become zoo models."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import cnnzoo
from cnnzoo.errors import (
    ConfigError,
    IntegrityError,
    MissingExtraError,
    UnsafeModelError,
    WeightsError,
    WeightsNotFoundError,
)
from cnnzoo.finetuning import freezing
from cnnzoo.zoo import presets
from conftest import PYTHON, REPO

KERAS_HUB_METADATA = {"keras_version", "keras_hub_version", "parameter_count", "date_saved", "tasks"}
SIZE = 16  # the tiny keras-hub ResNet's input


def _listing(path):
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*"))


@pytest.fixture(scope="module")
def digits_preset(tmp_path_factory):
    """The shipped digits_cnn weights, saved as a preset; `(directory, model)`."""
    model = cnnzoo.get("digits_cnn", weights="digits")
    return cnnzoo.save_preset(model, tmp_path_factory.mktemp("presets") / "digits"), model


def _tiny_resnet(keras_hub):
    """A randomly initialised ResNet with few filters (keras-hub fixes the first stack at 64)."""
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        image_shape=(SIZE, SIZE, 3),
    )


@pytest.fixture(scope="module")
def keras_hub_presets(tmp_path_factory):
    """A 4-class ResNetImageClassifier preset (with its image converter) and a ResNetBackbone preset, both
    written by keras-hub's own `save_to_preset`; `(classifier_dir, backbone_dir, classifier)`."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("keras_hub")
    converter = keras_hub.layers.ResNetImageConverter(image_size=(SIZE, SIZE), scale=1 / 255)
    preprocessor = keras_hub.models.ResNetImageClassifierPreprocessor(image_converter=converter)
    classifier = keras_hub.models.ResNetImageClassifier(
        backbone=_tiny_resnet(keras_hub), num_classes=4, preprocessor=preprocessor
    )
    classifier.save_to_preset(str(root / "resnet_classifier"))
    _tiny_resnet(keras_hub).save_to_preset(str(root / "resnet_backbone"))
    return root / "resnet_classifier", root / "resnet_backbone", classifier


def test_save_preset_writes_keras_hubs_layout_and_loads_back(digits_preset, tmp_path):
    import keras
    import keras_hub

    path, model = digits_preset
    assert _listing(path) == [
        "config.json",
        "image_converter.json",
        "metadata.json",
        "model.weights.h5",
        "model.weights.h5.sha256",  # its SHA-256 (sha256sum format), checked before the weights load
    ]
    metadata = json.loads((path / "metadata.json").read_text())
    assert KERAS_HUB_METADATA <= set(metadata)
    assert metadata["parameter_count"] == model.count_params() and metadata["tasks"] == ["ImageClassifier"]
    assert metadata["cnnzoo_version"] == presets.CNNZOO_VERSION == cnnzoo.__version__
    assert metadata["class_names"] == [str(i) for i in range(10)] and metadata["preprocessing"] == "rescale_0_1"
    assert metadata["input_shape"] == [8, 8, 1] and metadata["num_classes"] == 10
    x = cnnzoo.data.digits().x_test[:32]
    expected = model.predict(x, verbose=0)
    built, loaded = cnnzoo.get(path), cnnzoo.load(str(path))
    for again in (built, loaded):
        np.testing.assert_array_equal(again.predict(x, verbose=0), expected)
        assert again.name == "digits_cnn" and again.get_layer("head").class_names == metadata["class_names"]
    assert built.compiled and loaded.compiled and loaded.optimizer.__class__.__name__ == "Adam"  # as saved
    assert not cnnzoo.load(path, compile=False).compiled
    assert cnnzoo.get(path, dtype="mixed_bfloat16").get_layer("head").dtype_policy.name == "mixed_bfloat16"
    # keras-hub reads the preprocessing file: its ImageConverter resizes a raw image to the model's input
    converter = keras.saving.deserialize_keras_object(json.loads((path / "image_converter.json").read_text()))
    assert isinstance(converter, keras_hub.layers.ImageConverter)
    assert tuple(converter(np.zeros((1, 20, 30, 1), "float32")).shape) == (1, 8, 8, 1)
    # keras_hub.upload_preset validates the directory before it uploads; an unknown URI stops it right after
    with pytest.raises(ValueError, match="Unknown URI"):
        keras_hub.upload_preset("local://nowhere", str(path))
    # saving again replaces the preset; the predictions follow the new weights
    again = shutil.copytree(path, tmp_path / "again")
    cnnzoo.save_preset(cnnzoo.get("digits_cnn"), again)
    assert _listing(again) == _listing(path)
    assert not np.array_equal(cnnzoo.get(again).predict(x, verbose=0), expected)


def _broken(path, tmp_path, name, change):
    broken = shutil.copytree(path, tmp_path / name)
    change(broken)
    return broken


def test_a_flipped_byte_in_a_presets_weights_is_an_integrity_error_naming_the_file(digits_preset, tmp_path):
    path, _ = digits_preset
    check = subprocess.run(["sha256sum", "-c", "model.weights.h5.sha256"], cwd=path, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr  # the sidecar is sha256sum's own format
    damaged = shutil.copytree(path, tmp_path / "digits")
    weights = damaged / presets.WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, in the middle of the arrays: HDF5 alone would load it silently
    weights.write_bytes(bytes(data))
    for load in (cnnzoo.load, cnnzoo.get):
        with pytest.raises(IntegrityError) as caught:
            load(damaged)
        message = str(caught.value)
        assert str(weights) in message and "damaged" in message and "cnnzoo.save_preset" in message, message
    assert cnnzoo.load(path).name == "digits_cnn"  # the intact preset still loads


def test_bad_preset_directories_are_clear_errors_and_write_nothing(digits_preset, tmp_path):
    import keras_hub

    path, _ = digits_preset
    lenet = tmp_path / "lenet.weights.h5"
    cnnzoo.get("lenet5").save_weights(lenet)
    cases = [
        ("no_config", lambda d: (d / "config.json").unlink(), WeightsNotFoundError, "it has no config.json"),
        ("no_weights", lambda d: (d / "model.weights.h5").unlink(), WeightsNotFoundError, "model.weights.h5 is miss"),
        (  # copied by hand, without its sidecar (with it, the sidecar refuses it first: IntegrityError)
            "other_weights",
            lambda d: (shutil.copy(lenet, d / "model.weights.h5"), (d / "model.weights.h5.sha256").unlink()),
            WeightsError,
            "does not match its",
        ),
        ("bad_json", lambda d: (d / "config.json").write_text("{"), ConfigError, "cannot be read as JSON"),
        (
            "timm_metadata",
            lambda d: (d / "metadata.json").write_text(json.dumps({"library": "timm", "version": "1.0"})),
            ConfigError,
            "written by another library",
        ),
        (
            "transformers",
            lambda d: (d / "config.json").write_text(json.dumps({"model_type": "vit"})),
            ConfigError,
            "Transformers config",
        ),
    ]
    for name, change, error, message in cases:
        broken = _broken(path, tmp_path, name, change)
        before = _listing(broken)
        for load in (cnnzoo.get, cnnzoo.load):
            with pytest.raises(error, match=message) as raised:
                load(broken)
            assert "`" in str(raised.value) and "Received:" in str(raised.value), str(raised.value)
        assert _listing(broken) == before, name
    with pytest.raises(FileNotFoundError, match="weights file is missing"):  # keras-hub's own check agrees
        keras_hub.upload_preset("local://nowhere", str(tmp_path / "no_weights"))
    with pytest.raises(WeightsNotFoundError, match="names no preset directory"):
        cnnzoo.get(tmp_path / "missing")
    with pytest.raises(ConfigError, match="`num_classes` must be the preset's 10"):
        cnnzoo.get(path, num_classes=3)
    with pytest.raises(ConfigError, match="`input_shape` must be the preset's"):
        cnnzoo.get(path, input_shape=(16, 16, 1))
    with pytest.raises(ConfigError, match="apply to zoo names only"):
        cnnzoo.get(path, weights="digits")
    with pytest.raises(ConfigError, match="apply to zoo names only"):
        cnnzoo.get(path, dropout=0.1)


def test_save_preset_refuses_bad_input_and_writes_nothing(tmp_path):
    import keras

    with pytest.raises(ConfigError, match="`model` must be a keras.Model"):
        cnnzoo.save_preset("digits_cnn", tmp_path / "a")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="`preset_dir` must be a new or empty directory"):
        cnnzoo.save_preset(cnnzoo.get("lenet5"), busy)
    with pytest.raises(ConfigError, match="which is a file"):
        cnnzoo.save_preset(cnnzoo.get("lenet5"), busy / "notes.txt")
    inputs = keras.Input((8, 8, 1))
    code = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs))
    with pytest.raises(UnsafeModelError, match="Lambda"):
        cnnzoo.save_preset(code, tmp_path / "code")
    anysize = keras.Input((None, None, 3))
    flexible = keras.Model(anysize, keras.layers.GlobalAveragePooling2D()(anysize))
    with pytest.raises(ConfigError, match="fixed-size image input"):
        cnnzoo.save_preset(flexible, tmp_path / "flexible")
    assert _listing(tmp_path) == ["busy", "busy/notes.txt"]


def test_a_keras_hub_classifier_preset_predicts_as_keras_hub_does(keras_hub_presets, rng):
    import keras

    classifier_dir, _, classifier = keras_hub_presets
    model = cnnzoo.get(classifier_dir)
    assert [layer.name for layer in model.layers] == ["image", "preprocess", "res_net_backbone", "head"]
    assert model.name == "resnet_classifier" and model.compiled and model.output_shape == (None, 4)
    assert model.get_layer("preprocess").mode == "rescale_0_1"  # the preset's converter: scale=1/255
    assert freezing.anatomy(model).unit_names == ["stem", "stack0_block0", "stack1_block0"]  # what stages unfreeze
    x = rng.uniform(0, 255, (6, SIZE, SIZE, 3)).astype("float32")
    logits = classifier.predict(x, verbose=0)  # keras-hub's preprocessor rescales, its head gives logits
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(logits))
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-6)
    np.testing.assert_allclose(cnnzoo.load(classifier_dir).predict(x, verbose=0), expected, atol=1e-6)
    wider = cnnzoo.get(classifier_dir, num_classes=7, input_shape=(24, 24, 3))  # a new head, a bigger input
    assert wider.output_shape == (None, 7) and wider.input_shape == (None, 24, 24, 3)


def test_a_keras_hub_backbone_preset_fine_tunes_on_the_digits(keras_hub_presets, tmp_path):
    _, backbone_dir, _ = keras_hub_presets
    with pytest.raises(ConfigError, match="`num_classes` must be given for a keras-hub backbone preset"):
        cnnzoo.get(backbone_dir)
    assert cnnzoo.get(backbone_dir, num_classes=10).output_shape == (None, 10)
    digits = cnnzoo.data.digits()
    # cnnzoo's recipe, 2 epochs; this backbone is random, so it trains as from scratch (BatchNorm learning)
    result = cnnzoo.finetune(
        str(backbone_dir), digits, epochs=2, pretrained=False, out=tmp_path / "run", plots=False, verbose=0
    )
    assert result.model.name == "resnet_backbone" and result.model.output_shape == (None, 10)
    assert result.best_val_accuracy > 0.5  # 10 classes: chance is 0.1 (0.85 measured)
    labels = [p.label for p in cnnzoo.predict(result.model_path, digits.x_test[:60])]
    assert np.mean(np.array(labels) == digits.y_test[:60].astype(str)) > 0.5
    # the fine-tuned model (a keras-hub backbone inside) saves as a cnnzoo preset and loads again
    preset = cnnzoo.save_preset(result.model, tmp_path / "tuned")
    x = cnnzoo.data.digits(image_size=(SIZE, SIZE), channels=3).x_test[:16]
    np.testing.assert_allclose(cnnzoo.load(preset).predict(x, verbose=0), result.model.predict(x, verbose=0))


@pytest.mark.filterwarnings("ignore:Skipping nested container")  # Keras, reading the mismatched weights
def test_keras_hub_presets_of_other_tasks_and_a_missing_extra_are_named(
    keras_hub_presets, digits_preset, tmp_path, monkeypatch
):
    classifier_dir, backbone_dir, _ = keras_hub_presets
    mismatched = shutil.copytree(backbone_dir, tmp_path / "mismatched")
    shutil.copy(digits_preset[0] / "model.weights.h5", mismatched / "model.weights.h5")
    with pytest.raises(WeightsError, match="keras-hub cannot load.*Check that its weights belong to its config"):
        cnnzoo.get(mismatched, num_classes=3)
    assert _listing(mismatched) == _listing(backbone_dir)
    text = shutil.copytree(classifier_dir, tmp_path / "text")
    task = json.loads((text / "task.json").read_text())
    task.update(class_name="BertTextClassifier", registered_name="keras_hub>BertTextClassifier")
    (text / "task.json").write_text(json.dumps(task))
    with pytest.raises(ConfigError, match="must be a keras-hub image classifier or backbone preset"):
        cnnzoo.get(text)
    monkeypatch.setitem(sys.modules, "keras_hub", None)  # import keras_hub -> ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'cnnzoo\[keras_hub\]'"):
        cnnzoo.get(classifier_dir)


def test_importing_cnnzoo_imports_neither_hub_library():
    """`import cnnzoo` loads neither (nor TensorFlow), and the preset modules import them only inside the functions
    that read a hub handle or a keras-hub preset. (Keras itself imports huggingface_hub when it is installed:
    `keras.saving` reads `hf://` paths.)"""
    import ast

    light = "import sys, cnnzoo; assert not {'tensorflow', 'huggingface_hub', 'keras_hub'} & set(sys.modules)"
    proc = subprocess.run([PYTHON, "-c", light], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for module in ("presets", "hub", "kerashub"):
        tree = ast.parse((REPO / "cnnzoo" / "zoo" / f"{module}.py").read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = [a.name for n in top for a in n.names] + [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.split(".")[0] in ("huggingface_hub", "keras_hub")], (module, names)
