"""The keras.applications families as zoo entries: `cnnzoo/zoo/config_variants.py`, `cnnzoo/zoo/families.py`.

Every backbone entry is built (weights=None) and counted against keras.applications' own model of
the same configuration (include_top=True, 1000 classes). Both are built inside a
`keras.StatelessScope`, whose variables are declared and never allocated: ConvNeXt-XLarge's 350M
parameters cost a graph, not 1.4 GB, and the count and the FLOPs are exact. The expensive steps
(a forward pass, save and reload, the pyramid) run in tests/zoo/test_zoo.py and
tests/zoo/test_feature_pyramid.py for the smallest member of each family.
"""

import gc
import io
import json
import math
from contextlib import redirect_stdout

import keras
import pytest

import cnnzoo
from cnnzoo.cli import app
from cnnzoo.errors import ConfigError, UnknownModelError
from cnnzoo.zoo import builders, cards, config_variants, families
from conftest import REPO

BACKBONES = [n for n in cnnzoo.list_models() if cnnzoo.spec(n).backbone is not None and cnnzoo.spec(n).family]
PROMISED = {
    "resnet": ["resnet101", "resnet152", "resnet18", "resnet20", "resnet34", "resnet50"],
    "resnet_v2": ["resnet101v2", "resnet152v2", "resnet50v2"],
    "densenet": ["densenet121", "densenet169", "densenet201"],
    "convnext": ["convnext_base", "convnext_large", "convnext_small", "convnext_tiny", "convnext_xlarge"],
    "efficientnet": [f"efficientnetb{i}" for i in range(8)],
    "efficientnet_v2": ["efficientnetv2b0", "efficientnetv2b1", "efficientnetv2b2", "efficientnetv2b3"]
    + ["efficientnetv2l", "efficientnetv2m", "efficientnetv2s"],
    "mobilenet": ["mobilenet"],
    "mobilenet_v2": ["mobilenetv2"],
    "mobilenet_v3": ["mobilenetv3large", "mobilenetv3small"],
    "xception": ["xception"],
    "inception_v3": ["inceptionv3"],
    "inception_resnet_v2": ["inceptionresnetv2"],
    "nasnet": ["nasnetlarge", "nasnetmobile"],
}


def test_every_keras_applications_family_is_in_the_zoo():
    for family, members in PROMISED.items():
        assert cnnzoo.list_models(family=family) == members
    assert len(cnnzoo.list_models()) >= 50
    assert {"resnet50", "resnet18", "convnext_tiny", "efficientnetv2b0", "densenet121"} <= set(cnnzoo.list_models())
    for name in BACKBONES:
        spec = cnnzoo.spec(name)
        assert spec.description and spec.reference and spec.search, name
        w = spec.weights["imagenet"]
        assert w.target == "backbone" and (w.md5 or w.sha256 or w.file), name  # never a download unchecked


@pytest.mark.parametrize("name", BACKBONES)
def test_each_entry_counts_what_keras_applications_counts(name):
    spec = cnnzoo.spec(name)
    app_fn = getattr(keras.applications, spec.backbone.application)
    with keras.StatelessScope(initialize_variables=False):  # variables are declared, never allocated
        ours = builders.build(spec)
        theirs = app_fn(weights=None, input_shape=spec.input_shape)  # keras' own top, 1000 classes
        info = cnnzoo.info(name)
        assert ours.count_params() == theirs.count_params() == info.params
        assert ours.get_layer("backbone").count_params() == spec.backbone.params
        assert builders.model_flops(ours) == info.flops  # the cached FLOPs are the entry's own
        deepest = ours.get_layer("backbone").output.shape
        assert deepest[-1] == spec.backbone.channels
        # the nominal stride: 299 / 10 is Xception's 32 ("valid" convolutions)
        assert 2 ** round(math.log2(spec.input_shape[0] / deepest[1])) == spec.backbone.reduction
    del ours, theirs
    keras.backend.clear_session()
    gc.collect()


def test_list_filters_by_family_and_weights():
    assert set(cnnzoo.list_models("resnet*", family="resnet")) == set(PROMISED["resnet"])
    assert cnnzoo.list_models("vgg1*", family="vgg") == ["vgg11", "vgg13", "vgg16", "vgg19"]
    pretrained = cnnzoo.list_models(pretrained=True)
    assert "digits_cnn" in pretrained and set(BACKBONES) <= set(pretrained) and "lenet5" not in pretrained
    assert set(cnnzoo.list_models(pretrained=False)) == set(cnnzoo.list_models()) - set(pretrained)
    with pytest.raises(UnknownModelError, match=r"`family`.*Did you mean `resnet`.*Received: family='resnt'"):
        cnnzoo.list_models(family="resnt")
    with pytest.raises(UnknownModelError, match=r"Did you mean `convnext_large`"):
        cnnzoo.get("convnext_larg")
    with pytest.raises(ValueError, match="`pretrained`"):
        cnnzoo.list_models(pretrained="yes")


def _cli(*argv):
    out = io.StringIO()
    with redirect_stdout(out):
        code = app.main(list(argv))
    return code, out.getvalue()


def test_cli_list_family_and_pretrained(capsys):
    code, text = _cli("list", "--family", "convnext", "--json")
    rows = json.loads(text)
    assert code == 0 and [r["name"] for r in rows] == PROMISED["convnext"]
    assert {r["family"] for r in rows} == {"convnext"} and rows[0]["params"] == cnnzoo.info("convnext_base").params
    code, text = _cli("list", "efficientnetv2*", "--pretrained")
    assert code == 0 and "efficientnetv2s" in text and "lenet5" not in text
    code, _ = _cli("list", "--family", "resnets")
    assert code != 0 and "Did you mean `resnet`" in capsys.readouterr().err


def test_family_files_expand_into_validated_members():
    raw = {
        "family": "tiny",
        "description": "shared",
        "reference": "r",
        "input_shape": [8, 8, 1],
        "num_classes": 2,
        "head": {"dropout": 0.1},
        "variants": {"tiny_a": {"blocks": [{"filters": 4}]}, "tiny_b": {"blocks": [{"filters": 8}], "head": {}}},
    }
    a, b = config_variants.expand(raw)
    assert (a.name, a.family, a.description, a.head.dropout) == ("tiny_a", "tiny", "shared", 0.1)
    assert b.blocks[0].filters == (8,) and b.head.dropout == 0.1  # tables merge key by key
    with pytest.raises(ConfigError, match=r"`variants.tiny_a`.*no `name`"):
        config_variants.expand({**raw, "variants": {"tiny_a": {"name": "x", "blocks": [{"filters": 4}]}}})
    with pytest.raises(ConfigError, match=r"`blocks\[0\].filter`.*tiny_a"):
        config_variants.expand({**raw, "variants": {"tiny_a": {"blocks": [{"filter": 4}]}}})


def test_a_family_file_must_be_named_after_its_family(tmp_path):
    (tmp_path / "mine.toml").write_text(
        'family = "other"\ndescription = "d"\ninput_shape = [8, 8, 1]\nnum_classes = 2\n'
        "[variants.other_a]\nblocks = [{ filters = 4 }]\n"
    )
    with pytest.raises(ConfigError, match=r"`family` must equal the file name `mine`.*Received: family='other'"):
        config_variants.load_all(tmp_path / "mine.toml")


def test_tiers_keep_the_smallest_member_of_each_family():
    tier = families.smallest_members({n: cnnzoo.spec(n) for n in cnnzoo.list_models()})
    assert {"resnet50", "convnext_tiny", "efficientnetb0", "mobilenetv3small", "nasnetmobile", "vgg16"} <= tier
    assert not {"convnext_xlarge", "efficientnetb7", "resnet152", "nasnetlarge"} & tier


def test_readme_holds_the_current_families_table():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert cards.readme_with_families(readme) == readme, "run `python -m cnnzoo.zoo.cards` and commit README.md"
    assert f"{len(cards.entries())} built-in entries" in readme
    assert len(cards.entries()) >= 50


def test_embeddings_and_new_heads_on_family_members():
    """`num_classes=0` and `reset_classifier` on members (graphs only): ConvNeXt, and MobileNetV3's dense top."""
    with keras.StatelessScope(initialize_variables=False):
        for name in ("convnext_tiny", "mobilenetv3small"):
            spec = cnnzoo.spec(name)
            embed = cnnzoo.get(name, num_classes=0, input_shape=(32, 32, 3))
            assert embed.output_shape == (None, spec.backbone.channels), name
            model = cnnzoo.get(name, input_shape=(32, 32, 3), compile=False)
            new = cnnzoo.reset_classifier(model, 7)
            assert new.output_shape == (None, 7) and new.get_layer("backbone") is model.get_layer("backbone")
            features = (spec.head.dense or (spec.backbone.channels,))[-1]  # what the classifier reads
            assert new.count_params() == model.count_params() - (features + 1) * 1000 + (features + 1) * 7
    keras.backend.clear_session()
