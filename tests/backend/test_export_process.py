"""`cnnzoo.export` on JAX and PyTorch: the same weights exported by a TensorFlow-backend process, verified."""

import numpy as np
import pytest

import cnnzoo
from conftest import on_backend


@pytest.mark.backends
def test_onnx_and_litert_from_each_backend_match_tensorflow(other_backend, tmp_path):
    source = tmp_path / "digits.keras"
    cnnzoo.get("digits_cnn", weights="digits", compile=False).save(source)
    got = on_backend(
        other_backend,
        f"""
        import json
        import numpy as np
        import cnnzoo

        model = cnnzoo.load({str(source)!r})  # loaded on this backend, exported from it
        onnx = cnnzoo.export(model, {str(tmp_path / "d.onnx")!r})
        lite = cnnzoo.export({str(source)!r}, {str(tmp_path / "d.tflite")!r}, verify_with=np.full((3, 8, 8, 1), 99.0))
        try:
            cnnzoo.export(model, {str(tmp_path / "bad.onnx")!r}, tolerance=-1)
            error = None
        except cnnzoo.ConfigError as e:
            error = str(e)
        print(json.dumps({{"onnx": onnx.to_dict(), "lite": lite.to_dict(), "error": error}}))
        """,
    )
    assert got["onnx"]["format"] == "onnx" and got["onnx"]["images"] == 360 and got["onnx"]["max_abs_diff"] < 1e-5
    assert got["onnx"]["top1_agreement"] == 1.0 and got["lite"]["images"] == 3 and got["lite"]["max_abs_diff"] < 1e-4
    assert got["error"].startswith("`tolerance` must be a number >= 0")  # the same error class and message
    assert not (tmp_path / "bad.onnx").exists()

    from cnnzoo.deploy.runtimes import open_runtime

    x = np.random.default_rng(0).uniform(0, 255, (4, 8, 8, 1)).astype("float32")
    expected = np.asarray(cnnzoo.load(source)(x, training=False))
    np.testing.assert_allclose(open_runtime(tmp_path / "d.onnx", "onnx")(x), expected, atol=1e-5)
    assert open_runtime(tmp_path / "d.onnx", "onnx").class_names == [str(i) for i in range(10)]
