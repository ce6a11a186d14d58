"""`cnnzoo.Recipe`: finetune's options as one object, its JSON, its fingerprint, and runs repeated from it."""

import inspect
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import cnnzoo
from cnnzoo.data import DataOptions
from cnnzoo.errors import ConfigError, DataError, DataNotFoundError
from cnnzoo.finetuning.recipe import RECIPE_FILE, Recipe
from cnnzoo.finetuning.stages import Stage
from conftest import PYTHON, REPO, brightness_blobs, write_image_folder

SIZE = 12


def tiny():
    """The same small model every call (the same initial weights: a repeated run starts from them too)."""
    import keras

    keras.utils.set_random_seed(0)
    return cnnzoo.get(
        "bird_classifier",
        num_classes=3,
        input_shape=(SIZE, SIZE, 3),
        compile=False,
        blocks=[{"filters": 4, "batch_norm": True}, {"filters": 8, "batch_norm": True}],
        dense=[8],
    )


def histories(result):
    return [{k: [float(v) for v in vs] for k, vs in s.history.items()} for s in result.stages]


# ------------------------------------------------------------------ the object


def test_finetune_keywords_are_the_recipe_fields_with_the_recipe_defaults():
    parameters = inspect.signature(cnnzoo.finetune).parameters
    assert list(inspect.signature(Recipe).parameters) == list(Recipe.field_names())
    for name in Recipe.field_names():
        assert parameters[name].default == getattr(Recipe(), name), name
    assert (Recipe.batch_size, Recipe.validation_split, Recipe.augment) == (
        DataOptions.batch_size,
        DataOptions.validation_split,
        DataOptions.augment,
    )
    assert "recipe" in parameters


def test_round_trips_through_json(tmp_path):
    recipe = Recipe(
        stages=[
            "head:2:1e-3",
            {"unfreeze": "all", "epochs": 3, "learning_rate": (1e-5, 1e-3), "schedule": "one_cycle"},
        ],
        learning_rate=(1e-5, 1e-3),
        mixup=0.2,
        ema=0.99,
        freeze_batchnorm=True,
        cache_features=False,
        dtype="mixed_bfloat16",
        steps_per_execution=4,
        batch_size=16,
        validation_split=0.25,
        augment=False,
        seed=7,
    )
    assert recipe.stages[1] == Stage("all", 3, (1e-5, 1e-3), "one_cycle")
    path = tmp_path / "recipe.json"
    text = recipe.to_json(path)
    assert json.loads(path.read_text()) == json.loads(text) and json.loads(text)["format"] == 1
    assert Recipe.from_json(path) == recipe
    assert Recipe.from_dict(json.loads(text)) == recipe
    assert Recipe.coerce(str(path)) == recipe and Recipe.coerce(recipe) is recipe
    assert Recipe.coerce(None) == Recipe() and Recipe.coerce({"seed": 3}, seed=4).seed == 4
    assert Recipe().to_dict()["stages"] == "auto"


def test_replace_validates_and_keeps_the_rest():
    recipe = Recipe(mixup=0.2).replace(seed=1, epochs=3)
    assert (recipe.mixup, recipe.seed, recipe.epochs) == (0.2, 1, 3)
    assert recipe.regularisation.mixed and recipe.data == DataOptions(32, 0.2, "auto")
    with pytest.raises(ConfigError, match=r"A recipe takes the options stages, .*Received: out"):
        recipe.replace(out="runs/x")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"epochs": 0}, ConfigError, r"`epochs` must be None or an integer >= 1. Received: epochs=0"),
        ({"stages": "head:x"}, ConfigError, "A stage must read"),
        ({"learning_rate": 50}, ConfigError, "`learning_rate` must be"),
        ({"label_smoothing": 1.0}, ConfigError, "`label_smoothing` must be a number in"),
        ({"ema": 2}, ConfigError, "`ema` must be False, True"),
        ({"freeze_batchnorm": "yes"}, ConfigError, "`freeze_batchnorm` must be None"),
        ({"cache_features": "sometimes"}, ConfigError, "`cache_features` must be True, False or 'auto'"),
        ({"dtype": "float8"}, ConfigError, "`dtype` must be None"),
        ({"steps_per_execution": 0}, ConfigError, "`steps_per_execution` must be 'auto' or an integer >= 1"),
        ({"batch_size": 0}, DataError, "`batch_size` must be an integer >= 1"),
        ({"augment": "sometimes"}, DataError, "`augment` must be True, False, 'auto'"),
        ({"seed": -1}, ConfigError, "`seed` must be an integer >= 0"),
    ],
)
def test_bad_options_name_the_option(kwargs, error, match):
    with pytest.raises(error, match=match):
        Recipe(**kwargs)


def test_bad_files_and_keys_are_clear(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"`recipe` names a file that does not exist.*recipe.json"):
        Recipe.from_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="`recipe` is not a readable recipe file"):
        Recipe.from_json(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match=r"Received: num_classes"):
        Recipe.from_dict({"num_classes": 3})
    with pytest.raises(ConfigError, match="`recipe` must be a Recipe, a dict or a recipe.json path"):
        Recipe.coerce(3)


def test_the_fingerprint_is_every_option_that_changes_training():
    fingerprint = Recipe(stages="head:2:1e-3").fingerprint()
    assert set(fingerprint) == set(Recipe.field_names()) - {"steps_per_execution"}
    assert fingerprint["stages"] == ["head:2:0.001:cosine:adam"]
    assert Recipe(steps_per_execution=1).fingerprint() == Recipe(steps_per_execution=8).fingerprint()
    assert Recipe(seed=1).fingerprint() != Recipe().fingerprint()


def test_keras_augmentation_layers_are_recorded_but_not_rebuilt():
    import keras

    recipe = Recipe(augment=[keras.layers.RandomFlip()])
    assert recipe.to_dict()["augment"] == "<layers: RandomFlip>"
    with pytest.raises(ConfigError, match=r"cannot rebuild.*Pass the layers again as `augment=`"):
        Recipe.from_dict(recipe.to_dict())
    assert Recipe.coerce(recipe.to_dict(), augment=False).augment is False


# ------------------------------------------------------------------ runs


def test_a_run_saves_its_recipe_and_a_run_from_it_repeats_its_history(tmp_path):
    x, y = brightness_blobs(48, 3, 0, SIZE)
    first = cnnzoo.finetune(
        tiny(), (x, y), stages="head:2:1e-2,all:1:1e-3", mixup=0.2, seed=5, out=tmp_path / "a", plots=False, verbose=0
    )
    saved = Recipe.from_json(tmp_path / "a" / RECIPE_FILE)
    assert saved.stages == (Stage(0, 2, 1e-2), Stage("all", 1, 1e-3)) and saved.mixup == 0.2 and saved.seed == 5
    assert saved.freeze_batchnorm is False and saved.dtype == "float32"  # what the run decided, written down
    again = cnnzoo.finetune(
        tiny(), (x, y), recipe=tmp_path / "a" / RECIPE_FILE, out=tmp_path / "b", plots=False, verbose=0
    )
    assert histories(again) == histories(first)
    assert Recipe.from_json(tmp_path / "b" / RECIPE_FILE) == saved
    state = json.loads((tmp_path / "b" / "state.json").read_text())
    assert state["fingerprint"]["seed"] == 5 and state["fingerprint"]["mixup"] == 0.2


def test_keywords_given_with_a_recipe_override_it(tmp_path):
    x, y = brightness_blobs(48, 3, 0, SIZE)
    recipe = Recipe(stages="head:3:1e-2", augment=False, seed=2)
    result = cnnzoo.finetune(tiny(), (x, y), recipe=recipe, epochs=1, out=tmp_path, plots=False, verbose=0)
    assert [len(s.history["loss"]) for s in result.stages] == [1]
    saved = Recipe.from_json(tmp_path / RECIPE_FILE)
    assert saved.stages == (Stage(0, 1, 1e-2),) and saved.seed == 2 and saved.augment is False


def test_old_keyword_names_warn_and_still_work(tmp_path):
    x, y = brightness_blobs(48, 3, 0, SIZE)
    with pytest.warns(DeprecationWarning, match=r"`finetune\(model_or_name=\.\.\.\)` is deprecated.*use `model=`"):
        with pytest.raises(ConfigError, match=r"`model` must be a zoo model name"):
            cnnzoo.finetune(model_or_name=3, data=(x, y))
    with pytest.warns(DeprecationWarning, match=r"`find_lr\(plot=\.\.\.\)`.*use `out=`"):
        found = cnnzoo.find_lr(
            tiny(), (x, y), steps=10, start=1e-4, end=1.0, plot=tmp_path / "lr.png", batch_size=8, augment=False
        )
    assert found.plot == tmp_path / "lr.png" and found.plot.is_file()
    with pytest.warns(DeprecationWarning, match=r"`find_lr\(model_or_name=\.\.\.\)`"):
        with pytest.raises(ConfigError, match="`model` must be"):
            cnnzoo.find_lr(model_or_name=3, data=(x, y))


@pytest.mark.slow
def test_cli_repeats_a_run_from_its_recipe_json(tmp_path):
    folder = write_image_folder(tmp_path / "birds", classes=("heron", "owl", "robin"), per_class=6, size=(16, 16))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

    def cli(*args):
        done = subprocess.run(
            [
                PYTHON,
                "-m",
                "cnnzoo.cli",
                "finetune",
                "digits_cnn",
                folder,
                "--input-shape",
                "12x12x3",
                "--quiet",
                *args,
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads((Path(args[args.index("--out") + 1]) / "state.json").read_text())

    first = cli("--stages", "all:2:1e-3", "--seed", "3", "--no-augment", "--out", tmp_path / "a")
    again = cli("--recipe", tmp_path / "a" / RECIPE_FILE, "--out", tmp_path / "b")
    assert again["history"] == first["history"] and again["fingerprint"] == first["fingerprint"]
    shorter = cli("--recipe", tmp_path / "a" / RECIPE_FILE, "--epochs", "1", "--out", tmp_path / "c")
    assert len(shorter["history"]["1"]) == 1 and shorter["fingerprint"]["seed"] == 3
    np.testing.assert_allclose(shorter["history"]["1"][0]["loss"], first["history"]["1"][0]["loss"], rtol=0.5)


def test_cli_passes_only_the_recipe_flags_given():
    from cnnzoo.cli.app import build_parser
    from cnnzoo.cli.finetune import given_recipe_options

    def recipe_flags(*argv):
        args = build_parser().parse_args(["finetune", "m", "d", *argv])
        shown = {name: getattr(args, name) for name in Recipe.field_names() if hasattr(args, name)}
        assert shown == {name: getattr(Recipe(), name) for name in shown} | given_recipe_options(args)
        return given_recipe_options(args)

    assert recipe_flags() == {}
    assert recipe_flags("--no-augment", "--no-feature-cache", "--lr", "auto") == {
        "augment": False,
        "cache_features": False,
        "learning_rate": "auto",
    }
    assert recipe_flags("--augment", "--ema", "--seed", "2") == {"augment": True, "ema": True, "seed": 2}
