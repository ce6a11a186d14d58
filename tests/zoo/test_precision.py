"""Mixed precision of zoo models: `dtype=` on `cnnzoo.get`, per-layer policies (Keras' global policy left
alone), the softmax and preprocessing kept in float32, loss scaling for float16, save/load, predict, export."""

import importlib.util

import numpy as np
import pytest

import cnnzoo
from cnnzoo.errors import ConfigError
from cnnzoo.zoo.precision import check_dtype, dtype_of, with_dtype


def digits(dtype, **kw):
    return cnnzoo.get("digits_cnn", dtype=dtype, **kw)


def pixels(n=16, shape=(8, 8, 1), seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, *shape)).astype("float32")


@pytest.mark.parametrize("dtype, compute", [("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")])
def test_layers_compute_in_low_precision_and_the_softmax_stays_float32(dtype, compute):
    import keras

    model = digits(dtype)
    conv = model.get_layer("block1").steps[0]
    head = model.get_layer("head")
    assert conv.compute_dtype == compute and conv.kernel.dtype == "float32"  # weights stay float32
    assert {s.compute_dtype for s in head.steps[:-1]} == {compute}
    assert head.steps[-1].name == "predictions" and head.steps[-1].compute_dtype == "float32"
    assert model.get_layer("preprocess").compute_dtype == "float32"  # exact pixel arithmetic
    assert model.output.dtype == "float32"
    assert dtype_of(model) == dtype
    assert keras.config.dtype_policy().name == "float32"  # the caller's global policy is untouched
    probs = model.predict(pixels(), verbose=0)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_default_and_float32_build_what_they_built_before():
    a, b = digits(None), digits("float32")
    assert dtype_of(a) == dtype_of(b) == "float32"
    assert a.get_layer("block1").steps[0].compute_dtype == "float32"
    assert a.count_params() == b.count_params() == digits("mixed_bfloat16").count_params()


@pytest.mark.parametrize("bad", ["bfloat16", "float16", "mixed_bf16", 16, "fp32"])
def test_a_bad_dtype_is_a_clear_error(bad):
    with pytest.raises(ConfigError, match=r"`dtype` must be None \(float32\), 'float32', 'mixed_bfloat16'.*Received"):
        digits(bad)


def test_a_keras_policy_object_is_accepted():
    import keras

    assert check_dtype(keras.DTypePolicy("mixed_bfloat16")) == "mixed_bfloat16"
    assert check_dtype(None) is None


def test_mixed_float16_compiles_with_loss_scaling():
    import keras

    assert isinstance(digits("mixed_float16").optimizer, keras.optimizers.LossScaleOptimizer)
    assert not isinstance(digits("mixed_bfloat16").optimizer, keras.optimizers.LossScaleOptimizer)


@pytest.mark.parametrize("dtype", ["mixed_bfloat16", "mixed_float16"])
def test_save_and_load_keep_the_policy_and_the_predictions(tmp_path, dtype):
    model = digits(dtype)
    x, y = pixels(32), np.arange(32) % 10
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = cnnzoo.load(path)
    assert dtype_of(loaded) == dtype
    assert loaded.get_layer("head").steps[-1].compute_dtype == "float32"
    assert loaded.get_layer("block2").steps[0].compute_dtype == dtype.split("_")[1]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    result = cnnzoo.predict(path, x[:3])
    assert [r.label for r in result] == [str(i) for i in model.predict(x[:3], verbose=0).argmax(1)]


def test_with_dtype_moves_a_model_between_policies_with_its_weights():
    model = cnnzoo.get(
        "bird_classifier",
        num_classes=3,
        input_shape=(16, 16, 3),
        dense=[8],
        blocks=[{"filters": 4, "batch_norm": True}, {"filters": 8}],
    )
    fast = with_dtype(model, "mixed_bfloat16")
    assert dtype_of(fast) == "mixed_bfloat16" and not fast.compiled
    assert fast.get_layer("preprocess").compute_dtype == "float32"
    assert fast.get_layer("head").steps[-1].compute_dtype == "float32"
    for a, b in zip(model.get_weights(), fast.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = pixels(8, (16, 16, 3))
    np.testing.assert_allclose(fast.predict(x, verbose=0), model.predict(x, verbose=0), atol=0.02)
    back = with_dtype(fast, "float32")
    np.testing.assert_allclose(back.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert with_dtype(model, None) is model and with_dtype(model, "float32") is model


def test_backbone_entries_take_the_policy_and_leave_the_global_one_alone():
    import keras

    model = cnnzoo.get(
        "mobilenetv3small_classifier", num_classes=3, input_shape=(32, 32, 3), compile=False, dtype="mixed_bfloat16"
    )
    assert {layer.dtype_policy.name for layer in model.get_layer("backbone").layers if layer.weights} == {
        "mixed_bfloat16"
    }
    assert keras.config.dtype_policy().name == "float32"
    assert model.output.dtype == "float32"


@pytest.mark.skipif(
    importlib.util.find_spec("tf2onnx") is None or importlib.util.find_spec("onnxruntime") is None,
    reason="needs tf2onnx and onnxruntime (cnnzoo[export])",
)
def test_onnx_export_of_a_mixed_bfloat16_model(tmp_path):
    import onnxruntime as ort

    model = digits("mixed_bfloat16")
    x = pixels(8)
    expected = model.predict(x, verbose=0)
    model.export(str(tmp_path / "raw.onnx"), format="onnx")  # Keras writes it...
    assert (tmp_path / "raw.onnx").stat().st_size > 0
    # ...and ONNX Runtime has no bfloat16 Conv on CPU: a float32 copy is what runs there
    plain = with_dtype(model, "float32")
    plain(x[:1])  # Keras exports only a model that has been called
    plain.export(str(tmp_path / "m.onnx"), format="onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, expected, atol=0.02)
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.875
