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
