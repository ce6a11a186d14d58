"""`cnnzoo.backend.training` and fine-tuning on every backend: finetune, resume, find_lr, files TF reads back."""

import json

import numpy as np
import pytest

from cnnzoo import backend
from cnnzoo.backend import training
from cnnzoo.errors import BackendError
from conftest import brightness_blobs, on_backend, require_backend


def test_tensorflow_settings():
    import tensorflow as tf

    assert training.jit_compile() is False  # XLA measured slower on CPU (docs/benchmarks.md)
    assert training.steps_per_execution_limit() is None
    batch = (tf.zeros((2, 3)), tf.zeros((2,)))
    assert training.host_batch(batch) is batch
    strategy = tf.distribute.get_strategy()
    assert training.check_strategy(strategy) is strategy and training.check_strategy(None) is None
    training.check_distributed_search()  # keras-tuner's chief/worker mode runs here


@pytest.mark.parametrize("name, jit, limit", [("jax", True, None), ("torch", False, 1)])
def test_other_backends_settings(monkeypatch, name, jit, limit):
    import tensorflow as tf

    monkeypatch.setattr(backend, "name", lambda: name)
    assert training.jit_compile() is jit and training.steps_per_execution_limit() == limit
    x, y = training.host_batch((tf.ones((2, 3)), tf.zeros((2,), tf.int32)))
    assert isinstance(x, np.ndarray) and x.shape == (2, 3) and y.dtype == np.int32
    with pytest.raises(BackendError, match=rf"tf.distribute strategy.*Received: strategy=.*KERAS_BACKEND='{name}'"):
        training.check_strategy(tf.distribute.get_strategy())
    assert training.batch_shards() == 1  # no keras.distribution set
    data = tf.data.Dataset.from_tensor_slices((tf.zeros((5, 2)), tf.zeros((5,)))).batch(2)
    assert training.shardable(data, data, 5, 2) == (data, data)
    with pytest.raises(BackendError, match=rf"distributed search .* TensorFlow backend only. .*KERAS_BACKEND='{name}'"):
        training.check_distributed_search()


_RUN = """
import json, tempfile
from pathlib import Path
import keras, numpy as np
import cnnzoo
from conftest import brightness_blobs, crash_at

x, y = brightness_blobs(48, 3, 0, 12)

def tiny():
    keras.utils.set_random_seed(0)
    return cnnzoo.get("bird_classifier", num_classes=3, input_shape=(12, 12, 3), compile=False,
                      blocks=[{"filters": 4, "batch_norm": True}, {"filters": 8, "batch_norm": True}], dense=[8])

out = Path(OUT)
stages = "head:1:1e-2,all:2:1e-4..1e-3:one_cycle"  # a frozen stage, then per-unit one-cycle rates
options = dict(stages=stages, ema=0.9, mixup=0.2, plots=False, verbose=0)
try:
    cnnzoo.finetune(tiny(), (x, y), out=out, callbacks=[crash_at(1)], **options)
except RuntimeError:
    pass
result = cnnzoo.finetune(tiny(), (x, y), out=out, **options)
found = cnnzoo.find_lr(tiny(), (x, y), steps=12, start=1e-4, end=1.0, batch_size=8)
model = cnnzoo.load(result.model_path)
print(json.dumps({
    "resumed": result.resumed, "epochs": [len(s.history["loss"]) for s in result.stages],
    "val_accuracy": result.val_accuracy, "suggestion": found.suggestion, "rates": len(found.learning_rates),
    "probabilities": keras.ops.convert_to_numpy(model(x[:6], training=False)).tolist(),
}))
"""


@pytest.mark.backends
def test_finetune_resume_and_find_lr_on_each_backend_and_tensorflow_reads_the_model(other_backend, tmp_path):
    import cnnzoo

    got = on_backend(other_backend, f"OUT = {str(tmp_path / 'run')!r}\n" + _RUN)
    assert got["resumed"] is True and got["epochs"] == [1, 2]  # crashed in stage 1, resumed at the next epoch
    assert 0.0 <= got["val_accuracy"] <= 1.0 and got["rates"] >= 10 and 1e-4 <= got["suggestion"] <= 1.0
    recipe = json.loads((tmp_path / "run" / "recipe.json").read_text())
    assert recipe["ema"] == 0.9 and recipe["mixup"] == 0.2
    x, _ = brightness_blobs(48, 3, 0, 12)
    model = cnnzoo.load(tmp_path / "run" / "bird_classifier.keras")  # trained on another backend, read on TF
    np.testing.assert_allclose(np.asarray(model(x[:6], training=False)), got["probabilities"], atol=1e-4)


@pytest.mark.backends
def test_strategy_and_steps_per_execution_errors_name_the_alternative(other_backend, tmp_path):
    got = on_backend(
        other_backend,
        f"""
        import json
        import cnnzoo  # before TensorFlow: on PyTorch it loads triton first (triton after TensorFlow crashes)
        import tensorflow as tf
        from conftest import brightness_blobs

        errors = {{}}
        for name, kwargs in (("strategy", dict(strategy=tf.distribute.get_strategy())),
                             ("steps", dict(steps_per_execution=4))):
            try:
                cnnzoo.finetune("digits_cnn", brightness_blobs(24, 3, 0, 8), stages="all:1:1e-3",
                                out={str(tmp_path / "r")!r}, plots=False, verbose=0, **kwargs)
                errors[name] = None
            except Exception as e:
                errors[name] = type(e).__name__ + ": " + str(e)
        print(json.dumps(errors))
        """,
    )
    assert got["strategy"].startswith("BackendError: `strategy` takes a tf.distribute strategy")
    assert "KERAS_BACKEND=tensorflow" in got["strategy"] and "DataParallel()" in got["strategy"]
    if other_backend == "torch":
        assert got["steps"].startswith("BackendError: `steps_per_execution` must be at most 1")
    else:
        assert got["steps"] is None  # JAX compiles several steps per call as TensorFlow does


@pytest.mark.backends
def test_finetune_on_jax_data_parallel_over_two_devices(tmp_path, monkeypatch):
    """`strategy=keras.distribution.DataParallel()` on JAX (two CPU devices, as XLA_FLAGS makes them):

    uneven last batches are left out (training) or filled with images weighted 0 (validation), so fit's
    `val_accuracy` is the run's own evaluation of every validation image; the weights live on both devices.
    """
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    got = on_backend(
        require_backend("jax"),
        f"""
        import json
        from pathlib import Path
        import keras
        import cnnzoo
        from conftest import brightness_blobs

        x, y = brightness_blobs(75, 3, 0, 12)  # 60 training images, 15 validation: batches of 8 end unevenly
        def tiny():
            keras.utils.set_random_seed(0)
            return cnnzoo.get("bird_classifier", num_classes=3, input_shape=(12, 12, 3), compile=False,
                              blocks=[{{"filters": 4, "batch_norm": True}}], dense=[8])
        options = dict(stages="all:2:3e-3", plots=False, verbose=0, strategy=keras.distribution.DataParallel())
        result = cnnzoo.finetune(tiny(), (x, y), out={str(tmp_path / "run")!r}, batch_size=8, **options)
        try:
            cnnzoo.finetune(tiny(), (x, y), out={str(tmp_path / "odd")!r}, batch_size=7, **options)
            error = None
        except cnnzoo.errors.BackendError as e:
            error = str(e)
        print(json.dumps({{
            "devices": len(result.model.trainable_weights[0].value.sharding.device_set),
            "fit": result.stages[-1].history["val_accuracy"][-1], "evaluated": result.val_accuracy,
            "error": error, "odd": sorted(p.name for p in Path({str(tmp_path / "odd")!r}).glob("*.keras")),
        }}))
        """,
    )
    assert got["devices"] == 2
    assert got["fit"] == pytest.approx(got["evaluated"], abs=1e-6)  # every validation image once, none twice
    assert (
        got["error"].startswith("`batch_size` must be a multiple of the 2 devices") and "batch_size=6" in got["error"]
    )
    assert got["odd"] == []  # refused before anything was saved


@pytest.mark.backends
def test_on_pytorch_cnnzoo_loads_triton_before_tensorflow():
    """triton after TensorFlow crashes the process (both link LLVM); `import cnnzoo` orders them."""
    got = on_backend(
        "torch",
        """
        import json, sys
        import cnnzoo
        import tensorflow
        import triton
        print(json.dumps(list(sys.modules).index("triton") < list(sys.modules).index("tensorflow")))
        """,
    )
    assert got is True
