"""The `cnnzoo` command, run as a real subprocess; list/info never import TensorFlow."""

import json
import subprocess
from pathlib import Path

import cnnzoo
from conftest import PYTHON, REPO

CNNZOO = str(Path(PYTHON).parent / "cnnzoo")


def run(*args):
    return subprocess.run([CNNZOO, *args], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_list_json_matches_the_registry():
    proc = run("list", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["name"] for r in rows] == cnnzoo.list_models()
    vgg16 = next(r for r in rows if r["name"] == "vgg16")
    assert vgg16["params"] == 138_357_544 and vgg16["input_shape"] == [224, 224, 3]


def test_list_table_and_pattern():
    proc = run("list", "vgg1*")
    assert proc.returncode == 0
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split()[:2] == ["name", "kind"]
    assert [line.split()[0] for line in lines[1:]] == ["vgg11", "vgg13", "vgg16", "vgg19"]


def test_info_text_and_json():
    proc = run("info", "lenet5")
    assert proc.returncode == 0
    assert "params: 61,706" in proc.stdout and "block1_conv1" in proc.stdout
    proc = run("info", "lenet5", "--json", "--input-shape", "64x64x1", "--num-classes", "2")
    data = json.loads(proc.stdout)
    assert data["input_shape"] == [64, 64, 1] and data["num_classes"] == 2
    assert data["params"] == cnnzoo.info("lenet5", input_shape=(64, 64, 1), num_classes=2).params
    assert data["search"]["learning_rate"] == {"min": 0.0001, "max": 0.01, "sampling": "log"}


def test_errors_exit_2_with_a_clear_message():
    proc = run("info", "lenet")
    assert proc.returncode == 2
    assert "`lenet5`" in proc.stderr and "Traceback" not in proc.stderr


def test_import_list_and_info_never_load_tensorflow():
    script = (
        "import sys, io, contextlib, cnnzoo, cnnzoo.cli\n"
        "names = cnnzoo.list_models(); cnnzoo.info('vgg16')\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    cnnzoo.cli.main(['list']); cnnzoo.cli.main(['info', 'bird_classifier', '--json'])\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'keras_tuner') if m in sys.modules]\n"
        "print(len(names), heavy)\n"
    )
    proc = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{len(cnnzoo.list_models())} []"


def test_command_defaults_are_the_library_defaults():
    import inspect

    from cnnzoo.cli.app import build_parser
    from cnnzoo.deploy import inference, serve

    parser = build_parser()

    def parsed(*argv):
        return vars(parser.parse_args(list(argv)))

    def defaults(fn):
        return {k: p.default for k, p in inspect.signature(fn).parameters.items()}

    tune, library = parsed("tune", "digits_cnn", "digits"), defaults(cnnzoo.tune)
    for key in ("tuner", "max_trials", "max_epochs", "objective", "seed", "batch_size", "validation_split"):
        assert tune[key] == library[key], key
    assert (tune["batch_size"], tune["validation_split"]) == (
        cnnzoo.data.DataOptions.batch_size,
        cnnzoo.data.DataOptions.validation_split,
    )
    export, library = parsed("export", "m.keras", "m.onnx"), defaults(cnnzoo.export)
    assert (export["format"], export["quantize"], export["tolerance"], export["images"]) == (
        library["format"],
        library["quantize"],
        library["tolerance"],
        library["verify_with"],
    )
    predict, library = parsed("predict", "m.keras", "a.png"), defaults(inference.predict)
    assert (predict["top_k"], predict["runtime"], predict["tta"]) == (
        library["top_k"],
        library["runtime"],
        library["tta"],
    )
    served, app, server = parsed("serve", "m.keras"), defaults(serve.create_app), defaults(serve.serve)
    assert (served["host"], served["port"]) == (server["host"], server["port"])
    for key in ("top_k", "max_batch", "max_delay_ms", "max_upload_mb", "runtime"):
        assert served[key] == app[key], key


def test_a_command_builds_only_its_own_arguments():
    script = (
        "import sys, io, contextlib, cnnzoo.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    cnnzoo.cli.main(['list'])\n"
        "print(sorted(m for m in ('numpy', 'cnnzoo.deploy.export', 'cnnzoo.tuning.api') if m in sys.modules))\n"
    )
    proc = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"  # the other commands' defaults were not imported
