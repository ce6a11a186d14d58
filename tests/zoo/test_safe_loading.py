"""No code runs from a model file: cnnzoo loads in Keras safe mode and says so."""

import pytest

import cnnzoo


def test_a_model_file_with_python_code_is_refused_and_the_code_never_runs(tmp_path, reliability):
    import keras

    ran = tmp_path / "ran"
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    path = tmp_path / "code.keras"
    keras.Model(inputs, outputs).save(path)
    # a Lambda whose code, if ever run on load, would leave a file behind
    ran_path = str(ran)
    marker = keras.layers.Lambda(lambda x: (open(ran_path, "w").close(), x)[1])
    keras.Model(inputs, marker(inputs)).save(tmp_path / "marker.keras")
    ran.unlink()  # building the model ran the lambda once; loading must not
    refused = 0
    for p in (path, tmp_path / "marker.keras"):
        with pytest.raises(
            cnnzoo.UnsafeModelError, match=r"`path` holds Python code.*never runs code.*Received: path="
        ):
            cnnzoo.load(p)
        refused += 1
        with pytest.raises(cnnzoo.UnsafeModelError):
            cnnzoo.predict(p, [0.0] * 4)
    assert not ran.exists()
    assert isinstance(cnnzoo.UnsafeModelError("x"), ValueError)
    reliability.record("model files holding Python code (Lambda layers)", files=2, refused=refused, code_run=0)


def test_load_registers_the_cnnzoo_layers_itself(tmp_path):
    """`cnnzoo.zoo.loading.load` in a fresh process, nothing else of cnnzoo imported first (as `cnnzoo export` runs)."""
    import subprocess

    from conftest import PYTHON, REPO

    cnnzoo.get("digits_cnn", compile=False).save(tmp_path / "m.keras")
    code = f"from cnnzoo.zoo.loading import load; print(load({str(tmp_path / 'm.keras')!r}).name)"
    done = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "digits_cnn", done.stderr[-2000:]


def test_a_truncated_damaged_or_partial_keras_file_is_named_with_what_is_wrong(tmp_path):
    """Keras says "File not found" for a file that exists but is truncated; cnnzoo says what is wrong."""
    import subprocess
    import sys
    import zipfile

    whole = tmp_path / "whole.keras"
    cnnzoo.get("lenet5", num_classes=3).save(whole)
    data = whole.read_bytes()
    (tmp_path / "truncated.keras").write_bytes(data[: len(data) // 2])
    with zipfile.ZipFile(whole) as archive, zipfile.ZipFile(tmp_path / "flipped.keras", "w") as out:
        for info in archive.infolist():  # stored as saved, then one byte of the weights flipped below
            out.writestr(info, archive.read(info.filename))
    flipped = bytearray((tmp_path / "flipped.keras").read_bytes())
    at = bytes(flipped).index(b"TREE") + 64  # inside model.weights.h5 (HDF5 B-tree node), stored uncompressed
    flipped[at] ^= 0xFF
    (tmp_path / "flipped.keras").write_bytes(bytes(flipped))
    with zipfile.ZipFile(whole) as archive, zipfile.ZipFile(tmp_path / "partial.keras", "w") as out:
        out.writestr("config.json", archive.read("config.json"))
    cases = {
        "truncated": r"must be a whole \.keras file \(a zip archive\); this one is truncated",
        "flipped": r"damaged \.keras file: its member 'model.weights.h5' fails its CRC check",
        "partial": r"lacks model\.weights\.h5",
    }
    for name, message in cases.items():
        with pytest.raises(cnnzoo.errors.WeightsError, match=message + r".*Received: path=.*" + name):
            cnnzoo.load(tmp_path / f"{name}.keras")
    done = subprocess.run(
        [sys.executable, "-m", "cnnzoo.cli", "predict", str(tmp_path / "truncated.keras"), "x.png"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "cnnzoo: error: `path` must be a whole .keras file" in done.stderr


def test_num_classes_past_the_bound_is_a_config_error_before_any_tensorflow_work():
    for n in (10**20, 10**12, 2**20 + 1):
        with pytest.raises(cnnzoo.ConfigError, match=rf"`num_classes` must be an integer >= 1 and <= 1048576.*{n}"):
            cnnzoo.get("lenet5", num_classes=n)
