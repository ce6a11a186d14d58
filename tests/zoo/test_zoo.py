"""Registry-driven tests: zoo entries are built, run, saved and reloaded.

The tiering rule: every entry is built and counted (the keras.applications family members beside
keras' own model, without allocating their weights, in tests/zoo/test_families.py); the smallest
member of each family builds its feature pyramid (tests/zoo/test_feature_pyramid.py); the
expensive steps here (a forward pass, save and reload, in this process and in a fresh one) run for
every entry that is not a keras.applications family member, and for the smallest family member of
all (MobileNetV3-Small): the members are one nested keras.applications model under the same
`preprocess` and `head` layers, so a save that works for one works for all, and saving each of
them (NASNet's 770 layers, Inception-ResNet-v2's 55M parameters) would cost minutes.
"""

import json
import subprocess

import numpy as np
import pytest

import cnnzoo
from cnnzoo.zoo import builders, stats
from conftest import PYTHON, REPO

ALL = cnnzoo.list_models()
SPECS = {n: cnnzoo.spec(n) for n in ALL}
MEMBERS = [n for n in ALL if SPECS[n].family and SPECS[n].backbone is not None]  # keras.applications families
TIER = sorted(
    [n for n in ALL if n not in MEMBERS] + [min(MEMBERS, key=lambda n: SPECS[n].backbone.params)]
)  # the rule: the module docstring


def small_shape(name):
    spec = cnnzoo.spec(name)
    side = max(stats.min_input_size(spec), 32)
    return (side, side, spec.input_shape[2])


def test_zoo_has_the_promised_entries():
    promised = {
        "bird_classifier",
        "lenet5",
        "alexnet",
        "vgg11",
        "vgg13",
        "vgg16",
        "vgg19",
        "tiny_vgg",
        "mnist_cnn",
        "cifar10_cnn",
        "digits_cnn",
    }
    assert promised <= set(ALL)
    assert len([n for n in ALL if cnnzoo.spec(n).kind == "backbone"]) >= 2
    for name in ALL:
        spec = cnnzoo.spec(name)
        assert spec.description and spec.reference, name


@pytest.mark.parametrize("name", TIER)
def test_build_run_save_load(name, tmp_path, rng):
    shape = small_shape(name)
    model = cnnzoo.get(name, num_classes=3, input_shape=shape)
    assert model.__class__.__name__ == "Functional"
    assert model.name == name
    assert [layer.name for layer in model.layers][:2] == ["image", "preprocess"]
    assert model.layers[-1].name == "head"
    x = rng.uniform(0, 255, size=(2, *shape)).astype("float32")
    probs = model.predict(x, verbose=0)
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # The arithmetic of `cnnzoo info` equals what Keras builds.
    info = cnnzoo.info(name, input_shape=shape, num_classes=3)
    assert info.params == model.count_params()
    if cnnzoo.spec(name).kind != "backbone":  # backbone FLOPs away from the default input are scaled estimates
        assert info.flops == builders.model_flops(model)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = cnnzoo.load(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), probs, rtol=1e-5, atol=1e-6)
    assert loaded.get_layer("head").class_names is None


@pytest.fixture(scope="module")
def saved_zoo(tmp_path_factory):
    """Every entry saved once, with inputs and expected outputs, for the fresh-process test."""
    root = tmp_path_factory.mktemp("zoo")
    rng = np.random.default_rng(1)
    cases = []
    for name in TIER:
        shape = small_shape(name)
        model = cnnzoo.get(name, input_shape=shape, class_names=["cat", "dog"])
        x = rng.uniform(0, 255, size=(2, *shape)).astype("float32")
        np.save(root / f"{name}_x.npy", x)
        np.save(root / f"{name}_y.npy", np.asarray(model(x, training=False)))  # no predict loop to trace
        model.save(root / f"{name}.keras")
        cases.append(name)
    return root, cases


def test_every_entry_loads_in_a_fresh_process(saved_zoo):
    """`import cnnzoo` is all a new process needs: plain keras.saving.load_model works too."""
    root, cases = saved_zoo
    script = f"""
import json, sys, numpy as np
import cnnzoo
assert "tensorflow" not in sys.modules
import keras
from cnnzoo.zoo.layers import class_names_of
out = {{}}
for name in {cases!r}:
    x = np.load(r"{root}/" + name + "_x.npy"); y = np.load(r"{root}/" + name + "_y.npy")
    a = keras.saving.load_model(r"{root}/" + name + ".keras", compile=False)
    b = cnnzoo.load(r"{root}/" + name + ".keras")
    # called directly: the loaded layers are under test, not `predict`'s loop (traced once per model otherwise)
    out[name] = [float(np.abs(np.asarray(a(x, training=False)) - y).max()),
                 float(np.abs(np.asarray(b(x, training=False)) - y).max()), class_names_of(b)]
print(json.dumps(out))
"""
    proc = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(result) == sorted(cases)
    for name, (err_plain, err_cnnzoo, labels) in result.items():
        assert err_plain < 1e-5 and err_cnnzoo < 1e-5, name
        assert labels == ["cat", "dog"], name


@pytest.mark.parametrize(
    "name, params",
    [
        ("lenet5", 61_706),
        ("alexnet", 61_100_840),
        ("vgg16", 138_357_544),
        ("vgg19", 143_667_240),
    ],
)
def test_reference_parameter_counts(name, params):
    assert cnnzoo.info(name).params == params
    model = cnnzoo.get(name, compile=False)  # reference shape and classes: build only, no forward pass
    assert model.count_params() == params


def test_default_flops_equal_keras_layer_arithmetic():
    for name in ("lenet5", "alexnet", "bird_classifier", "digits_cnn", "tiny_vgg"):
        assert cnnzoo.info(name).flops == builders.model_flops(cnnzoo.get(name, compile=False)), name
    assert cnnzoo.info("vgg16").flops == 30_940_528_640  # the well-known 15.5 GMACs


@pytest.mark.parametrize("name", [n for n in ALL if cnnzoo.spec(n).kind == "backbone" and not cnnzoo.spec(n).family])
def test_backbone_cached_numbers_are_true(name):
    """The family members' cached numbers: tests/zoo/test_families.py, built without allocating weights."""
    spec = cnnzoo.spec(name)
    base = builders.backbone_model(spec)
    assert base.count_params() == spec.backbone.params
    assert builders.model_flops(base) == spec.backbone.flops
    assert base.output.shape[-1] == spec.backbone.channels
    assert spec.input_shape[0] // base.output.shape[1] == spec.backbone.reduction
    model = cnnzoo.get(name, compile=False)
    assert model.count_params() == cnnzoo.info(name).params


def test_vgg16_weights_interchange_with_keras_applications(rng):
    import keras

    ours = cnnzoo.get("vgg16", compile=False)
    ref = keras.applications.VGG16(weights=None)
    ours_shapes = [tuple(w.shape) for w in ours.weights]
    assert ours_shapes == [tuple(w.shape) for w in ref.weights]
    ref_conv = [layer.name for layer in ref.layers if layer.weights]
    ours_conv = [sub.name for layer in ours.layers for sub in getattr(layer, "steps", []) if sub.weights]
    assert ours_conv == ref_conv  # block1_conv1 ... fc1, fc2, predictions
    x = rng.uniform(0, 255, size=(1, 224, 224, 3)).astype("float32")
    ref.set_weights(ours.get_weights())  # ours -> keras
    expected = ref.predict(keras.applications.vgg16.preprocess_input(x.copy()), verbose=0)
    np.testing.assert_allclose(ours.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-6)
    other = keras.applications.VGG16(weights=None)  # keras -> ours
    ours.set_weights(other.get_weights())
    np.testing.assert_allclose(
        ours.predict(x, verbose=0),
        other.predict(keras.applications.vgg16.preprocess_input(x.copy()), verbose=0),
        rtol=1e-4,
        atol=1e-6,
    )
