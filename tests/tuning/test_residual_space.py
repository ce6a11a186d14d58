"""The search space of residual entries: `stages`, `stage_blocks_i`, `stage_filters_i` (no search), then one
real two-trial search of ResNet-20 on the 8x8 digits and the winner registered as a config."""

import keras_tuner as kt
import pytest

import cnnzoo
from cnnzoo.errors import ConfigError
from cnnzoo.zoo import registry


def _stages_layers(model):
    """(name, class, weight shapes) of every layer inside the nested `stages` model."""
    return [
        (layer.name, type(layer).__name__, [tuple(w.shape) for w in layer.weights])
        for layer in model.get_layer("stages").layers
    ]


def test_defaults_are_the_entry_and_per_stage_values_sit_in_scopes():
    hm = cnnzoo.hypermodel("resnet18")  # stages 2..5 (own 4), stage_blocks 1..4, stage_filters [32..512]
    hp = kt.HyperParameters()
    values = hm.declare_hyperparameters(hp)
    assert hm.spec_for(values) == registry.spec("resnet18")
    assert values["stages"] == 4
    assert [values[f"stage_blocks_{i}"] for i in (1, 2, 3, 4)] == [2, 2, 2, 2]
    assert [values[f"stage_filters_{i}"] for i in (1, 2, 3, 4)] == [64, 128, 256, 512]
    by_name = {p.name: p for p in hp.space}
    assert by_name["stages"].default == 4 and not by_name["stages"].conditions
    assert by_name["stage_filters_2"].default == 128 and by_name["stage_blocks_3"].default == 2
    assert sorted(by_name["stage_blocks_5"].conditions[0].values) == [5]  # only a 5-stage trial has it
    assert not hp.is_active("stage_filters_5") and "stage_filters_5" not in values
    assert hm.default("stage_filters_5") == 512  # twice the last width, capped at the largest choice
    assert "filters_1" not in by_name  # the stem is not searched: resnet18's [search] leaves it out


def test_hp_fixed_overrides_build_the_smaller_net():
    hp = kt.HyperParameters()
    hp.Fixed("stages", 2)
    hp.Fixed("stage_blocks_1", 1)
    hp.Fixed("stage_filters_2", 64)
    model = cnnzoo.hypermodel("resnet20", input_shape=(8, 8, 1)).build(hp)
    names = [n for n, _, _ in _stages_layers(model)]
    assert "stage1_block2_add" not in names and "stage2_block3_add" in names and "stage3_block1_add" not in names
    assert model.get_layer("stages").output.shape[1:] == (4, 4, 64)
    assert hp.values["stages"] == 2 and "stage_blocks_3" not in hp.values


def test_trial_zero_builds_what_get_builds():
    hm = cnnzoo.hypermodel("resnet20", input_shape=(8, 8, 1))
    searched, zoo = hm.build(kt.HyperParameters()), cnnzoo.get("resnet20", input_shape=(8, 8, 1))
    assert [layer.name for layer in searched.layers] == [layer.name for layer in zoo.layers]
    assert _stages_layers(searched) == _stages_layers(zoo) and searched.count_params() == zoo.count_params()


def test_fixed_keywords_extra_stages_and_infeasible_widths():
    hm = cnnzoo.hypermodel("resnet20", stages=4, stage_filters=32, stage_blocks_4=1)
    spec = hm.spec_for(hm.declare_hyperparameters(kt.HyperParameters()))
    assert [(s.filters, s.blocks, s.strides, s.shortcut) for s in spec.stages] == [
        (32, 3, 1, "zero_pad"),
        (32, 3, 2, "zero_pad"),
        (32, 3, 2, "zero_pad"),
        (32, 1, 2, "zero_pad"),  # a new stage copies the last and halves the map
    ]
    hm = cnnzoo.hypermodel("resnet20")
    assert hm.default("stage_filters_4") == 128 and hm.default("stage_blocks_4") == 3
    narrowing = {"stage_filters_3": 8}  # zero-padding shortcuts cannot drop channels: 32 -> 8
    assert not hm.feasible(narrowing) and hm.feasible({})
    hp = kt.HyperParameters()
    hp.Fixed("stage_filters_3", 8)
    with pytest.raises(kt.errors.FailedTrialError, match="cannot be 'zero_pad'"):
        hm.build(hp)


@pytest.mark.parametrize(
    "name, kwargs, fragment",
    [
        ("digits_cnn", {"stage_blocks_2": 2}, "`digits_cnn` has none"),
        ("digits_cnn", {"search": {"stages": {"min": 1, "max": 3}}}, "`search.stages` searches residual stages"),
        ("mobilenetv3small_classifier", {"stages": 2}, "backbone instead"),
        ("resnet20", {"search": {"stage_blocks": {"min": 0, "max": 3}}}, "`search.stage_blocks` must be integers >= 1"),
        ("resnet20", {"stage_filters_2": 0}, "`stage_filters` must be integers >= 1"),
    ],
)
def test_stage_keys_where_they_do_not_apply_or_out_of_range(name, kwargs, fragment):
    with pytest.raises(ConfigError, match="Received") as err:
        cnnzoo.hypermodel(name, **kwargs)
    assert fragment in str(err.value)


@pytest.mark.slow
def test_a_real_two_trial_search_and_the_winner_as_a_config(tmp_path, isolated_home):
    d = cnnzoo.data.digits(seed=0)
    result = cnnzoo.tune(
        "resnet20",
        (d.x_train[:240], d.y_train[:240], d.x_test[:80], d.y_test[:80]),
        tuner="random",
        max_trials=2,
        max_epochs=1,
        out=tmp_path / "search",
        input_shape=(8, 8, 1),
        search={"stages": {"min": 2, "max": 3}, "stage_blocks": {"min": 1, "max": 2}, "stage_filters": [8, 16, 32]},
        batch_size=32,
        seed=1,
    )
    assert [t.status for t in result.trials] == ["COMPLETED"] * 2
    first = result.trials[0].hyperparameters
    assert first["stages"] == 3 and [first[f"stage_blocks_{i}"] for i in (1, 2, 3)] == [3, 3, 3]  # the entry
    for t in result.trials:
        n = t.hyperparameters["stages"]
        assert sorted(k for k in t.hyperparameters if k.startswith("stage_blocks_")) == [
            f"stage_blocks_{i}" for i in range(1, n + 1)
        ]
    best = result.best_model
    assert best.get_layer("stages").output.shape[-1] == result.best_spec.stages[-1].out_channels
    cnnzoo.register_best(result, "my_resnet")
    assert cnnzoo.spec("my_resnet").stages == result.best_spec.stages
