"""`cnnzoo.explain.receptive_fields`: by name or spec (no TensorFlow), and from a built model's layers."""

import subprocess

import numpy as np
import pytest

from cnnzoo.errors import ConfigError
from cnnzoo.explain.receptive import ReceptiveField, receptive_fields
from cnnzoo.zoo import registry, stats
from conftest import PYTHON, REPO

CNN_ENTRIES = [n for n in registry.list_models() if registry.spec(n).kind == "cnn"]


def test_by_name_and_spec_without_tensorflow():
    script = (
        "import sys\nfrom cnnzoo.explain.receptive import receptive_fields\n"
        "f = receptive_fields('vgg16')\n"
        "print(f['block5_conv3'].size, f['block5_pool'].size, f['block5_pool'].jump,"
        " [m for m in ('tensorflow', 'keras') if m in sys.modules])\n"
    )
    proc = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["196", "212", "32", "[]"]
    spec = registry.spec("lenet5")
    assert receptive_fields(spec) == stats.receptive_fields(spec)
    from cnnzoo import explain

    assert explain.receptive_fields("lenet5") == stats.receptive_fields(spec)  # the public name
    assert receptive_fields("lenet5", input_shape=(64, 64, 1))["flatten"].size == 64


def test_wrong_arguments_say_what_they_take():
    with pytest.raises(ConfigError, match="`model` must be"):
        receptive_fields(3)
    with pytest.raises(KeyError, match="lenet5"):
        receptive_fields("lenet")


def test_the_old_name_or_model_keyword_warns_naming_model_and_still_works():
    with pytest.warns(
        DeprecationWarning, match=r"`receptive_fields\(name_or_model=\.\.\.\)` is deprecated.*use `model=`"
    ):
        assert receptive_fields(name_or_model="lenet5") == receptive_fields("lenet5")


@pytest.mark.parametrize("name", CNN_ENTRIES)
def test_a_built_zoo_model_gives_the_arithmetic_of_its_config(name):
    import cnnzoo

    spec = registry.spec(name)
    side = max(stats.min_input_size(spec), 33)
    shape = (side + 3, side, spec.input_shape[2])
    model = cnnzoo.get(name, input_shape=shape, num_classes=2, compile=False)
    assert receptive_fields(model) == stats.receptive_fields(spec, shape)


def test_a_saved_model_and_its_input_shape(tmp_path):
    import cnnzoo

    model = cnnzoo.get("digits_cnn", compile=False)
    model.save(tmp_path / "d.keras")
    assert receptive_fields(cnnzoo.load(tmp_path / "d.keras")) == stats.receptive_fields(registry.spec("digits_cnn"))
    with pytest.raises(ConfigError, match="`input_shape` applies"):
        receptive_fields(model, input_shape=(8, 8, 1))


def _nonzero_extent(model, layer_output, x):
    import keras
    import tensorflow as tf

    probe = keras.Model(model.inputs, layer_output)
    x = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = probe(x, training=False)
        unit = y[0, (y.shape[1] - 1) // 2, (y.shape[2] - 1) // 2, 0]
    seen = np.abs(tape.gradient(unit, x).numpy()[0]).sum(-1) > 0
    rows, cols = np.flatnonzero(seen.any(1)), np.flatnonzero(seen.any(0))
    return (rows[0], rows[-1]), (cols[0], cols[-1]), y.shape[1:3]


def _window(field, out_hw, in_hw):
    out = []
    for a in (0, 1):
        centre = field.start[a] + (out_hw[a] - 1) // 2 * field.jump
        out.append((max(0, int(centre - (field.size - 1) / 2)), min(in_hw[a] - 1, int(centre + (field.size - 1) / 2))))
    return tuple(out)


def test_a_plain_keras_graph_with_branches_dilation_and_padding():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((41, 38, 2))
    x = keras.layers.ZeroPadding2D(((2, 0), (1, 1)), name="pad")(inputs)
    x = keras.layers.Conv2D(3, 3, strides=2, name="c1")(x)
    a = keras.layers.Conv2D(3, 3, padding="same", dilation_rate=2, name="dilated")(x)
    b = keras.layers.Conv2D(3, 1, name="one")(x)
    x = keras.layers.Add(name="add")([a, b])
    x = keras.layers.AveragePooling2D(2, name="pool")(x)
    x = keras.layers.DepthwiseConv2D(5, padding="same", name="dw")(x)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D(name="gap")(x))
    model = keras.Model(inputs, outputs)
    fields = receptive_fields(model)
    assert fields["c1"] == ReceptiveField(3, 2, (-1.0, 0.0))  # the padding moves the start up and left
    assert fields["dilated"].size == 11 and fields["add"].size == 11 and fields["pool"].size == 13
    assert fields["gap"] == ReceptiveField(41)
    x = np.random.default_rng(0).normal(size=(1, 41, 38, 2))
    for name in ("c1", "dilated", "add", "pool", "dw"):
        rows, cols, out_hw = _nonzero_extent(model, model.get_layer(name).output, x)
        assert (rows, cols) == _window(fields[name], out_hw, (41, 38)), name


def test_a_keras_applications_backbone_inside_a_zoo_model():
    import cnnzoo

    model = cnnzoo.get("bird_classifier_mobilenetv2", input_shape=(96, 96, 3), num_classes=2, compile=False)
    fields = receptive_fields(model)
    # MobileNetV2 (alpha 1.0): 491 px at its last feature map (Araujo et al. 2019, Distill, table)
    assert fields["backbone"] == fields["backbone/Conv_1_bn"] and fields["backbone"].size == 491
    assert fields["backbone"].jump == 32 and fields["global_avg_pool"].whole
    backbone = model.get_layer("backbone")
    x = np.random.default_rng(0).uniform(-1, 1, size=(1, 96, 96, 3))
    for name in ("block_1_project_BN", "block_2_add", "block_5_add"):
        rows, cols, out_hw = _nonzero_extent(backbone, backbone.get_layer(name).output, x)
        want = _window(fields[f"backbone/{name}"], out_hw, (96, 96))
        assert want[0][0] <= rows[0] <= rows[1] <= want[0][1] and want[1][0] <= cols[0] <= cols[1] <= want[1][1], name
