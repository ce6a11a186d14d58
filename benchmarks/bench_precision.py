"""Mixed precision and per-step overhead: float32 / mixed_bfloat16, and `steps_per_execution`.

1. The same architecture built twice with `cnnzoo.get(..., dtype=...)` (float32 and mixed_bfloat16), same
   weights: training step time (`fit` over 12 or 48 batches of 32, compiled as `cnnzoo.finetune` compiles)
   and inference time through `cnnzoo.deploy.inference.predictor` (the compiled forward pass behind
   `cnnzoo.predict`) for one image and for a batch of 32. Rounds alternate float32 and bfloat16; each
   figure is the median over rounds. bird_classifier at 96x96 (10 classes) and digits_cnn (8x8x1).
2. `steps_per_execution` 1, 8 and 32 for digits_cnn (8x8x1) and tiny_vgg at 32x32x3: time per training step
   (`fit` over 96 batches of 32, compiled by `cnnzoo.zoo.builders.compile_model` as in `finetune`), rounds
   alternating; and a whole `cnnzoo.finetune` run (one stage, 5 epochs, real UCI digits for digits_cnn,
   1,200 synthetic 32x32 images for tiny_vgg) with `steps_per_execution=1` and `"auto"`, alternating.

Run: `.venv/bin/python benchmarks/bench_precision.py` (writes its section of docs/benchmarks.md).
"""

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402

ROUNDS = 5


def batches(shape, n_batches, batch=32, classes=10, seed=0):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n_batches * batch, *shape)).astype("float32")
    y = rng.integers(0, classes, n_batches * batch)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache(), x


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def precision_rows():
    import keras

    import cnnzoo
    from cnnzoo.deploy.inference import predictor
    from cnnzoo.zoo.builders import compile_model

    rows = []
    for name, shape, n_batches in (("bird_classifier", (96, 96, 3), 12), ("digits_cnn", (8, 8, 1), 48)):
        ds, x = batches(shape, n_batches)
        models = {}
        for dtype in ("float32", "mixed_bfloat16"):
            keras.utils.set_random_seed(0)
            model = cnnzoo.get(name, num_classes=10, input_shape=shape, compile=False, dtype=dtype)
            compile_model(model, jit_compile=False)
            model.fit(ds, epochs=1, verbose=0, shuffle=False)  # trace
            fn = predictor(model)
            fn(x[:1]), fn(x[:32])
            models[dtype] = (model, fn)
        times = {d: {"train": [], "one": [], "batch": []} for d in models}
        for _ in range(ROUNDS):
            for dtype, (model, fn) in models.items():
                times[dtype]["train"].append(
                    timed(lambda: model.fit(ds, epochs=1, verbose=0, shuffle=False)) / n_batches
                )
                times[dtype]["one"].append(timed(lambda: [fn(x[i : i + 1]) for i in range(20)]) / 20)
                times[dtype]["batch"].append(timed(lambda: [fn(x[:32]) for _ in range(5)]) / 5)
        med = {d: {k: statistics.median(v) for k, v in t.items()} for d, t in times.items()}
        rows.append((name, shape, med))
        print(name, {d: {k: f"{v * 1e3:.2f} ms" for k, v in m.items()} for d, m in med.items()}, flush=True)
    return rows


def steps_rows():
    import keras

    import cnnzoo
    from cnnzoo.zoo.builders import compile_model

    rows = []
    for name, shape in (("digits_cnn", (8, 8, 1)), ("tiny_vgg", (32, 32, 3))):
        ds, _ = batches(shape, 96)
        models = {}
        for per_call in (1, 8, 32):
            keras.utils.set_random_seed(0)
            model = cnnzoo.get(name, num_classes=10, input_shape=shape, compile=False)
            compile_model(model, jit_compile=False, steps_per_execution=per_call)
            model.fit(ds, epochs=1, verbose=0, shuffle=False)
            models[per_call] = model
        times = {k: [] for k in models}
        for _ in range(ROUNDS):
            for per_call, model in models.items():
                times[per_call].append(timed(lambda: model.fit(ds, epochs=1, verbose=0, shuffle=False)) / 96)
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append((name, shape, med))
        print(name, {k: f"{v * 1e3:.2f} ms/step" for k, v in med.items()}, flush=True)
    return rows


def finetune_rows():
    import numpy as np

    import cnnzoo

    d = cnnzoo.data.digits(seed=0)
    rng = np.random.default_rng(0)
    y = np.arange(1200) % 10
    blobs = np.clip(rng.normal(0, 30, (1200, 32, 32, 3)) + 20 * y[:, None, None, None], 0, 255).astype("float32")
    cases = (("digits_cnn", (d.x_train, d.y_train), (8, 8, 1)), ("tiny_vgg", (blobs, y), (32, 32, 3)))
    root = Path(tempfile.mkdtemp(prefix="bench_precision-"))
    rows = []
    for name, data, shape in cases:
        seconds = {1: [], "auto": []}
        for _attempt in range(3):
            for per_call in seconds:
                model = cnnzoo.get(name, num_classes=10, input_shape=shape, compile=False)
                start = time.perf_counter()
                result = cnnzoo.finetune(
                    model,
                    data,
                    stages=["all:5:1e-3"],
                    out=root / f"{name}-{per_call}",
                    resume=False,
                    verbose=0,
                    plots=False,
                    steps_per_execution=per_call,
                )
                seconds[per_call].append(time.perf_counter() - start)
        med = {k: statistics.median(v) for k, v in seconds.items()}
        rows.append((name, med, result.val_accuracy))
        print(name, "finetune", {k: f"{v:.2f} s" for k, v in med.items()}, flush=True)
    return rows


def main():
    precision, steps, whole = precision_rows(), steps_rows(), finetune_rows()
    lines = [
        "## Mixed precision and steps per execution",
        "",
        f"`benchmarks/bench_precision.py`, {machine()}; medians of {ROUNDS} alternating rounds (one process, "
        "same weights). Ratio: float32 time / bfloat16 time (above 1: bfloat16 is faster).",
        "",
        "| model | input | step | float32 | mixed_bfloat16 | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for name, shape, med in precision:
        for key, label in (
            ("train", "training step (batch 32)"),
            ("one", "predict 1 image"),
            ("batch", "predict 32 images"),
        ):
            a, b = med["float32"][key], med["mixed_bfloat16"][key]
            lines.append(
                f"| {name} | {'x'.join(map(str, shape))} | {label} | {a * 1e3:.2f} ms | {b * 1e3:.2f} ms "
                f"| {a / b:.2f}x |"
            )
    lines += [
        "",
        "Training step time by `steps_per_execution` (batches per compiled call; float32, batch 32, "
        "96 batches per `fit`). Ratio: time at 1 / time at N.",
        "",
        "| model | input | 1 | 8 | 32 | ratio 8 | ratio 32 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, shape, med in steps:
        lines.append(
            f"| {name} | {'x'.join(map(str, shape))} | "
            + " | ".join(f"{med[k] * 1e3:.2f} ms" for k in (1, 8, 32))
            + f" | {med[1] / med[8]:.2f}x | {med[1] / med[32]:.2f}x |"
        )
    lines += [
        "",
        "A whole `cnnzoo.finetune` run (one stage, 5 epochs, checkpoints and validation included; median "
        'of 3 alternating runs): `steps_per_execution=1` against the default `"auto"` (8).',
        "",
        "| model | data | 1 | auto | ratio | val. accuracy (auto) |",
        "|---|---|---|---|---|---|",
    ]
    for name, med, acc in whole:
        data = "UCI digits (1,437 train)" if name == "digits_cnn" else "1,200 synthetic 32x32x3"
        lines.append(
            f"| {name} | {data} | {med[1]:.2f} s | {med['auto']:.2f} s | {med[1] / med['auto']:.2f}x | {acc:.1%} |"
        )
    path = write_section("precision", "\n".join(lines))
    print("\n".join(lines))
    print("wrote", path)


if __name__ == "__main__":
    main()
