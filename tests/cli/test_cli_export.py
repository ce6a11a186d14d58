"""`cnnzoo export` and `cnnzoo predict` on exported files, run as real subprocesses."""

import json
import subprocess

import pytest

import cnnzoo
from conftest import PYTHON, REPO


def cnnzoo_cli(*args):
    return subprocess.run(
        [PYTHON, "-m", "cnnzoo.cli", *map(str, args)], capture_output=True, text=True, cwd=REPO, timeout=180
    )


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_export")
    cnnzoo.get("digits_cnn", weights="digits", compile=False).save(root / "digits.keras")
    _, test_dir = cnnzoo.data.digits_folder(root / "images")
    return root, test_dir


def test_export_onnx_json_then_predict_on_the_file(digits):
    root, test_dir = digits
    proc = cnnzoo_cli("export", root / "digits.keras", root / "digits.onnx", "--images", test_dir, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["format"] == "onnx" and result["images"] == 360 and result["max_abs_diff"] < 1e-5
    assert result["top1_agreement"] == 1.0 and result["exported_accuracy"] == result["keras_accuracy"] > 0.99
    assert result["class_names"] == [str(i) for i in range(10)] and (root / "digits.onnx").is_file()
    images = (
        sorted(str(p) for p in (test_dir / "3").glob("*.png"))[:4]
        + sorted(str(p) for p in (test_dir / "8").glob("*.png"))[:4]
    )
    on_file = cnnzoo_cli("predict", root / "digits.onnx", *images, "--json", "--top-k", "2")
    on_keras = cnnzoo_cli("predict", root / "digits.keras", *images, "--json", "--top-k", "2")
    assert on_file.returncode == on_keras.returncode == 0, on_file.stderr[-2000:] + on_keras.stderr[-2000:]
    got, expected = json.loads(on_file.stdout), json.loads(on_keras.stdout)
    assert [p["label"] for p in got] == [p["label"] for p in expected] == ["3"] * 4 + ["8"] * 4
    assert [p["top_k"][1]["label"] for p in got] == [p["top_k"][1]["label"] for p in expected]


def test_export_int8_litert_text_and_a_failed_check(digits):
    root, test_dir = digits
    proc = cnnzoo_cli("export", root / "digits.keras", root / "digits_int8.tflite", "--quantize", "int8")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "litert, int8" in proc.stdout and "top-1 agreement" in proc.stdout and "change" in proc.stdout
    proc = cnnzoo_cli("export", root / "digits.keras", root / "sm", "--format", "savedmodel", "--tolerance", "-1")
    assert proc.returncode == 2 and "`tolerance` must be a number >= 0" in proc.stderr
    proc = cnnzoo_cli("export", root / "digits.keras", root / "digits.bin")
    assert proc.returncode == 2 and "`format` must be given" in proc.stderr
    proc = cnnzoo_cli("predict", root / "digits.keras", sorted(test_dir.rglob("*.png"))[0], "--runtime", "litert")
    assert proc.returncode == 0, proc.stderr[-2000:]
    from cnnzoo.deploy.exported_cache import cached_paths

    exported, record = cached_paths(root / "digits.keras", "litert")  # in CNNZOO_HOME, nothing beside the model
    assert exported.is_file() and record.is_file() and not (root / "digits.keras.tflite").exists()
