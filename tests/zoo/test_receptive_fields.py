"""Receptive fields by arithmetic (`cnnzoo.zoo.stats`) against the reference numbers and a brute-force check.

The brute force: build the entry small (two filters per conv, a tiny head) with random weights,
take d(the centre unit of a layer's feature map)/d(input) with `tf.GradientTape` on a random image,
and measure the rows and columns where the gradient is nonzero. Activations are made linear and
max-pools average-pools for it (the same geometry), so that no ReLU or max can zero a gradient
inside the field: the region must then be exactly the computed field, clipped to the image. The
real network (ReLU, max) is checked to stay inside it.
"""

import dataclasses
import json
import math
import subprocess

import numpy as np
import pytest

from cnnzoo.zoo import registry, stats
from conftest import PYTHON, REPO

CNN_ENTRIES = [n for n in registry.list_models() if registry.spec(n).kind == "cnn"]


def test_vgg16_reference_numbers():
    fields = stats.receptive_fields(registry.spec("vgg16"))
    assert fields["block5_conv3"].size == 196 and fields["block5_conv3"].jump == 16
    assert fields["block5_pool"].size == 212 and fields["block5_pool"].jump == 32
    assert fields["block1_conv1"] == stats.ReceptiveField(3, 1, (0.0, 0.0))
    assert fields["block1_pool"] == stats.ReceptiveField(6, 2, (0.5, 0.5))
    assert [f.size for f in fields.values()][:7] == [3, 5, 6, 10, 14, 16, 24]
    # flatten and dense see the whole input
    assert fields["flatten"].whole and fields["fc1"].size == 224 and fields["predictions"].jump is None
    # the size does not depend on the input size
    assert stats.receptive_fields(registry.spec("vgg16"), (64, 64, 3))["block5_pool"].size == 212


def test_rows_match_layer_stats_and_info():
    spec = registry.spec("digits_cnn")
    assert list(stats.receptive_fields(spec)) == [r.name for r in stats.layer_stats(spec)]
    fields = stats.receptive_fields(spec)
    assert fields["block1_bn1"] == fields["block1_conv1"]  # BatchNorm looks at one position
    info = registry.info("vgg16")
    rows = {r["name"]: r["receptive_field"] for r in info.layers}
    assert rows["block5_conv3"] == {"size": 196, "jump": 16, "start": [7.5, 7.5]}
    assert info.receptive_field == 212
    json.dumps(info.to_dict())


def test_backbone_entries_are_unknown_then_whole():
    fields = stats.receptive_fields(registry.spec("bird_classifier_mobilenetv2"))
    assert fields["backbone"] == stats.ReceptiveField()
    assert fields["global_avg_pool"].whole and fields["predictions"].size == 224
    assert registry.info("efficientnetb0_classifier").receptive_field is None


def test_same_padding_with_strides_shifts_the_start():
    # AlexNet's first conv: 11x11, stride 4, "same": TensorFlow pads 3 before, 4 after at 224
    field = stats.receptive_fields(registry.spec("alexnet"))["block1_conv1"]
    assert field == stats.ReceptiveField(11, 4, (2.0, 2.0))
    # the pad depends on the input size: 226 -> 9 in all, 4 before; 225 -> 10, 5 before
    assert stats.receptive_step(stats.ReceptiveField(1, 1, (0.0, 0.0)), (226, 225), 11, 4, "same").start == (1.0, 0.0)
    assert stats.receptive_step(stats.ReceptiveField(), (8, 8), 3, 1, "same") == stats.ReceptiveField()


def test_cnnzoo_info_shows_the_column_without_tensorflow():
    script = (
        "import sys, cnnzoo.cli\n"
        "rc = cnnzoo.cli.main(['info', 'vgg16'])\n"
        "print('heavy:', [m for m in ('tensorflow', 'keras') if m in sys.modules], rc)\n"
    )
    proc = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.strip()}
    assert "RF px" in proc.stdout
    assert lines["block5_conv3"][-2:] == ["196", "16"] and lines["block5_pool"][-2:] == ["212", "32"]
    assert lines["fc1"][-2:] == ["all", "-"]
    assert proc.stdout.strip().endswith("heavy: [] 0")


# ------------------------------------------------------------ brute force


def probe_spec(spec, shape, linear=True):
    """The entry at `shape`, two filters per conv and a tiny head; linear and average-pooled if `linear`."""
    blocks = tuple(
        dataclasses.replace(
            b,
            filters=(2,) * b.convs,
            dropout=0.0,
            activation="linear" if linear else b.activation,
            pool="avg" if linear and b.pool == "max" else b.pool,
        )
        for b in spec.blocks
    )
    return dataclasses.replace(
        spec,
        input_shape=shape,
        num_classes=2,
        class_names=(),
        blocks=blocks,
        head=dataclasses.replace(spec.head, dense=(), dropout=0.0),
        weights={},
    )


def gradient_regions(spec, seed=0):
    """{layer: ((row lo, row hi), (col lo, col hi)) of the nonzero gradient of its centre unit, channel 0}."""
    import keras
    import tensorflow as tf

    from cnnzoo.zoo.builders import build

    keras.utils.set_random_seed(seed)
    model = build(spec)
    h, w, c = spec.input_shape
    x = tf.constant(np.random.default_rng(seed).uniform(0, 255, (1, h, w, c)), tf.float32)
    units = {}
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = model.get_layer("preprocess")(x)
        for i in range(1, len(spec.blocks) + 1):
            for step in model.get_layer(f"block{i}").steps:
                y = step(y, training=False) if "bn" in step.name else step(y)
                oh, ow = y.shape[1:3]
                units[step.name] = y[0, (oh - 1) // 2, (ow - 1) // 2, 0]
    regions = {}
    for name, unit in units.items():
        seen = np.abs(tape.gradient(unit, x).numpy()[0]).sum(-1) > 0
        rows, cols = np.flatnonzero(seen.any(1)), np.flatnonzero(seen.any(0))
        regions[name] = None if not rows.size else ((rows[0], rows[-1]), (cols[0], cols[-1]))
    return regions


def expected_region(field, output_shape, input_hw):
    """The computed field of the centre unit, clipped to the image."""
    out = []
    for axis in (0, 1):
        centre = field.start[axis] + (output_shape[axis] - 1) // 2 * field.jump
        lo, hi = centre - (field.size - 1) / 2, centre + (field.size - 1) / 2
        assert lo == math.floor(lo) and hi == math.floor(hi), (lo, hi)  # a field covers whole pixels
        out.append((max(0, int(lo)), min(input_hw[axis] - 1, int(hi))))
    return tuple(out)


def sizes_for(spec):
    m = max(stats.min_input_size(spec), 33)
    return [(m, m), (m + 9, m + 6)]  # square and not, odd and even: "same" pads differ


@pytest.mark.parametrize("name", CNN_ENTRIES)
def test_arithmetic_equals_brute_force_gradients(name):
    spec = registry.spec(name)
    checked = 0
    for h, w in sizes_for(spec):
        probe = probe_spec(spec, (h, w, spec.input_shape[2]))
        regions = gradient_regions(probe)
        rows = {r.name: r for r in stats.layer_stats(probe)}
        for layer, region in regions.items():
            if layer not in rows:
                continue  # activations, dropout: not rows
            want = expected_region(rows[layer].receptive_field, rows[layer].output_shape, (h, w))
            assert region == want, (
                f"{name} at {h}x{w}, {layer}: gradient covers rows/cols {region}, the "
                f"arithmetic says {want} ({rows[layer].receptive_field})"
            )
            checked += 1
    assert checked >= 2 * len([r for r in rows.values() if len(r.output_shape) == 3])


@pytest.mark.parametrize("name", ["vgg16", "alexnet", "lenet5"])
def test_the_real_network_stays_inside_the_field(name):
    spec = registry.spec(name)
    h, w = sizes_for(spec)[1]
    probe = probe_spec(spec, (h, w, spec.input_shape[2]), linear=False)
    rows = {r.name: r for r in stats.layer_stats(probe)}
    for layer, region in gradient_regions(probe, seed=1).items():
        if layer in rows and region is not None:
            want = expected_region(rows[layer].receptive_field, rows[layer].output_shape, (h, w))
            assert want[0][0] <= region[0][0] <= region[0][1] <= want[0][1], (layer, region, want)
            assert want[1][0] <= region[1][0] <= region[1][1] <= want[1][1], (layer, region, want)
