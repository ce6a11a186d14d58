"""Registry sources: built-in configs, CNNZOO_CONFIG_PATH, @register and register(path), entry points."""

import subprocess
import textwrap

import pytest
from test_config import MINIMAL

import cnnzoo
from cnnzoo.errors import ConfigError, DuplicateModelError, UnknownModelError
from cnnzoo.zoo import registry
from conftest import PYTHON, REPO


def test_unknown_name_is_a_keyerror_with_the_closest_names():
    with pytest.raises(UnknownModelError) as err:
        cnnzoo.get("vgg61")
    assert isinstance(err.value, KeyError)
    assert "`vgg16`" in str(err.value) and "Received: name='vgg61'" in str(err.value)
    with pytest.raises(KeyError, match="cnnzoo list"):
        cnnzoo.info("birds_classifier")


def test_list_models_pattern():
    assert cnnzoo.list_models("vgg*") == ["vgg11", "vgg13", "vgg16", "vgg19"]
    assert cnnzoo.list_models() == sorted(cnnzoo.list_models())


def test_config_path_adds_a_model_with_no_code(tmp_path, monkeypatch, rng):
    (tmp_path / "tiny.toml").write_text(MINIMAL)
    monkeypatch.setenv("CNNZOO_CONFIG_PATH", str(tmp_path))
    registry.refresh()
    assert "tiny" in cnnzoo.list_models()
    assert "CNNZOO_CONFIG_PATH" in cnnzoo.info("tiny").source
    model = cnnzoo.get("tiny")
    assert model.predict(rng.uniform(0, 255, (1, 16, 16, 3)), verbose=0).shape == (1, 4)


def test_duplicate_config_names_both_sources(tmp_path, monkeypatch):
    (tmp_path / "lenet5.toml").write_text(MINIMAL.replace('"tiny"', '"lenet5"'))
    monkeypatch.setenv("CNNZOO_CONFIG_PATH", str(tmp_path))
    registry.refresh()
    with pytest.raises(DuplicateModelError) as err:
        cnnzoo.list_models()
    assert "zoo_configs/lenet5.toml (built-in)" in str(err.value)
    assert str(tmp_path / "lenet5.toml") in str(err.value)


def test_register_a_config_file_or_spec_for_this_process(tmp_path, monkeypatch):
    path = tmp_path / "tiny.toml"
    path.write_text(MINIMAL)
    try:
        spec = cnnzoo.register(str(path))  # a path: registered at once, in this process only
        assert spec.name == "tiny" and cnnzoo.spec("tiny") == spec
        assert registry.entry("tiny").path == path.resolve() and "(cnnzoo.register)" in cnnzoo.info("tiny").source
        path.write_text(MINIMAL.replace("A tiny test net.", "Rewritten."))
        assert cnnzoo.register(path).description == "Rewritten."  # the same file again: the entry follows it
        assert cnnzoo.list_models().count("tiny") == 1
        other = tmp_path / "other" / "tiny.toml"
        other.parent.mkdir()
        other.write_text(MINIMAL)
        with pytest.raises(DuplicateModelError, match="registered twice"):
            cnnzoo.register(other)
        monkeypatch.setenv("CNNZOO_CONFIG_PATH", str(tmp_path))  # now scanned as well: one entry, no clash
        registry.refresh()
        registry.unregister("tiny")
        assert cnnzoo.register(path) == cnnzoo.spec("tiny") and "CNNZOO_CONFIG_PATH" in cnnzoo.info("tiny").source
    finally:
        registry.unregister("tiny")
    lenet = cnnzoo.spec("lenet5")
    with pytest.raises(DuplicateModelError):  # a ModelSpec too, checked against the zoo
        cnnzoo.register(lenet)


def test_config_path_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNZOO_CONFIG_PATH", str(tmp_path / "missing"))
    registry.refresh()
    with pytest.raises(ConfigError, match="`CNNZOO_CONFIG_PATH` must list existing directories"):
        cnnzoo.list_models()
    (tmp_path / "other_name.toml").write_text(MINIMAL)
    monkeypatch.setenv("CNNZOO_CONFIG_PATH", str(tmp_path))
    registry.refresh()
    with pytest.raises(ConfigError, match="`name` must equal the file name `other_name`"):
        cnnzoo.list_models()
    (tmp_path / "other_name.toml").write_text("name = [")
    registry.refresh()
    with pytest.raises(ConfigError, match="is not valid TOML"):
        cnnzoo.list_models()


def test_register_a_builder_function(rng):
    import keras

    @cnnzoo.register("plain_dense")
    def plain_dense(num_classes=None, input_shape=None, weights=None):
        """A dense-only baseline."""
        inputs = keras.Input(input_shape or (4, 4, 1))
        outputs = keras.layers.Dense(num_classes or 2, activation="softmax")(keras.layers.Flatten()(inputs))
        return keras.Model(inputs, outputs)

    try:
        assert "plain_dense" in cnnzoo.list_models()
        assert cnnzoo.info("plain_dense").description == "A dense-only baseline."
        model = cnnzoo.get("plain_dense", num_classes=3)
        assert model.compiled and model.output_shape == (None, 3)
        with pytest.raises(DuplicateModelError, match="test_registry"):
            cnnzoo.register("plain_dense")(plain_dense)
        with pytest.raises(DuplicateModelError, match="built-in"):
            cnnzoo.register("lenet5")(plain_dense)
    finally:
        registry.unregister("plain_dense")
    assert "plain_dense" not in cnnzoo.list_models()


def _pip_install(pkg, site):
    """pip-installs the package at `pkg` offline into `site`; returns `site`."""
    pip = subprocess.run(
        [
            PYTHON,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(site),
            str(pkg),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stderr
    return site


def test_entry_point_plugin_from_an_installed_package(tmp_path):
    """A real package, pip-installed offline into a target dir, adds two models by entry point."""
    pkg = tmp_path / "src"
    (pkg / "zoo_plugin").mkdir(parents=True)
    (pkg / "zoo_plugin" / "__init__.py").write_text(
        textwrap.dedent('''
        CONFIG = {"name": "plugin_net", "description": "From a plugin.", "input_shape": [8, 8, 1],
                  "num_classes": 3, "blocks": [{"filters": 4}]}

        def build(num_classes=None, input_shape=None, weights=None):
            """A plugin builder."""
            import keras
            inputs = keras.Input(input_shape or (8, 8, 1))
            x = keras.layers.Flatten()(inputs)
            return keras.Model(inputs, keras.layers.Dense(num_classes or 2, activation="softmax")(x))
    ''')
    )
    (pkg / "pyproject.toml").write_text(
        textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "zoo-plugin"
        version = "0.1"
        [project.entry-points."cnnzoo.models"]
        plugin_net = "zoo_plugin:CONFIG"
        plugin_code_net = "zoo_plugin:build"
        [tool.setuptools]
        packages = ["zoo_plugin"]
    """)
    )
    site = _pip_install(pkg, tmp_path / "site")
    script = textwrap.dedent("""
        import sys, cnnzoo
        names = cnnzoo.list_models("plugin*")
        assert "zoo_plugin" not in sys.modules, "listing must not import the plugin"
        info = cnnzoo.info("plugin_net")
        model = cnnzoo.get("plugin_net")
        code = cnnzoo.get("plugin_code_net", num_classes=5)
        print(names, info.params, model.output_shape, code.output_shape, "entry point" in info.source)
    """)
    env = {
        "PYTHONPATH": str(site),
        "PATH": "/usr/bin:/bin",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "CNNZOO_HOME": str(tmp_path / "home"),
    }
    proc = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "['plugin_code_net', 'plugin_net'] 235 (None, 3) (None, 5) True"


def test_plugins_written_the_usual_way_and_broken_plugins(tmp_path):
    """A builder with its own defaults gets only what the caller gave; a broken plugin fails the same clear
    way at every call and hides nothing else (`cnnzoo list` lists the rest, with one warning)."""
    pkg = tmp_path / "src"
    (pkg / "usual_plugin").mkdir(parents=True)
    (pkg / "usual_plugin" / "__init__.py").write_text(
        textwrap.dedent('''
        def build(num_classes=3, input_shape=(32, 32, 3), **kw):
            """A builder with defaults of its own."""
            import keras
            inputs = keras.Input(input_shape)
            x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
            return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))
    ''')
    )
    (pkg / "broken_plugin.py").write_text("raise ImportError('this plugin needs libfoo')\n")
    (pkg / "pyproject.toml").write_text(
        textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "usual-plugin"
        version = "0.2"
        [project.entry-points."cnnzoo.models"]
        usual_net = "usual_plugin:build"
        broken_net = "broken_plugin:build"
        [tool.setuptools]
        packages = ["usual_plugin"]
        py-modules = ["broken_plugin"]
    """)
    )
    site = _pip_install(pkg, tmp_path / "site")
    script = textwrap.dedent("""
        import cnnzoo
        print("SHAPES", cnnzoo.get("usual_net").input_shape, cnnzoo.get("usual_net", num_classes=5).output_shape)
        for attempt in range(2):
            try:
                cnnzoo.get("broken_net")
            except cnnzoo.PluginError as e:
                print("ERROR", attempt, isinstance(e, ValueError), str(e))
        print("LIST", len(cnnzoo.list_models()))
    """)
    env = {
        "PYTHONPATH": str(site),
        "PATH": "/usr/bin:/bin",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "CNNZOO_HOME": str(tmp_path / "home"),
    }
    proc = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout.splitlines()
    assert "SHAPES (None, 32, 32, 3) (None, 5)" in out
    errors = [line for line in out if line.startswith("ERROR")]
    assert [e.split()[:3] for e in errors] == [["ERROR", "0", "True"], ["ERROR", "1", "True"]]
    assert errors[0].split(" ", 3)[3] == errors[1].split(" ", 3)[3]  # the same message at every call
    for part in ("broken_net = broken_plugin:build", "usual-plugin", "ImportError", "this plugin needs libfoo"):
        assert part in errors[0]
    listing = subprocess.run(
        [PYTHON, "-m", "cnnzoo.cli", "list"], capture_output=True, text=True, env=env, cwd=REPO, timeout=300
    )
    assert listing.returncode == 0, listing.stderr[-3000:]
    names = [line.split()[0] for line in listing.stdout.splitlines()[1:]]
    assert "usual_net" in names and "vgg16" in names and "broken_net" not in names
    assert listing.stderr.count("warning") == 1 and "broken_net" in listing.stderr
