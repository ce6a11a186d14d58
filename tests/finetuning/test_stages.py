"""cnnzoo.finetuning.stages: `Stage` as data (parsed, printed, checked), `as_stages` and `auto_stages`."""

import pytest

from cnnzoo.errors import ConfigError
from cnnzoo.finetuning import stages as stages_lib
from cnnzoo.finetuning.stages import Stage


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
