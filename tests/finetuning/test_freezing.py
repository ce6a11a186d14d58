"""cnnzoo.finetuning.freezing: a model's units and which of them a stage trains (a zoo CNN and a
keras.applications backbone), head replacement for a new class count, and the BatchNorm policy
(inference mode on a pretrained backbone in every stage; trained from scratch).

Real TensorFlow training through `cnnzoo.finetune` on tiny models and tiny images (12x12).
"""

import numpy as np

import cnnzoo
from cnnzoo.finetuning import freezing
from cnnzoo.finetuning.stages import Stage
from conftest import write_image_folder
from finetune_helpers import SIZE, blobs, bn_stats, pretrain_batchnorm, tiny

# ------------------------------------------------------------------ units a stage trains


def test_units_of_a_keras_applications_backbone():
    model = cnnzoo.get("bird_classifier_mobilenetv2", num_classes=3, input_shape=(32, 32, 3), compile=False)
    parts = freezing.anatomy(model)
    assert parts.unit_names[:3] == ["stem", "expanded_conv", "block_1"]
    assert parts.unit_names[-1] == "block_16" and len(parts.units) == 18
    assert "Conv_1" in [layer.name for layer in parts.units[-1][1]]  # top conv joins the last block
    trained = freezing.apply_stage(parts, Stage(2), freeze_batchnorm=True)
    assert trained == ["block_15", "block_16"]
    backbone = model.get_layer("backbone")
    assert backbone.get_layer("block_16_project").trainable and not backbone.get_layer("block_14_project").trainable
    assert not any(bn.trainable for bn in freezing.batchnorm_layers(backbone))
    kernels = {w.path.split("/")[0] for w in model.trainable_weights}
    assert {"block_15_expand", "block_16_project", "Conv_1", "head"} <= kernels
    assert "block_14_expand" not in kernels


def test_finetune_a_keras_applications_backbone(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 255, (24, 32, 32, 3)), np.arange(24) % 2
    model = cnnzoo.get("bird_classifier_mobilenetv2", num_classes=5, input_shape=(32, 32, 3), compile=False)
    pretrain_batchnorm(model)
    backbone = model.get_layer("backbone")
    before = {w.path: w.numpy().copy() for w in backbone.weights}
    result = cnnzoo.finetune(
        model, (x, y), stages="head:1:1e-2,top2:1:1e-2", out=tmp_path / "run", verbose=0, plots=False, augment=False
    )
    assert [(s.units, s.feature_cache) for s in result.stages] == [((), True), (("block_15", "block_16"), False)]
    after = {w.path: w.numpy() for w in result.model.get_layer("backbone").weights}
    changed = {path.split("/")[0] for path in before if not np.array_equal(before[path], after[path])}
    assert changed == {
        "block_15_expand",
        "block_15_depthwise",
        "block_15_project",
        "block_16_expand",
        "block_16_depthwise",
        "block_16_project",
        "Conv_1",
    }  # no BatchNorm, nothing lower
    assert cnnzoo.load(result.model_path).output_shape == (None, 2)


# ------------------------------------------------------------------ head replacement


def test_head_is_replaced_for_a_new_class_count_and_backbone_kept(tmp_path):
    folder = write_image_folder(tmp_path / "images", classes=("heron", "owl"), per_class=6, size=(SIZE, SIZE))
    model = tiny(num_classes=5)
    pretrain_batchnorm(model)
    backbone_before = [w.numpy() for layer in model.layers[2:-1] for w in layer.weights]
    result = cnnzoo.finetune(model, folder, stages=["head:2:1e-2"], out=tmp_path / "run", verbose=0)
    head = result.model.get_layer("head")
    assert head is not model.get_layer("head") and head.num_classes == 2
    assert head.class_names == ["heron", "owl"] == list(result.class_names)
    assert head.dense == [8] and head.dropout == 0.5  # same head configuration
    assert [layer.name for layer in result.model.layers] == [layer.name for layer in model.layers]
    assert all(a is b for a, b in zip(result.model.layers[:-1], model.layers[:-1]))  # backbone shared
    backbone_after = [w.numpy() for layer in result.model.layers[2:-1] for w in layer.weights]
    for before, after in zip(backbone_before, backbone_after):
        np.testing.assert_array_equal(before, after)  # frozen stage: backbone untouched
    assert result.model.output_shape == (None, 2)
    assert cnnzoo.predict(result.model, folder / "owl" / "0.png").label in ("heron", "owl")


def test_same_class_count_keeps_head_weights_and_renames():
    model = tiny(num_classes=2)
    head = model.get_layer("head")
    same, replaced = freezing.replace_head(model, 2, ["cat", "dog"])
    assert not replaced and same is model and same.get_layer("head") is head
    assert cnnzoo.layers.class_names_of(same) == ["cat", "dog"]
    other, replaced = freezing.replace_head(model, 4, None)
    assert replaced and other.output_shape == (None, 4) and other.get_layer("block1") is model.get_layer("block1")


# ------------------------------------------------------------------ BatchNorm policy


def test_batchnorm_stays_in_inference_mode_in_frozen_and_unfrozen_stages(tmp_path):
    x, y = blobs()
    model = tiny(block_dropout=0.0, dropout=0.0)
    pretrain_batchnorm(model)
    stats_before = bn_stats(model)
    kernel_before = model.get_layer("block1").weights[0].numpy()
    result = cnnzoo.finetune(
        model,
        (x, y),
        stages=["head:2:1e-2", "all:2:1e-2"],
        cache_features=False,
        out=tmp_path / "run",
        verbose=0,
        plots=False,
    )
    for before, after in zip(stats_before, bn_stats(result.model)):
        np.testing.assert_array_equal(before, after)  # moving statistics never updated
    assert not np.allclose(kernel_before, result.model.get_layer("block1").weights[0].numpy())  # but it trained
    assert all(not bn.trainable for bn in freezing.batchnorm_layers(result.model))

    # In an unfrozen stage the training graph's BatchNorm output is the inference-mode output ...
    parts = freezing.anatomy(result.model)
    freezing.apply_stage(parts, Stage("all"), freeze_batchnorm=True)
    training_graph = freezing.stage_model(parts)
    np.testing.assert_allclose(
        training_graph(x[:8], training=True), result.model(x[:8], training=False), rtol=1e-5, atol=1e-6
    )
    # ... which it would not be with trainable BatchNorm (batch statistics).
    freezing.apply_stage(parts, Stage("all"), freeze_batchnorm=False)
    assert not np.allclose(
        freezing.stage_model(parts)(x[:8], training=True), result.model(x[:8], training=False), atol=1e-3
    )


def test_from_scratch_batchnorm_trains(tmp_path):
    x, y = blobs()
    model = tiny()
    before = bn_stats(model)
    result = cnnzoo.finetune(
        model, (x, y), stages=["all:1:1e-2"], pretrained=False, out=tmp_path / "run", verbose=0, plots=False
    )
    assert any(not np.allclose(a, b) for a, b in zip(before, bn_stats(result.model)))
    assert all(bn.trainable for bn in freezing.batchnorm_layers(result.model))
