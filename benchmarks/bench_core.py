"""Core benchmarks (issue 2): CLI start-up and the cost of building through the zoo.

1. `cnnzoo list` wall time / `python -c "import keras"` wall time (goal <= 0.1).
2. Training step time of `cnnzoo.get("bird_classifier")` / the same network written by hand
   in plain Keras (goal <= 1.02: the zoo adds no cost). Also XLA (`jit_compile=True`) on CPU.

Run: `.venv/bin/python benchmarks/bench_core.py` (writes its section of docs/benchmarks.md).
"""

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, median_time, write_section  # noqa: E402

BIN = Path(sys.executable).parent


def startup(repeat=7):
    run = lambda *cmd: subprocess.run(cmd, capture_output=True, check=True)  # noqa: E731
    run(str(BIN / "cnnzoo"), "list")  # warm the file cache
    run(sys.executable, "-c", "import keras")
    cli = median_time(lambda: run(str(BIN / "cnnzoo"), "list"), repeat)
    keras_import = median_time(lambda: run(sys.executable, "-c", "import keras"), repeat)
    return cli, keras_import


def hand_written(input_shape, num_classes):
    """bird_classifier written by hand in plain Keras, the way a user would."""
    import keras
    from keras import layers

    inputs = keras.Input(input_shape)
    x = layers.Rescaling(1 / 255)(inputs)
    for filters in (32, 64, 128, 256, 256):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(256, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def step_times(input_shape=(96, 96, 3), num_classes=10, batch=32, steps=20, rounds=5):
    import keras
    import numpy as np

    import cnnzoo

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch * steps, *input_shape)).astype("float32")
    y = rng.integers(0, num_classes, batch * steps)

    def make(kind):
        keras.utils.set_random_seed(0)
        if kind == "hand":
            model = hand_written(input_shape, num_classes)
            model.compile(
                optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
            )
        else:
            model = cnnzoo.get("bird_classifier", num_classes=num_classes, input_shape=input_shape)
            if kind == "zoo_xla":
                model.compile(
                    optimizer=keras.optimizers.Adam(1e-3),
                    loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"],
                    jit_compile=True,
                )
        assert model.count_params() == hand_written(input_shape, num_classes).count_params()
        model.fit(x[: batch * 2], y[: batch * 2], batch_size=batch, epochs=1, verbose=0)  # trace + warm up
        return model

    models = {kind: make(kind) for kind in ("zoo", "hand", "zoo_xla")}
    times = {kind: [] for kind in models}
    for _ in range(rounds):  # interleaved, so drift hits every variant alike
        for kind, model in models.items():
            start = time.perf_counter()
            model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
            times[kind].append((time.perf_counter() - start) / steps)
    flops = 3 * cnnzoo.info("bird_classifier", input_shape=input_shape, num_classes=num_classes).flops * batch
    return {kind: statistics.median(t) for kind, t in times.items()}, flops


def main():
    cli, keras_import = startup()
    steps, flops = step_times()
    rows = [
        "## Core: start-up and build overhead",
        "",
        f"Machine: {machine()}, CPU only. Script: `benchmarks/bench_core.py`.",
        "",
        "| measurement | value | goal |",
        "| --- | --- | --- |",
        f"| `cnnzoo list` wall time | {cli * 1000:.0f} ms | |",
        f'| `python -c "import keras"` wall time | {keras_import * 1000:.0f} ms | |',
        f"| ratio list / import keras | **{cli / keras_import:.3f}** | <= 0.1 |",
        f"| train step, `cnnzoo.get('bird_classifier')` (96x96x3, batch 32) | {steps['zoo'] * 1000:.1f} ms "
        f"({flops / steps['zoo'] / 1e9:.0f} GFLOP/s) | |",
        f"| train step, same network by hand in plain Keras | {steps['hand'] * 1000:.1f} ms | |",
        f"| ratio zoo / hand-written | **{steps['zoo'] / steps['hand']:.3f}** | <= 1.02 |",
        f"| ratio zoo with `jit_compile=True` / zoo default | {steps['zoo_xla'] / steps['zoo']:.3f} | (informs the default) |",
    ]
    text = "\n".join(rows)
    print(text)
    write_section("core", text)


if __name__ == "__main__":
    main()
