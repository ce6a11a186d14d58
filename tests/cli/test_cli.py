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
