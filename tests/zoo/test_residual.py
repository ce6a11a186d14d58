"""Residual networks as data (`[[stages]]`): the ResNet entries against their published numbers.

ResNet-18/34 match torchvision's parameter counts (11,689,512 and 21,797,672: weights and the
BatchNorm scale and shift, the trainable parameters; Keras also counts each BatchNorm's moving
mean and variance, 2 per channel) and its FLOPs (1.81 and 3.66 GMACs). ResNet-20 with the
zero-padding shortcuts of He et al. (option A) has their 0.27M parameters: 269,722. The
receptive field of a residual block is the union of its two paths, which is the main branch's;
the arithmetic is checked against the gradient of a centre unit, as for the other entries
(`tests/zoo/test_receptive_fields.py`), here through the nested `stages` model.
"""

import dataclasses
import math
import re

import numpy as np
import pytest

import cnnzoo
from cnnzoo.errors import ConfigError
from cnnzoo.zoo import builders, config, config_writer, registry, stats

RESIDUAL = [n for n in registry.list_models() if registry.spec(n).kind == "residual"]

MINIMAL = """
name = "tiny_resnet"
description = "A tiny residual net."
input_shape = [16, 16, 3]
num_classes = 4

[[blocks]]
filters = 8
batch_norm = true
pool = "none"
"""

# ResNet-50 as torchvision lays it out (v1.5: the stride on the 3x3 conv of the first bottleneck)
RESNET50 = """
name = "resnet50_as_data"
description = "ResNet-50 from bottleneck stages."
input_shape = [224, 224, 3]
num_classes = 1000

[[blocks]]
filters = 64
kernel_size = 7
strides = 2
batch_norm = true
pool_size = 3
pool_strides = 2
pool_padding = "same"

[[stages]]
block = "bottleneck"
blocks = 3
filters = 64

[[stages]]
block = "bottleneck"
blocks = 4
filters = 128
strides = 2

[[stages]]
block = "bottleneck"
blocks = 6
filters = 256
strides = 2

[[stages]]
block = "bottleneck"
blocks = 3
filters = 512
strides = 2

[head]
pooling = "avg"
"""


def trainable(model):
    return sum(math.prod(w.shape) for w in model.trainable_weights)


# ------------------------------------------------------------------ counts


@pytest.mark.parametrize(
    "name, trainable_params, params",
    [
        ("resnet18", 11_689_512, 11_699_112),  # torchvision resnet18
        ("resnet34", 21_797_672, 21_814_696),  # torchvision resnet34
        ("resnet20", 269_722, 271_098),  # He et al. 2015, table 6: 0.27M (option A shortcuts)
    ],
)
def test_parameter_counts_match_the_references(name, trainable_params, params):
    spec = cnnzoo.spec(name)
    assert stats.count_trainable_params(spec) == trainable_params
    assert cnnzoo.info(name).params == stats.count_params(spec) == params
    model = cnnzoo.get(name, compile=False)  # the default shape and classes; build only, no forward pass
    assert trainable(model) == trainable_params and model.count_params() == params
    # the difference is exactly the BatchNorm moving mean and variance
    batchnorm = [w for w in model.non_trainable_weights if "moving" in w.path]
    assert sum(math.prod(w.shape) for w in batchnorm) == params - trainable_params


def test_flops_and_receptive_fields_by_arithmetic():
    # 2 FLOPs per multiply-accumulate: ResNet-18 1.814 GMACs, ResNet-34 3.664 GMACs (torchvision: 1.81, 3.66)
    assert cnnzoo.info("resnet18").flops == 3_628_146_688
    assert cnnzoo.info("resnet34").flops == 7_327_522_816
    assert cnnzoo.info("resnet20").flops == 81_102_080  # 40.6 MMACs at 32x32
    fields = stats.receptive_fields(cnnzoo.spec("resnet18"))
    # stem: 7x7/2 conv 7 px (jump 2), 3x3/2 max-pool 7 + 2*2 = 11 (jump 4). Each 3x3 conv adds 2 jumps; a
    # stage's first conv strides after adding 2 of the old jump: stage1 11 + 4*2*4 = 43; stage2 43 + 2*4 = 51,
    # + 3*2*8 = 99; stage3 99 + 16 + 3*32 = 211; stage4 211 + 32 + 3*64 = 435 px, the published value
    ends = [fields[f"stage{i}_block2_add"] for i in (1, 2, 3, 4)]
    assert [(f.size, f.jump) for f in ends] == [(43, 4), (99, 8), (211, 16), (435, 32)]
    assert cnnzoo.info("resnet18").receptive_field == 435
    assert cnnzoo.info("resnet34").receptive_field == 899  # [3, 4, 6, 3] blocks: 11 + 6*8 + 8 + 7*16 + ...
    assert cnnzoo.info("resnet20").receptive_field == 81  # 3 + 6*2 + 2 + 5*4 + 4 + 5*8
    # the shortcut sees less than the main branch, centred on the same pixel: the union is the main branch
    assert fields["stage2_block1_shortcut_conv"].size < fields["stage2_block1_conv2"].size
    assert fields["stage2_block1_add"] == fields["stage2_block1_conv2"]


def test_bottleneck_stages_give_torchvision_resnet50():
    spec = config.loads(RESNET50)
    assert stats.count_trainable_params(spec) == 25_557_032  # torchvision resnet50
    assert stats.count_flops(spec) == 8_178_368_512  # 4.09 GMACs, as torchvision reports
    assert stats.receptive_fields(spec)["stage4_block3_add"].size == 427
    assert spec.stages[0].out_channels == 256 and spec.stages[3].expansion == 4


def test_the_built_model_agrees_with_the_arithmetic_and_the_explain_walker(rng, tmp_path):
    """A bottleneck net (projection shortcuts) and a zero-padded one, built: counts, FLOPs, fields, save/load."""
    text = (
        MINIMAL + '\n[[stages]]\nblock = "bottleneck"\nblocks = 2\nfilters = 4\n\n'
        '[[stages]]\nblock = "bottleneck"\nblocks = 1\nfilters = 8\nstrides = 2\nexpansion = 2\n'
        '\n[[stages]]\nblocks = 1\nfilters = 32\nstrides = 2\nshortcut = "zero_pad"\n\n[head]\npooling = "avg"\n'
    )
    spec = config.loads(text)
    model = builders.build(spec)
    assert model.count_params() == stats.count_params(spec) and trainable(model) == stats.count_trainable_params(spec)
    assert builders.model_flops(model) == stats.count_flops(spec)
    inner = {layer.name: layer for layer in model.get_layer("stages").layers}
    rows = [r for r in stats.layer_stats(spec) if r.name.startswith("stage")]
    # a row for every layer but the activations (as for conv blocks)
    assert {r.name for r in rows} == {n for n in inner if not n.endswith(("_input", "_out")) and "_act" not in n}
    for row in rows:  # every row is a layer of that name and output shape
        assert tuple(inner[row.name].output.shape[1:]) == row.output_shape, row.name
    walked = cnnzoo.explain.receptive_fields(model)
    for row in stats.layer_stats(spec):
        key = f"stages/{row.name}" if row.name.startswith("stage") else row.name
        if key in walked:
            assert walked[key] == row.receptive_field, row.name
    x = rng.uniform(0, 255, size=(2, 16, 16, 3)).astype("float32")
    probs = model.predict(x, verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    model.save(tmp_path / "tiny.keras")
    np.testing.assert_allclose(cnnzoo.load(tmp_path / "tiny.keras").predict(x, verbose=0), probs, atol=1e-6)


def test_layers_are_named_fine_tuning_counts_blocks_and_grad_cam_reads_the_last_block():
    from cnnzoo.finetuning.freezing import anatomy

    model = cnnzoo.get("resnet18", input_shape=(32, 32, 3), num_classes=3, compile=False)
    assert [layer.name for layer in model.layers] == ["image", "preprocess", "block1", "stages", "head"]
    names = {layer.name for layer in model.get_layer("stages").layers}
    assert {"stage2_block1_pad", "stage2_block1_conv1", "stage2_block1_bn1", "stage2_block1_act1"} <= names
    assert {"stage2_block1_shortcut_conv", "stage2_block1_shortcut_bn", "stage2_block1_add"} <= names
    assert "stage1_block1_shortcut_conv" not in names and "stage4_block2_out" in names  # identity where it can
    units = anatomy(model).unit_names
    assert units == ["block1"] + [f"stage{i}_block{j}" for i in (1, 2, 3, 4) for j in (1, 2)]
    from cnnzoo.explain import taps

    assert taps.default_gradcam_layer(model).name == "stage4_block2_out"  # the last block's output, shortcut added
    assert {"stage1_block1_conv1", "stage4_block2_add"} <= {t.name for t in taps.taps(model)}
    resnet20 = {layer.name for layer in cnnzoo.get("resnet20", compile=False).get_layer("stages").layers}
    assert {"stage2_block1_shortcut_pool", "stage2_block1_shortcut_pad"} <= resnet20
    assert not [n for n in resnet20 if "shortcut_conv" in n]  # option A: no parameters in any shortcut


def test_zero_pad_shortcut_subsamples_and_pads_with_zeros(rng):
    import keras

    from cnnzoo.zoo.layers import ZeroPadChannels

    stages = cnnzoo.get("resnet20", input_shape=(8, 8, 3), compile=False).get_layer("stages")
    pool, pad = stages.get_layer("stage2_block1_shortcut_pool"), stages.get_layer("stage2_block1_shortcut_pad")
    assert pool.input is stages.get_layer("stage1_block3_out").output  # the block's input
    x = rng.normal(size=(1, 8, 8, 16)).astype("float32")
    expected = np.concatenate([x[:, ::2, ::2], np.zeros((1, 4, 4, 16), "float32")], axis=-1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(pad(pool(x))), expected)
    with pytest.raises(ValueError, match="cannot drop"):
        ZeroPadChannels(4)(x)


# ------------------------------------------------------------- brute force


def probe_spec(spec, shape, linear=True):
    """The entry at `shape` with two filters per conv; linear activations and average pools if `linear`."""
    act = lambda a: "linear" if linear else a  # noqa: E731
    blocks = tuple(
        dataclasses.replace(
            b,
            filters=(2,) * b.convs,
            activation=act(b.activation),
            pool="avg" if linear and b.pool == "max" else b.pool,
        )
        for b in spec.blocks
    )
    stages = tuple(dataclasses.replace(s, filters=2, activation=act(s.activation)) for s in spec.stages)
    head = dataclasses.replace(spec.head, dense=(), dropout=0.0)
    return dataclasses.replace(
        spec, input_shape=shape, num_classes=2, class_names=(), blocks=blocks, stages=stages, head=head
    )


def gradient_regions(spec, seed=0):
    """{add layer: ((row lo, row hi), (col lo, col hi)) of the nonzero input gradient of its centre unit}.

    In a `tf.function`, so that only the gradient with respect to the input is computed: TensorFlow
    2.21's eager oneDNN kernel for a filter's gradient crashes on some of these shapes (2 filters, 64x64).
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    model = builders.build(spec)
    stages = model.get_layer("stages")
    names = [layer.name for layer in stages.layers if layer.name.endswith("_add")]
    inner = keras.Model(stages.inputs, [stages.get_layer(n).output for n in names])

    # one backward pass for every unit: copy k of the image feeds unit k (inference mode: copies are independent)
    @tf.function
    def gradients(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = x
            for layer in model.layers[1:-2]:  # preprocess, the conv blocks
                y = layer(y, training=False)
            outs = inner(y, training=False)
            total = sum(o[k, (o.shape[1] - 1) // 2, (o.shape[2] - 1) // 2, 0] for k, o in enumerate(outs))
        return tape.gradient(total, x)

    image = np.random.default_rng(seed).uniform(0, 255, (1, *spec.input_shape))
    grads = gradients(tf.constant(np.repeat(image, len(names), axis=0), tf.float32)).numpy()
    regions = {}
    for name, grad in zip(names, grads):
        seen = np.abs(grad).sum(-1) > 0
        rows, cols = np.flatnonzero(seen.any(1)), np.flatnonzero(seen.any(0))
        regions[name] = ((rows[0], rows[-1]), (cols[0], cols[-1]))
    return regions


def expected_region(row, input_hw):
    """The computed field of the centre unit of `row`, clipped to the image."""
    field, out = row.receptive_field, []
    for axis in (0, 1):
        centre = field.start[axis] + (row.output_shape[axis] - 1) // 2 * field.jump
        lo, hi = centre - (field.size - 1) / 2, centre + (field.size - 1) / 2
        assert lo == math.floor(lo), (row.name, lo)  # a field covers whole pixels
        out.append((max(0, int(lo)), min(input_hw[axis] - 1, int(hi))))
    return tuple(out)


@pytest.mark.parametrize("name", RESIDUAL + ["resnet50_as_data"])
def test_arithmetic_equals_brute_force_gradients(name):
    if name == "resnet50_as_data":  # two bottlenecks per stage: a first (strided, projected) and a later one
        spec = config.loads(RESNET50)
        spec = dataclasses.replace(spec, stages=tuple(dataclasses.replace(s, blocks=2) for s in spec.stages))
    else:
        spec = registry.spec(name)
    for h, w in [(33, 33), (42, 37)]:  # odd and even sides: the strided convs pad alike, "same" does not
        probe = probe_spec(spec, (h, w, spec.input_shape[2]))
        rows = {r.name: r for r in stats.layer_stats(probe)}
        regions = gradient_regions(probe)
        assert len(regions) == sum(s.blocks for s in spec.stages)
        for layer, region in regions.items():
            assert region == expected_region(rows[layer], (h, w)), (name, h, w, layer, rows[layer].receptive_field)


def test_the_real_resnet_stays_inside_the_field():
    probe = probe_spec(registry.spec("resnet18"), (70, 61, 3), linear=False)
    rows = {r.name: r for r in stats.layer_stats(probe)}
    for layer, region in gradient_regions(probe, seed=1).items():
        want = expected_region(rows[layer], (70, 61))
        assert want[0][0] <= region[0][0] <= region[0][1] <= want[0][1], (layer, region, want)
        assert want[1][0] <= region[1][0] <= region[1][1] <= want[1][1], (layer, region, want)


# ------------------------------------------------------------------ config rules


@pytest.mark.parametrize(
    "extra, key, fragment",
    [
        ("[[stages]]\nfilters = 8\nblocks = 1\nstride = 2", "stages[0].stride", "Did you mean `strides`"),
        ("[[stages]]\nfilters = 8\nblocks = 1\nstrides = 0", "stages[0].strides", "Received: strides=0"),
        ("[[stages]]\nfilters = 8\nblocks = 1\nstrides = 4", "stages[0].strides", "<= `kernel_size` (3)"),
        ("[[stages]]\nfilters = 8\nblocks = 1\nstrides = 1.5", "stages[0].strides", "integer >= 1"),
        ("[[stages]]\nfilters = 8\nblocks = 1\nkernel_size = 4", "stages[0].kernel_size", "must be odd"),
        ("[[stages]]\nfilters = 8\nblocks = 1\nexpansion = 4", "stages[0].expansion", "must be 1 for a basic"),
        ("[[stages]]\nfilters = 8\nblocks = 1\nblock = 'bottleneck'\nexpansion = 0", "stages[0].expansion", ">= 1"),
        ("[[stages]]\nfilters = 8\nblocks = 1\nblock = 'bottleneck'\nexpansion = 100", "stages[0].expansion", "<= 64"),
        ("[[stages]]\nfilters = 8\nblocks = 1\nblock = 'bottle'", "stages[0].block", "Did you mean `bottleneck`"),
        ("[[stages]]\nfilters = 8\nblocks = 1\nshortcut = 'zero'", "stages[0].shortcut", "Did you mean `zero_pad`"),
        ("[[stages]]\nfilters = 8", "stages[0].blocks", "is required"),
        ("[[stages]]\nblocks = 2", "stages[0].filters", "is required"),
        ("[[stages]]\nfilters = 8\nblocks = 0", "stages[0].blocks", "Received: blocks=0"),
        (
            "[[stages]]\nfilters = 4\nblocks = 1\nshortcut = 'zero_pad'",
            "stages[0].shortcut",
            "`stages[0].filters` narrows the stage from 8 to 4 channels",
        ),
        ("[search]\nstages = { min = 1, max = 3 }", "search.stages", "has no `[[stages]]`"),
    ],
)
def test_bad_stages_name_the_key(extra, key, fragment):
    with pytest.raises(ConfigError) as err:
        config.loads(MINIMAL + "\n" + extra, "my.toml")
    message = str(err.value)
    assert f"`{key}`" in message and fragment in message and "my.toml" in message and "Received:" in message


BAD = ["x", "", True, 0, -1, 1, 2, 4, 1025, 2**31, 0.5, math.nan, math.inf, [], [1, 2], {}, {"a": 1}]


def test_every_stage_key_with_bad_values_is_a_config_error_or_a_working_spec():

    raw = config.to_dict(cnnzoo.spec("resnet20"))
    outcomes = set()
    for key in [f.name for f in dataclasses.fields(config.ResidualStage)] + ["unknown"]:
        for value in BAD:
            mutated = {**raw, "stages": [dict(t) for t in raw["stages"]]}
            mutated["stages"][1][key] = value
            try:
                spec = config.parse(mutated, "fuzz.toml")
            except ConfigError as e:
                # a stage key, and the mutated key among the keys named (a width that makes the next zero-padded
                # stage narrow names that stage's `filters`; a kernel_size below the stride names both)
                assert re.search(r"`stages\[[12]\]\.\w+`", str(e)) and "Received:" in str(e), (key, value, str(e))
                assert f"{key}`" in str(e), (key, value, str(e))
                outcomes.add("error")
                continue
            rows = stats.layer_stats(spec)  # a spec that parses has working arithmetic
            assert sum(r.params for r in rows) > 0 and rows[-1].output_shape == (10,)
            outcomes.add("spec")
    assert outcomes == {"error", "spec"}


def test_stages_table_rules_and_overrides():
    with pytest.raises(ConfigError, match=r"`stages` must be an array of tables"):
        config.loads(MINIMAL.replace("num_classes = 4", "num_classes = 4\nstages = 3"))
    backbone = MINIMAL.replace("[[blocks]]", "[backbone]\napplication = 'ResNet50'\n\n[[stages]]\nblocks = 1")
    with pytest.raises(ConfigError, match="exactly one of `blocks` and `backbone`"):
        config.loads(backbone)
    stem_less = config.loads(MINIMAL.split("[[blocks]]")[0] + "[[stages]]\nfilters = 8\nblocks = 1\n")
    assert stem_less.kind == "residual" and not stem_less.blocks
    assert config.loads(config_writer.dumps(stem_less)) == stem_less
    spec = cnnzoo.spec("resnet20")
    assert {s.activation for s in spec.replace(activation="swish").stages} == {"swish"}
    smaller = spec.replace(stages=[{"filters": 8, "blocks": 1}, {"filters": 16, "blocks": 1, "strides": 2}])
    assert [(s.filters, s.strides, s.shortcut) for s in smaller.stages] == [(8, 1, "projection"), (16, 2, "projection")]
    with pytest.raises(ConfigError, match="`batch_norm` applies to conv blocks"):
        stem_less.replace(batch_norm=False)


# ------------------------------------------------------------------ training


@pytest.mark.slow
def test_resnet20_trains_from_scratch_on_the_digits(tmp_path):
    """ResNet-20 at the digits' own 8x8 (stages 8x8, 4x4, 2x2), 5 epochs: about 98% held out, 15 s on 2 cores."""
    data = cnnzoo.data.digits(seed=0)
    result = cnnzoo.finetune(
        "resnet20", data, input_shape=(8, 8, 1), epochs=5, augment=False, out=tmp_path / "run", verbose=0, plots=False
    )
    accuracy, _ = cnnzoo.evaluate(result.model, [(data.x_test, data.y_test)], 10)
    assert [str(s.stage) for s in result.stages] == ["all:5:0.001"]  # from scratch, every block trains
    assert accuracy >= 0.9, accuracy
