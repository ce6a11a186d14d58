"""cnnzoo.finetuning.stages: `Stage` as data (parsed, printed, checked; its rates, ranges and schedules),
`as_stages`, `override` and `auto_stages`."""

import json

import pytest

import cnnzoo
from cnnzoo.errors import ConfigError
from cnnzoo.finetuning import stages as stages_lib
from cnnzoo.finetuning.stages import Stage
from finetune_helpers import blobs


def test_stages_are_data():
    assert Stage.parse("top2:3:1e-4") == Stage(2, epochs=3, learning_rate=1e-4)
    assert Stage.parse("head:5") == Stage(0, 5, 1e-3)
    assert stages_lib.as_stages("head:1:0.01,all:2:1e-5") == (Stage(0, 1, 0.01), Stage("all", 2, 1e-5))
    assert stages_lib.as_stages([{"unfreeze": 1, "epochs": 2}, Stage()]) == (Stage(1, 2), Stage())
    assert Stage("all").name == "all" and Stage(3).name == "top3" and Stage().name == "head"
    assert Stage.parse(str(Stage(2, 4, 3e-4))) == Stage(2, 4, 3e-4)
    with pytest.raises(ConfigError, match=r"`unfreeze`.*Received: unfreeze=-1"):
        Stage(-1)
    with pytest.raises(ConfigError, match=r"`epochs`.*Received: epochs=0"):
        Stage(0, epochs=0)
    with pytest.raises(ConfigError, match=r"`schedule`.*Did you mean `cosine`"):
        Stage(schedule="cosin")
    with pytest.raises(ConfigError, match=r"head\|topN\|all.*Received: stage='middle:3'"):
        Stage.parse("middle:3")
    with pytest.raises(ConfigError, match=r"keys unfreeze, epochs"):
        stages_lib.as_stages([{"unfreez": 1}])


def test_auto_stages_follow_dataset_size():
    fine_tune = (Stage(0, 1, 2e-3, "one_cycle"), Stage("all", 9, (1e-4, 1e-3), "one_cycle"))  # measured, issue 11
    assert stages_lib.auto_stages(300, 5) == stages_lib.auto_stages(2000, 5) == fine_tune
    assert stages_lib.auto_stages(300, 0) == (Stage(0, 10, 1e-3),)
    big = stages_lib.auto_stages(20000, 17)
    assert [s.name for s in big] == ["head", "top6", "all"]
    assert [s.learning_rate for s in big] == [1e-3, 1e-4, 1e-5]
    assert stages_lib.auto_stages(2000, 5, pretrained=False) == (Stage("all", 15, 1e-3),)
    assert {s.epochs for s in stages_lib.auto_stages(20000, 17, epochs=2)} == {2}


def test_rates_schedules_and_ranges_as_data():
    assert Stage.parse("head:5:1e-3") == Stage(0, 5, 1e-3)  # the old syntax reads as before
    assert Stage.parse("top2:3") == Stage(2, 3, 1e-4)
    assert Stage.parse("all:5:1e-5..1e-3") == Stage("all", 5, (1e-5, 1e-3))
    assert Stage.parse("all:5:auto:one_cycle") == Stage("all", 5, "auto", "one_cycle")
    assert Stage.parse("head:4:one_cycle") == Stage(0, 4, 1e-3, "one_cycle")
    assert Stage("all", 5, [1e-5, 1e-3]) == Stage("all", 5, slice(1e-5, 1e-3)) == Stage("all", 5, "1e-5..1e-3")
    assert stages_lib.as_stages({"unfreeze": "all", "learning_rate": [1e-5, 1e-3]})[0].learning_rate == (1e-5, 1e-3)
    assert str(Stage("all", 5, (1e-5, 1e-3))) == "all:5:1e-05..0.001" and str(Stage(0, 2, "auto")) == "head:2:auto"
    for stage in (Stage("all", 5, (1e-5, 1e-3)), Stage(1, 2, "auto"), Stage(0, 3, 3e-4)):
        assert Stage.parse(str(stage)) == stage
    assert Stage("all", 1, (1e-5, 1e-3)).peak_rate == 1e-3 and Stage(0, 1, "auto").peak_rate is None
    assert [str(s) for s in stages_lib.override("head:5:1e-3,all:2:1e-5", 3, "auto")] == ["head:3:auto", "all:3:auto"]
    json.dumps(Stage("all", 5, (1e-5, 1e-3)).to_dict())  # stages stay data
    with pytest.raises(
        ConfigError, match=r"`learning_rate` must be .*lo <= hi.*Received: learning_rate=\(0.1, 0.001\)"
    ):
        Stage("all", 1, (0.1, 1e-3))
    with pytest.raises(ConfigError, match=r"Received: learning_rate='fast'"):
        Stage(learning_rate="fast")
    with pytest.raises(ConfigError, match=r"learning rate of a stage.*Received: stage='all:2:1e-3..x'"):
        Stage.parse("all:2:1e-3..x")
    with pytest.raises(ConfigError, match=r"`learning_rate` must be.*Received: learning_rate=0"):
        cnnzoo.finetune("digits_cnn", blobs(), learning_rate=0)
