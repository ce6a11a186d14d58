"""Hyperparameter search: the space (no search), real searches, resume, distributed, register_best."""

import json
import os
import signal
import socket
import subprocess
import textwrap
import time
import warnings
from pathlib import Path

import keras_tuner as kt
import numpy as np
import pytest

import cnnzoo
from cnnzoo.errors import ConfigError, DataError
from cnnzoo.tuning.records import RUNS_DIR, read_runs
from cnnzoo.zoo import config, registry
from conftest import PYTHON, REPO

SPEC_ENTRIES = [n for n in cnnzoo.list_models() if registry.entry(n).spec is not None]


def _digits(n=160, seed=0):
    d = cnnzoo.data.digits(seed=seed)
    return d.x_train[:n], d.y_train[:n], d.x_test[:80], d.y_test[:80]


def _layers(model):
    """(layer name, class, weight shapes) for every layer, nested blocks included."""
    rows = []
    for layer in model.layers:
        rows.append((layer.name, type(layer).__name__, [tuple(w.shape) for w in layer.weights]))
        for step in getattr(layer, "steps", []):
            rows.append((step.name, type(step).__name__, [tuple(w.shape) for w in step.weights]))
    return rows


# ------------------------------------------------------------- the space, no search


@pytest.mark.parametrize("name", SPEC_ENTRIES)
def test_defaults_describe_the_entry_itself(name):
    hm = cnnzoo.hypermodel(name)
    hp = kt.HyperParameters()
    values = hm.declare_hyperparameters(hp)
    assert hm.spec_for(values) == registry.spec(name)
    for p in hp.space:  # every declared default equals the value the entry has
        if p.name in values and hp.is_active(p):
            assert p.default == values[p.name], p.name


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("digits_cnn", {}),
        ("lenet5", {}),
        ("mnist_cnn", {}),
        ("cifar10_cnn", {}),
        ("tiny_vgg", {"input_shape": (32, 32, 3), "num_classes": 4}),
        ("bird_classifier", {"input_shape": (64, 64, 3), "num_classes": 5}),
        ("bird_classifier_mobilenetv2", {"input_shape": (32, 32, 3), "num_classes": 3}),
    ],
)
def test_trial_zero_builds_what_get_builds(name, kwargs):
    hm = cnnzoo.hypermodel(name, **kwargs)
    searched = hm.build(kt.HyperParameters())
    zoo = cnnzoo.get(name, **kwargs)
    assert _layers(searched) == _layers(zoo)
    assert searched.count_params() == zoo.count_params()
    assert type(searched.optimizer) is type(zoo.optimizer)
    assert float(searched.optimizer.learning_rate) == pytest.approx(float(zoo.optimizer.learning_rate))
    assert searched.get_layer("head").get_config() == zoo.get_layer("head").get_config()


def test_per_layer_values_sit_in_the_scope_of_their_count():
    hm = cnnzoo.hypermodel("digits_cnn")  # conv_blocks 1..3 (default 2), dense_layers 0..2 (default 1)
    hp = kt.HyperParameters()
    values = hm.declare_hyperparameters(hp)
    by_name = {p.name: p for p in hp.space}
    assert by_name["filters_3"].conditions[0].name == "conv_blocks"
    assert sorted(by_name["filters_3"].conditions[0].values) == [3]
    assert sorted(by_name["units_2"].conditions[0].values) == [2]
    assert not by_name["conv_blocks"].conditions
    assert set(hp.values) >= {"filters_1", "filters_2", "convs_2", "units_1"}
    assert not {"filters_3", "convs_3", "units_2"} & set(hp.values)  # inactive layers never listed
    assert not hp.is_active("filters_3")
    assert values["conv_blocks"] == 2 and "filters_3" not in values


def test_hp_fixed_overrides_declared_values():
    hp = kt.HyperParameters()
    hp.Fixed("conv_blocks", 1)
    hp.Fixed("dense_layers", 0)
    model = cnnzoo.hypermodel("digits_cnn").build(hp)
    assert [layer.name for layer in model.layers] == ["image", "preprocess", "block1", "head"]
    assert hp.values["conv_blocks"] == 1
    assert not {"filters_2", "units_1"} & set(hp.values)
    assert model.get_layer("head").dense == []


def test_fixed_keyword_arguments_pin_values_and_override_the_config():
    hm = cnnzoo.hypermodel(
        "digits_cnn", conv_blocks=3, filters=16, units_1=64, learning_rate=0.01, class_names=list("abcdefghij")
    )
    hp = kt.HyperParameters()
    spec = hm.spec_for(hm.declare_hyperparameters(hp))
    assert [b.filters for b in spec.blocks] == [(16, 16)] * 3
    assert spec.head.dense == (64,) and spec.train.learning_rate == 0.01
    assert spec.class_names == tuple("abcdefghij")
    fixed = {p.name for p in hp.space if isinstance(p, kt.engine.hyperparameters.Fixed)}
    assert {"conv_blocks", "filters_1", "filters_2", "filters_3", "units_1", "learning_rate"} <= fixed


def test_user_search_space_overrides_the_declared_one():
    hm = cnnzoo.hypermodel(
        "digits_cnn",
        search={"dense_layers": {"min": 2, "max": 3}, "units": [32], "conv_blocks": None, "optimizer": ["adam", "sgd"]},
    )
    hp = kt.HyperParameters()
    hm.declare_hyperparameters(hp)
    by_name = {p.name: p for p in hp.space}
    assert "conv_blocks" not in by_name and "filters_1" in by_name  # conv count fixed, widths still searched
    # the entry's own value always stays reachable: 1 dense layer of 128 units
    assert (by_name["dense_layers"].min_value, by_name["dense_layers"].max_value) == (1, 3)
    assert sorted(by_name["units_1"].values) == [32, 128]
    assert by_name["optimizer"].values == ["adam", "sgd"] and by_name["optimizer"].default == "adam"
    assert hm.spec_for(hp) == hm.base and hm.base.blocks == registry.spec("digits_cnn").blocks


def test_extra_layers_extrapolate_and_own_values_join_the_space():
    hm = cnnzoo.hypermodel("bird_classifier")  # filters [16..256], conv_blocks up to 6, 5 own blocks
    assert hm.default("filters_6") == 256  # double the last (512), capped at the largest choice
    assert hm.default("units_3") == 256  # repeats the last dense width
    spec = hm.spec_for({"conv_blocks": 6, "dense_layers": 2})
    assert len(spec.blocks) == 6 and spec.blocks[5].batch_norm and spec.head.dense == (256, 256)
    lenet = cnnzoo.hypermodel("lenet5")  # its C5 has 120 filters, the [search] list does not
    assert 120 in lenet.space["filters"].values and lenet.default("filters_3") == 120
    alex = cnnzoo.hypermodel("alexnet", search={"filters": [64, 192, 384]})  # block 3: 384, 256, 256
    assert alex.spec_for({}).blocks[2].filters == (384, 256, 256)
    assert alex.spec_for({"filters_3": 192}).blocks[2].filters == (192, 128, 128)  # proportions kept
    assert alex.spec_for({"filters_3": 192, "convs_3": 2}).blocks[2].filters == (192, 128)


def test_models_that_do_not_fit_the_input_fail_the_trial_not_the_search():
    hm = cnnzoo.hypermodel("tiny_vgg", input_shape=(32, 32, 3))  # valid padding: 4 blocks of 3 convs vanish
    too_deep = {"conv_blocks": 4, "convs_1": 3, "convs_2": 3, "convs_3": 3, "convs_4": 3}
    assert not hm.feasible(too_deep) and hm.feasible({})
    hp = kt.HyperParameters()
    for name, value in too_deep.items():
        hp.Fixed(name, value)
    with pytest.raises(kt.errors.FailedTrialError, match="vanishes"):
        hm.build(hp)


def test_oracle_proposes_the_defaults_first_and_only_models_that_fit(tmp_path):
    from cnnzoo.tuning import engine as tuning_engine

    hm = cnnzoo.hypermodel("tiny_vgg", input_shape=(32, 32, 3))  # valid padding: deep trials vanish
    options = tuning_engine.TunerOptions("random", "val_accuracy", 40, 1, tmp_path, "p", True, seed=0)
    tuner = tuning_engine.make_tuner(hm, options)
    proposals = [tuner.oracle.create_trial(f"tuner{i}").hyperparameters.values for i in range(40)]
    plain = kt.oracles.RandomSearchOracle("val_accuracy", max_trials=40, seed=0)
    plain.hyperparameters = tuner.oracle.hyperparameters.copy()
    unfiltered = [plain.populate_space(str(i))["values"] for i in range(40)]
    assert len({tuple(sorted(v.items())) for v in proposals}) == 40  # 40 distinct trials
    assert (
        proposals[0] == {k: v for k, v in hm.declare_hyperparameters(kt.HyperParameters()).items() if k in proposals[0]}
        and hm.spec_for(proposals[0]) == hm.base
    )
    assert all(hm.feasible(v) for v in proposals)
    assert not all(hm.feasible(v) for v in unfiltered)  # the check matters for this space


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"search": {"filters": {"min": 0, "max": 8}}}, "search.filters"),
        ({"search": {"dropout": [0.5, 1.5]}}, "search.dropout"),
        ({"search": {"optimizer": ["adam", "lbfgs"]}}, "search.optimizer"),
        ({"search": {"batch_norm": {"min": 0, "max": 1}}}, "search.batch_norm"),
        ({"search": {"conv_blocks": {"min": 1, "max": 4, "sampling": "log"}}}, "search.conv_blocks"),
        ({"search": {"units": {"min": 64, "max": 8}}}, "search.units.max"),
        ({"search": {"dense_units": [64]}}, "search.dense_units"),
        ({"search": [1, 2]}, "search"),
        ({"filterz": 32}, "filterz"),
        ({"learning_rate": -1.0}, "learning_rate"),
    ],
)
def test_invalid_spaces_are_config_errors_naming_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=f"`{key}`") as info:
        cnnzoo.hypermodel("digits_cnn", **kwargs)
    assert "Received:" in str(info.value)


def test_backbone_entries_search_only_the_head_and_training():
    hm = cnnzoo.hypermodel("bird_classifier_mobilenetv2")
    assert set(hm.space) == {"dense_layers", "units", "dropout", "learning_rate"}
    with pytest.raises(ConfigError, match="`conv_blocks`.*backbone"):
        cnnzoo.hypermodel("bird_classifier_mobilenetv2", search={"conv_blocks": {"min": 1, "max": 3}})
    with pytest.raises(ConfigError, match="`filters_1`.*backbone"):
        cnnzoo.hypermodel("bird_classifier_mobilenetv2", filters_1=32)


def test_tune_rejects_bad_arguments_before_any_search(tmp_path):
    x, y, _, _ = _digits(40)
    with pytest.raises(ConfigError, match="`tuner`"):
        cnnzoo.tune("digits_cnn", (x, y), tuner="grid", out=tmp_path)
    with pytest.raises(ConfigError, match="`max_trials`"):
        cnnzoo.tune("digits_cnn", (x, y), tuner="random", max_trials=0, out=tmp_path)
    with pytest.raises(ConfigError, match="`objective`"):
        cnnzoo.tune("digits_cnn", (x, y), tuner="random", objective="val_auc", out=tmp_path)
    with pytest.raises(DataError, match="one-hot"):
        cnnzoo.tune("digits_cnn", (x, np.eye(10)[y]), tuner="random", out=tmp_path)
    with pytest.raises(DataError, match="one label per image"):
        cnnzoo.tune("digits_cnn", (x, y[:-1]), tuner="random", out=tmp_path)
    with pytest.raises(cnnzoo.errors.DataNotFoundError, match="does not exist"):  # as finetune: a FileNotFoundError
        cnnzoo.tune("digits_cnn", str(tmp_path / "nowhere"), out=tmp_path)
    with pytest.raises(cnnzoo.UnknownModelError):
        cnnzoo.tune("digits_cnnn", (x, y), out=tmp_path)
    for verbose in ("loud", True, 3, [1]):
        with pytest.raises(ConfigError, match="`verbose` must be 0, 1, 2, 'auto'"):
            cnnzoo.tune("digits_cnn", (x, y), tuner="random", out=tmp_path, verbose=verbose)
    assert not list(tmp_path.iterdir())  # nothing was started


def test_tune_defaults_seed_0_verbose_auto_and_the_data_options():
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(cnnzoo.tune).parameters.items()}
    assert defaults["seed"] == 0 and defaults["verbose"] == "auto"  # a line per trial, as `cnnzoo tune` prints
    assert defaults["batch_size"] == cnnzoo.data.DataOptions.batch_size
    assert defaults["validation_split"] == cnnzoo.data.DataOptions.validation_split


def test_verbose_1_2_and_auto_print_one_line_per_trial(capsys):
    from cnnzoo.tuning import api
    from cnnzoo.tuning.records import TrialRecord

    record = TrialRecord("01", "COMPLETED", {"conv_blocks": 2, "learning_rate": 0.00123}, 0.9375, 2, 1.25)
    assert api._on_trial(0, "val_accuracy") is None and api._on_trial(None, "val_accuracy") is None  # progress=None
    assert api._on_trial(print, "val_accuracy") is print  # a callable gets each TrialRecord
    for verbose in (1, 2, "auto"):
        api._on_trial(verbose, "val_accuracy")(record)
    line = "trial 01: val_accuracy=0.9375  epochs=2  1.2s  conv_blocks=2 learning_rate=0.00123"
    assert capsys.readouterr().out.splitlines() == [line] * 3 and record.line("val_accuracy") == line


def test_old_keyword_names_of_tune_warn_naming_the_new_ones_and_still_work(tmp_path):
    x, y, xv, yv = _digits(40)
    seen = []
    with pytest.warns(DeprecationWarning) as caught:
        result = cnnzoo.tune(
            name="digits_cnn",
            data=(x, y, xv[:20], yv[:20]),
            tuner="random",
            max_trials=1,
            max_epochs=1,
            directory=tmp_path,
            progress=seen.append,
            early_stopping=0,
            load_best=False,
        )
    messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    for old, new in (("name", "model"), ("directory", "out"), ("progress", "verbose")):
        assert any(f"`tune({old}=...)` is deprecated" in m and f"use `{new}=`" in m for m in messages), old
    assert result.name == "digits_cnn" and result.directory == tmp_path / "digits_cnn"
    assert [t.trial_id for t in seen] == [t.trial_id for t in result.trials] and len(seen) == 1


def test_the_default_seed_repeats_a_search_and_progress_is_printed_by_default(tmp_path, capsys):
    x, y, xv, yv = _digits(40)
    proposals, printed, results = [], [], []
    for run, verbose in (("first", "auto"), ("second", 0)):
        result = cnnzoo.tune(
            "digits_cnn",
            (x, y, xv[:20], yv[:20]),
            tuner="random",
            max_trials=2,
            max_epochs=1,
            out=tmp_path / run,
            early_stopping=0,
            load_best=False,
            verbose=verbose,
        )
        proposals.append([t.hyperparameters for t in result.trials])
        printed.append(capsys.readouterr().out.splitlines())
        results.append(result)
    assert len(proposals[0]) == 2 and proposals[0] == proposals[1]  # the random draw of trial 1 too
    # the default: what runs and where, then a line per trial as the CLI prints; verbose=0: nothing
    start = f"tune digits_cnn: random search, up to 2 trials of at most 1 epoch each, in {tmp_path / 'first'}"
    assert printed[0][0] == start + "/digits_cnn"
    assert printed[0][1:] == [t.line("val_accuracy") for t in results[0].trials]
    assert printed[1] == []


# ---------------------------------------------------------------- a real search


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One real 3-trial random search on 160 digits, shared by the tests below."""
    directory = tmp_path_factory.mktemp("search")
    x, y, xv, yv = _digits(160)
    seen = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = cnnzoo.tune(
            "digits_cnn",
            (x, y, xv, yv),
            tuner="random",
            max_trials=3,
            max_epochs=2,
            out=directory,
            seed=3,
            batch_size=32,
            verbose=seen.append,
        )
    return result, seen, (xv, yv), [str(w.message) for w in caught]


def test_search_runs_three_trials_with_defaults_first(searched):
    result, seen, _, _ = searched
    assert [t.status for t in result.trials] == ["COMPLETED"] * 3
    assert [t.trial_id for t in seen] == [t.trial_id for t in result.trials]  # one progress call per trial
    defaults = {
        k: v
        for k, v in result.hypermodel.declare_hyperparameters(kt.HyperParameters()).items()
        if k in result.trials[0].hyperparameters
    }
    assert result.trials[0].hyperparameters == defaults  # trial 0 is the zoo entry itself
    for t in result.trials:
        assert 1 <= t.epochs <= 2 and t.seconds > 0 and 0.0 <= t.score <= 1.0
        hps = t.hyperparameters
        assert sorted(k for k in hps if k.startswith("filters_")) == [
            f"filters_{i}" for i in range(1, hps["conv_blocks"] + 1)
        ]
        assert sorted(k for k in hps if k.startswith("units_")) == [
            f"units_{j}" for j in range(1, hps["dense_layers"] + 1)
        ]
    scores = [t.score for t in result.ranked()]
    assert scores == sorted(scores, reverse=True) and result.best_trial.score == scores[0]
    table = result.table().splitlines()
    assert table[0].split()[:3] == ["rank", "trial", "val_accuracy"] and len(table) == 4
    assert json.loads(json.dumps(result.to_dict()))["best"]["trial_id"] == result.best_trial.trial_id


def test_best_model_is_rebuilt_and_loaded_cleanly(searched):
    result, _, (xv, yv), messages = searched
    assert not [m for m in messages if "optimizer" in m.lower() and "variables" in m.lower()]
    model = result.best_model
    assert model.optimizer is not None and model.compiled
    _, accuracy = model.evaluate(xv, yv, verbose=0)  # the checkpoint of the best epoch, scored again
    assert accuracy == pytest.approx(result.best_trial.score, abs=1e-6)
    assert result.best_spec == result.hypermodel.spec_for(result.best_hyperparameters)


def test_the_result_repr_is_a_few_lines(searched):
    result, _, _, _ = searched
    text = repr(result)
    best = result.best_trial
    assert len(text.splitlines()) == 5 and len(text) < 800, text  # not the specs, models and trials in full
    assert text.startswith("TuneResult(digits_cnn: random search, 3 trials (3 completed), ")
    assert f"best val_accuracy {best.score:.4f} in trial {best.trial_id}" in text
    assert "best hyperparameters: conv_blocks=" in text and f"files: {result.directory}" in text


def test_score_plot_is_a_png(searched, tmp_path):
    result, _, _, _ = searched
    path = result.plot(tmp_path / "scores.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_register_best_round_trip(searched, isolated_home, tmp_path):
    result, _, (xv, _), _ = searched
    try:
        path = cnnzoo.register_best(result, "my_digits_net")
        # beside the search, registered for this process only: nothing in the cnnzoo home
        assert path == result.directory / "my_digits_net.toml" and not (isolated_home / "configs").exists()
        spec = cnnzoo.spec("my_digits_net")
        raw = {**config.to_dict(result.best_spec), "name": "my_digits_net", "description": spec.description}
        raw.pop("weights", None)  # the entry's named weights do not fit the new architecture
        assert spec == config.parse(raw) and not spec.weights
        model = cnnzoo.get("my_digits_net")
        assert _layers(model) == _layers(result.best_model)
        model.set_weights(result.best_model.get_weights())
        np.testing.assert_allclose(model.predict(xv, verbose=0), result.best_model.predict(xv, verbose=0), atol=1e-6)
        # the same call again (a notebook run twice) replaces the file this search wrote
        assert cnnzoo.register_best(result, "my_digits_net", description="again") == path
        assert cnnzoo.spec("my_digits_net").description == "again"
        assert cnnzoo.list_models().count("my_digits_net") == 1
        # a file someone else wrote is kept unless overwrite=True
        (tmp_path / "hand_made.toml").write_text("# my own config, not a search's\n")
        with pytest.raises(ConfigError, match=r"`name` is taken: .* \(not written by this search\)"):
            cnnzoo.register_best(result, "hand_made", out=tmp_path)
        assert cnnzoo.register_best(result, "hand_made", out=tmp_path, overwrite=True) == tmp_path / "hand_made.toml"
        assert cnnzoo.spec("hand_made").name == "hand_made"
        with pytest.raises(ConfigError, match="already a registered model"):
            cnnzoo.register_best(result, "lenet5")
        with pytest.raises(ConfigError, match="already a registered model"):  # another file's entry
            cnnzoo.register_best(result, "my_digits_net", out=tmp_path)
        with pytest.raises(ConfigError, match="lower_snake_case"):
            cnnzoo.register_best(result, "My Net")
    finally:
        registry.unregister("my_digits_net")
        registry.unregister("hand_made")


def test_register_best_to_the_home_and_by_path_in_another_process(searched, isolated_home):
    result, _, _, _ = searched
    home_configs = isolated_home / "configs"
    path = cnnzoo.register_best(result, "home_net", out=home_configs)  # `cnnzoo tune --register`'s place
    try:
        assert path == home_configs / "home_net.toml" and registry.entry("home_net").path == path.resolve()
        beside = cnnzoo.register_best(result, "beside_net")
        code = (
            "import sys, cnnzoo\n"
            "found = 'home_net' in cnnzoo.list_models(), 'beside_net' in cnnzoo.list_models()\n"
            "spec = cnnzoo.register(sys.argv[1])\n"
            "print(found, spec.name, cnnzoo.spec('beside_net') == spec)\n"
        )
        done = subprocess.run([PYTHON, "-c", code, str(beside)], capture_output=True, text=True, cwd=REPO, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split() == ["(True,", "False)", "beside_net", "True"]
    finally:
        registry.unregister("beside_net")


@pytest.mark.slow
def test_readme_section_3_runs_twice_in_a_row(tmp_path):
    # README's search block as written, a 1-trial search of 1 epoch instead of 20 trials of 10, run twice in
    # two processes sharing a cnnzoo home: the second resumes the finished search and registers it again.
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## 3. ") :]
    block = section[
        section.index("```python\n") + len("```python\n") : section.index("```\n", section.index("```python"))
    ]
    assert 'cnnzoo.register_best(search, "my_digits_net")' in block and "max_trials=20" in block
    code = (
        "import cnnzoo\nbefore = len(cnnzoo.list_models())\n"
        + block.replace("max_trials=20", "max_trials=1, max_epochs=1")
        + "print(before, len(cnnzoo.list_models()), cnnzoo.get('my_digits_net').count_params())\n"
    )
    env = {**os.environ, "CNNZOO_HOME": str(tmp_path / "home"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    runs = [
        subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
        for _ in range(2)
    ]
    for done in runs:
        assert done.returncode == 0, done.stderr[-3000:]
    first, second = (done.stdout.splitlines()[-1].split() for done in runs)
    zoo = len(cnnzoo.list_models())
    assert first == second and first[:2] == [str(zoo), str(zoo + 1)]  # the zoo of a new process is unchanged
    assert "all 1 trial done already" in runs[1].stdout  # the second run found the search finished


def test_old_directory_and_path_keywords_of_the_results_warn_and_still_work(searched, tmp_path):
    result, _, _, _ = searched
    try:
        with pytest.warns(DeprecationWarning, match=r"`register_best\(directory=\.\.\.\)` is deprecated.*use `out=`"):
            path = cnnzoo.register_best(result, "old_keyword_net", directory=tmp_path)
    finally:
        registry.unregister("old_keyword_net")
    assert path == tmp_path / "old_keyword_net.toml" and config.load(path).name == "old_keyword_net"
    with pytest.warns(DeprecationWarning, match=r"`plot\(path=\.\.\.\)` is deprecated.*use `out=`"):
        png = result.plot(path=tmp_path / "scores.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bayesian_search_on_val_loss(tmp_path):
    x, y, xv, yv = _digits(120)
    result = cnnzoo.tune(
        "digits_cnn",
        (x, y, xv, yv),
        tuner="bayesian",
        max_trials=2,
        max_epochs=1,
        objective="val_loss",
        out=tmp_path,
        seed=0,
        search={"conv_blocks": [1, 2]},
        load_best=False,
    )
    assert [t.status for t in result.trials] == ["COMPLETED"] * 2 and result.direction == "min"
    assert result.best_trial.score == min(t.score for t in result.trials)
    assert result.best_model is None and result.best_spec is not None


# ---------------------------------------------------- subprocesses: resume, CLI, distributed

_SEARCH_SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import cnnzoo
    d = cnnzoo.data.digits(seed=0)
    n = int(sys.argv[3])
    result = cnnzoo.tune("digits_cnn", (d.x_train[:n], d.y_train[:n]), tuner=sys.argv[2], max_trials=int(sys.argv[4]),
                         max_epochs=int(sys.argv[5]), out=sys.argv[1], seed=1, early_stopping=0,
                         heartbeat_timeout=3.0)
    print("DONE", [(t.trial_id, t.status) for t in result.trials], result.best_model is not None, flush=True)
""")


def _script(tmp_path):
    path = tmp_path / "search.py"
    path.write_text(_SEARCH_SCRIPT)
    return path


def _wait_for(predicate, timeout, what, procs=()):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(
                    f"a search process ended early (rc={p.returncode}) while waiting for {what}:\n"
                    + (p.stdout.read() if p.stdout else "")
                )
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _completed(runs):
    return [r for r in runs if r["status"] == "completed"]


def test_resume_after_a_killed_search_skips_finished_trials(tmp_path, reliability):
    directory = tmp_path / "search"
    project = directory / "digits_cnn"
    proc = subprocess.Popen(
        [PYTHON, str(_script(tmp_path)), str(directory), "random", "300", "4", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    try:
        # kill -9 while a trial runs, after at least one trial finished
        _wait_for(
            lambda: _completed(read_runs(project)) and any(r["status"] == "running" for r in read_runs(project)),
            120,
            "a finished and a running trial",
            [proc],
        )
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = read_runs(project)
    finished = {r["trial_id"] for r in _completed(before)}
    interrupted = {r["trial_id"] for r in before if r["status"] == "running"}
    assert finished and interrupted and len(finished) < 4

    d = cnnzoo.data.digits(seed=0)
    result = cnnzoo.tune(
        "digits_cnn",
        (d.x_train[:300], d.y_train[:300]),
        tuner="random",
        max_trials=4,
        max_epochs=3,
        out=directory,
        seed=1,
        early_stopping=0,
    )
    assert [t.status for t in result.trials] == ["COMPLETED"] * 4
    after = _completed(read_runs(project))
    assert sorted(r["trial_id"] for r in after) == sorted(t.trial_id for t in result.trials)  # each ran once
    rerun = {r["trial_id"] for r in after if r["pid"] == os.getpid()}
    assert not rerun & finished  # finished trials were not run again
    assert interrupted <= rerun  # the interrupted one was
    reliability.record(
        "search killed with kill -9 mid-trial, then resumed",
        kills=1,
        trials=4,
        finished_trials_run_again=len(rerun & finished),
        interrupted_trials_rerun=len(interrupted),
    )


def test_cli_tune_prints_progress_table_and_saves_the_winner(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            PYTHON,
            "-m",
            "cnnzoo.cli",
            "tune",
            "digits_cnn",
            "digits",
            "--tuner",
            "hyperband",
            "--max-trials",
            "3",
            "--max-epochs",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert sum(line.startswith("trial ") for line in lines) == 3
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["rank", "trial"])
    scores = [float(line.split()[2]) for line in lines[header + 1 : header + 4]]
    assert scores == sorted(scores, reverse=True)
    assert (out / "digits_cnn_scores.png").read_bytes()[:4] == b"\x89PNG"
    assert f"best model:  {out / 'digits_cnn_tuned.keras'}" in proc.stdout
    assert f"best config: {out / 'digits_cnn_tuned.toml'}" in proc.stdout
    spec = config.load(out / "digits_cnn_tuned.toml")
    model = cnnzoo.load(out / "digits_cnn_tuned.keras")
    assert spec.name == "digits_cnn_tuned"
    assert _layers(cnnzoo.builders.build(spec)) == _layers(model)


def test_tune_reads_an_image_directory(image_folder, tmp_path):
    result = cnnzoo.tune(
        "digits_cnn",
        image_folder,
        tuner="random",
        max_trials=1,
        max_epochs=1,
        input_shape=(12, 12, 3),
        out=tmp_path,
        batch_size=4,
        validation_split=0.25,
        seed=0,
    )
    assert result.trials[0].status == "COMPLETED"
    assert result.best_spec.num_classes == 2 and result.best_spec.class_names == ("a", "b")
    assert result.best_model.input_shape == (None, 12, 12, 3)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_distributed_chief_and_two_workers_survive_a_killed_worker(tmp_path, reliability):
    directory = tmp_path / "shared"
    project = directory / "digits_cnn"
    script = _script(tmp_path)
    base_env = {**os.environ, "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(_free_port())}
    procs = {}
    for tuner_id in ("chief", "tuner0", "tuner1"):
        procs[tuner_id] = subprocess.Popen(
            [PYTHON, str(script), str(directory), "random", "400", "6", "4"],
            cwd=REPO,
            env={**base_env, "KERASTUNER_TUNER_ID": tuner_id},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:

        def by(tuner_id, status):
            return [r for r in read_runs(project) if r["tuner_id"] == tuner_id and r["status"] == status]

        # both workers take trials; kill tuner1 in the middle of its second one
        _wait_for(
            lambda: by("tuner1", "completed") and by("tuner1", "running"),
            240,
            "tuner1 to finish a trial and start another",
            procs.values(),
        )
        time.sleep(0.5)
        procs["tuner1"].send_signal(signal.SIGKILL)
        procs["tuner1"].wait(timeout=30)
        killed_trial = by("tuner1", "running")[0]["trial_id"]
        for tuner_id in ("tuner0", "chief"):
            out, _ = procs[tuner_id].communicate(timeout=240)
            assert procs[tuner_id].returncode == 0, out[-3000:]
            assert any(line.startswith("DONE") and line.endswith("True") for line in out.splitlines()), out[-3000:]
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    trials = [json.loads(p.read_text()) for p in sorted(project.glob("trial_*/trial.json"))]
    assert len(trials) == 6 and {t["status"] for t in trials} == {"COMPLETED"}
    done = _completed(read_runs(project))
    assert sorted(r["trial_id"] for r in done) == sorted(t["trial_id"] for t in trials)  # every trial ran once
    assert {r["tuner_id"] for r in done} == {"tuner0", "tuner1"}  # both workers did work
    assert [r["tuner_id"] for r in done if r["trial_id"] == killed_trial] == ["tuner0"]  # taken over
    assert (project / RUNS_DIR).is_dir() and Path(project / "oracle.json").is_file()
    reliability.record(
        "distributed search, one of two workers killed with kill -9 mid-trial",
        trials=6,
        completed=len(trials),
        trials_run_twice=len(done) - len(trials),
        killed_trial_taken_over=1,
    )
