"""int8 and float16 exports of the shipped digits model: smaller files, accuracy kept on the held-out digits."""

import warnings

import numpy as np
import pytest

import cnnzoo
from cnnzoo.deploy.runtimes import open_runtime
from cnnzoo.errors import DataWarning, ExportError


@pytest.fixture(scope="module")
def digits_model():
    return cnnzoo.get("digits_cnn", weights="digits", compile=False)  # 99.44% on the 360 held-out digits


@pytest.fixture(scope="module")
def quantized(digits_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("quantized")
    return {
        (fmt, q): cnnzoo.export(digits_model, out / f"digits_{q}{suffix}", fmt, quantize=q)
        for fmt, suffix, q in [
            ("onnx", ".onnx", "int8"),
            ("litert", ".tflite", "int8"),
            ("litert", ".tflite", "float16"),
        ]
    }


@pytest.mark.parametrize("fmt", ["onnx", "litert"])
def test_int8_keeps_top1_within_one_point_and_is_smaller(fmt, quantized):
    result = quantized[fmt, "int8"]
    # calibrated on the digits training split, checked on the 360 held-out digits with their labels
    assert result.images == 360 and result.keras_accuracy == pytest.approx(0.9944, abs=1e-3)
    assert result.exported_accuracy >= result.keras_accuracy - 0.01  # the goal: within 1 point
    assert result.accuracy_change == result.exported_accuracy - result.keras_accuracy
    assert result.top1_agreement >= 0.98 and result.tolerance == 0.02
    assert result.size_bytes < 0.4 * result.float_size_bytes  # int8 weights: about a quarter of float32
    assert result.max_abs_diff > 1e-4  # it really is quantized
    assert "change" in result.summary() and "int8" in result.summary()


def test_float16_litert_halves_the_file_and_keeps_probabilities_close(quantized):
    result = quantized["litert", "float16"]
    assert result.size_bytes < 0.6 * result.float_size_bytes
    assert result.max_abs_diff < 1e-2 and result.exported_accuracy >= result.keras_accuracy - 0.01


def test_quantized_files_take_float_images_with_a_dynamic_batch(quantized, digits_model):
    x = cnnzoo.data.digits().x_test[:9].astype("float32")
    expected = digits_model.predict(x, verbose=0).argmax(1)
    for result in quantized.values():
        runtime = open_runtime(result.path)
        assert runtime.class_names == [str(i) for i in range(10)]
        for n in (1, 9):
            assert (runtime(x[:n]).argmax(1) == expected[:n]).all()


def test_int8_calibrated_on_the_users_folder(digits_model, tmp_path):
    _, test_dir = cnnzoo.data.digits_folder(tmp_path / "digits")  # <class>/<i>.png: labelled by folder
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = cnnzoo.export(digits_model, tmp_path / "mine.tflite", quantize="int8", verify_with=test_dir)
    assert result.images == 360 and "images from" in result.source
    assert result.exported_accuracy >= result.keras_accuracy - 0.01
    assert not [w for w in caught if issubclass(w.category, DataWarning)]  # 200 calibration images: enough


def test_int8_on_few_images_warns(digits_model, tmp_path):
    few = cnnzoo.data.digits().x_test[:8]
    with pytest.warns(DataWarning, match=r"int8 quantization is calibrated on 8 images, from the images given") as w:
        cnnzoo.export(digits_model, tmp_path / "few.tflite", quantize="int8", verify_with=few, tolerance=1.0)
    assert "at least 100 images" in str(w[0].message) and w[0].filename == __file__  # points at the caller
    # the same from the TensorFlow-backend child process that JAX and PyTorch export through
    from cnnzoo.deploy.export_process import export_in_tensorflow

    source = tmp_path / "digits.keras"
    digits_model.save(source)
    with pytest.warns(DataWarning, match=r"calibrated on 3 images"):
        export_in_tensorflow(source, tmp_path / "child.onnx", "onnx", np.full((3, 8, 8, 1), 99.0), "int8", 1.0)
    assert (tmp_path / "child.onnx").is_file()


def test_int8_tolerance_is_top1_agreement_not_abs_difference(tmp_path):
    from cnnzoo.deploy.verify import Comparison, check

    far_but_agreeing = Comparison(images=100, max_abs_diff=0.3, top1_agreement=1.0)
    check(far_but_agreeing, 0.02, "int8", "ONNX model", tmp_path / "x.onnx")  # int8: labels count, not diffs
    with pytest.raises(ExportError, match="max abs difference 0.3 is beyond"):
        check(far_but_agreeing, 0.01, None, "ONNX model", tmp_path / "x.onnx")
    with pytest.raises(ExportError, match=r"top-1 agreement 95.0% is below 98.0%"):
        check(
            Comparison(images=100, max_abs_diff=0.01, top1_agreement=0.95),
            0.02,
            "int8",
            "ONNX model",
            tmp_path / "x.onnx",
        )
