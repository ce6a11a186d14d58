"""Config validation: every rule fails with a ConfigError that names the key."""

import pytest

import cnnzoo
from cnnzoo.errors import ConfigError
from cnnzoo.zoo import config, config_writer

MINIMAL = """
name = "tiny"
description = "A tiny test net."
input_shape = [16, 16, 3]
num_classes = 4

[[blocks]]
filters = 8
"""


def test_minimal_config_gets_the_documented_defaults():
    spec = config.loads(MINIMAL)
    assert spec.blocks[0] == config.Block(filters=(8,))
    assert spec.head == config.Head()
    assert spec.train == config.Train()
    assert spec.preprocessing == "rescale_0_1"
    assert spec.kind == "cnn"


@pytest.mark.parametrize("name", cnnzoo.list_models())
def test_every_entry_round_trips_through_toml(name):
    spec = cnnzoo.spec(name)
    assert config.loads(config_writer.dumps(spec)) == spec


@pytest.mark.parametrize(
    "extra, key, fragment",
    [
        ("[[blocks]]\nfilter = 8", "blocks[1].filter", "Did you mean `filters`"),
        ("[[blocks]]\nfilters = -1", "blocks[1].filters", "Received: filters=-1"),
        ("[[blocks]]\nfilters = 8\npool = 'maximum'", "blocks[1].pool", "Did you mean `max`"),
        ("[[blocks]]\nfilters = [8, 16]\nconvs = 3", "blocks[1].convs", "length of `filters`"),
        ("[head]\ndense = 128", "head.dense", "list of positive integers"),
        ("[head]\ndropout = 1.0", "head.dropout", "< 1.0"),
        ("[train]\noptimizer = 'adamm'", "train.optimizer", "Did you mean `adam`"),
        ("[search]\nconv_block = { min = 1, max = 3 }", "search.conv_block", "Did you mean `conv_blocks`"),
        ("[search]\nconv_blocks = { min = 3, max = 1 }", "search.conv_blocks.max", "must be >= `min`"),
        ("[search]\nlearning_rate = { min = 0.0, max = 0.1, sampling = 'log' }", "search.learning_rate.min", "> 0"),
        ("[search]\nunits = []", "search.units", "non-empty list"),
        ("[weights.web]\nurl = 'http://127.0.0.1/x.h5'", "weights.web.sha256", "hash-checked"),
    ],
)
def test_bad_values_name_the_key(extra, key, fragment):
    with pytest.raises(ConfigError) as err:
        config.loads(MINIMAL + "\n" + extra, "my.toml")
    message = str(err.value)
    assert f"`{key}`" in message and fragment in message and "my.toml" in message


def test_top_level_rules():
    with pytest.raises(ConfigError, match="`num_classes` is required"):
        config.loads('name = "x"\ndescription = "d"\ninput_shape = [8, 8, 1]\n[[blocks]]\nfilters = 4')
    with pytest.raises(ConfigError, match="lower_snake_case"):
        config.loads(MINIMAL.replace('"tiny"', '"Tiny-Net"'))
    with pytest.raises(ConfigError, match="exactly one of `blocks` and `backbone`"):
        config.loads(MINIMAL + '\n[backbone]\napplication = "MobileNetV2"\n')
    with pytest.raises(ConfigError, match="`class_names` must have `num_classes` \\(4\\) entries"):
        config.loads(MINIMAL.replace("num_classes = 4", 'num_classes = 4\nclass_names = ["a"]'))
    assert isinstance(ConfigError("x"), ValueError)


def test_broken_toml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text(MINIMAL + "\n[head\n")
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert str(path) in str(err.value) and "line" in str(err.value)


def test_overrides_are_validated_against_the_spec():
    spec = cnnzoo.spec("bird_classifier")
    changed = config.apply_overrides(spec, {"dropout": 0.3, "dense": [64, 32], "batch_norm": False})
    assert changed.head.dense == (64, 32) and changed.head.dropout == 0.3
    assert not any(b.batch_norm for b in changed.blocks)
    assert spec.head.dense == (256,)  # the original is untouched (frozen)
    with pytest.raises(ConfigError, match="`dropuot` is not an override.*Did you mean `dropout`"):
        config.apply_overrides(spec, {"dropuot": 0.1})
    with pytest.raises(ConfigError, match="`head.dropout`.*Received: dropout='high'"):
        config.apply_overrides(spec, {"dropout": "high"})
    with pytest.raises(ConfigError, match="`blocks\\[0\\].filters`"):
        config.apply_overrides(spec, {"blocks": [{"filters": "wide"}]})
    with pytest.raises(ConfigError, match="`batch_norm` applies to conv blocks"):
        config.apply_overrides(cnnzoo.spec("efficientnetb0_classifier"), {"batch_norm": True})


def test_class_names_follow_num_classes():
    spec = cnnzoo.spec("digits_cnn")
    assert config.apply_overrides(spec, {"num_classes": 10}).class_names == spec.class_names
    assert config.apply_overrides(spec, {"num_classes": 3}).class_names == ()
    named = config.apply_overrides(spec, {"class_names": ["x", "y"]})
    assert named.num_classes == 2 and named.class_names == ("x", "y")
