"""Single-image latency per runtime, and what int8 costs in accuracy (goals: fastest path <= 0.6x the TF
compiled call at 224x224 and <= 0.2x at 32x32; int8 top-1 within 1 point of float32 on the digits).

Side by side in one run, interleaved round by round (every case once per round, medians): Keras
`model.predict`, the TF compiled call that `cnnzoo.predict` runs on a Keras model (the reference of
the ratios), `cnnzoo.predict` on the Keras model, then each exported file: its runtime's bare call
and `cnnzoo.predict` on the file (ONNX Runtime, LiteRT float32, LiteRT int8, ONNX int8). Models
are randomly initialised: latency does not depend on the weights. The accuracy table uses the
shipped digits_cnn weights on the 360 held-out digits.

Run: `.venv/bin/python benchmarks/bench_export.py` (writes its section of docs/benchmarks.md).
"""

import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402

MODELS = [
    ("bird_classifier", (32, 32, 3), 10),
    ("bird_classifier", (224, 224, 3), 200),
    ("mobilenetv3small_classifier", (224, 224, 3), 1000),
]
EXPORTS = [
    ("ONNX Runtime", "onnx", None, ".onnx"),
    ("LiteRT float32", "litert", None, ".tflite"),
    ("LiteRT int8", "litert", "int8", ".tflite"),
    ("ONNX Runtime int8", "onnx", "int8", ".onnx"),
]
REFERENCE = "TF compiled call (cnnzoo.predict's forward pass)"


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(name, shape, classes, work, rounds):
    import keras
    import numpy as np

    import cnnzoo
    from cnnzoo.deploy.inference import predictor
    from cnnzoo.deploy.runtimes import open_runtime

    keras.utils.set_random_seed(0)
    model = cnnzoo.get(name, num_classes=classes, input_shape=shape, compile=False)
    image = np.random.default_rng(0).uniform(0, 255, (1, *shape)).astype("float32")
    cases = {
        "Keras model.predict(x)": lambda: model.predict(image, verbose=0),
        REFERENCE: lambda: predictor(model).fn(image),
        "cnnzoo.predict(model, x)": lambda: cnnzoo.predict(model, image[0]),
    }
    facts = {}
    for label, fmt, quantize, suffix in EXPORTS:
        path = Path(work) / f"{name}_{shape[0]}_{fmt}_{quantize or 'float32'}{suffix}"
        # random weights: int8 labels of near-uniform outputs may differ, so only the float exports are held
        # to the default tolerance
        result = cnnzoo.export(model, path, fmt, quantize=quantize, tolerance=1.0 if quantize else None)
        runtime = open_runtime(path)
        facts[label] = result
        cases[f"{label}: bare call"] = (lambda r: lambda: r.run(image))(runtime)
        cases[f"{label}: cnnzoo.predict(file, x)"] = (lambda p: lambda: cnnzoo.predict(p, image[0]))(path)
    for fn in cases.values():  # warm-up: traces, first allocations
        for _ in range(3):
            fn()
    times = {case: [] for case in cases}
    for _ in range(rounds):
        for case, fn in cases.items():
            times[case].append(timed(fn))
    return {case: statistics.median(t) for case, t in times.items()}, facts


def accuracy(work):
    import cnnzoo

    model = cnnzoo.get("digits_cnn", weights="digits", compile=False)
    rows = []
    for fmt, quantize, suffix in [
        ("onnx", None, ".onnx"),
        ("onnx", "int8", ".onnx"),
        ("litert", None, ".tflite"),
        ("litert", "float16", ".tflite"),
        ("litert", "int8", ".tflite"),
    ]:
        r = cnnzoo.export(model, Path(work) / f"digits_{fmt}_{quantize}{suffix}", fmt, quantize=quantize)
        rows.append(
            f"| {fmt} | {quantize or 'float32'} | {r.size_bytes / 1024:.0f} KB | "
            f"{r.keras_accuracy:.2%} | {r.exported_accuracy:.2%} | {100 * r.accuracy_change:+.2f} | "
            f"{r.top1_agreement:.2%} | {r.max_abs_diff:.1g} |"
        )
    return rows


def main(rounds=40):
    warnings.filterwarnings("ignore")
    load = os.getloadavg()[0]  # other jobs on the machine slow every case alike (interleaved), not the ratios
    rows, goals = [], []
    with tempfile.TemporaryDirectory() as work:
        for name, shape, classes in MODELS:
            med, facts = measure(name, shape, classes, work, rounds)
            ref = med[REFERENCE]
            label = f"{name} {'x'.join(map(str, shape[:2]))}"
            for case, t in med.items():
                size = next(
                    (
                        f" ({facts[k].size_bytes / 2**20:.1f} MB)"
                        for k in facts
                        if case.startswith(k + ":") and case.endswith("bare call")
                    ),
                    "",
                )
                rows.append(f"| {label} | {case}{size} | {t * 1e3:.3f} ms | {t / ref:.2f} |")
            fastest = min((t, case) for case, t in med.items() if "cnnzoo.predict" in case)
            goal = 0.2 if shape[0] <= 32 else 0.6
            goals.append(f"| {label} | {fastest[1]} | **{fastest[0] / ref:.2f}** | <= {goal} |")
            print(
                f"{label}: fastest cnnzoo path {fastest[1]} = {fastest[0] / ref:.2f}x the TF compiled call", flush=True
            )
        acc = accuracy(work)
    text = f"""
## Export: single-image latency per runtime

Machine: {machine()}, CPU only, load average {load:.1f} when it started. Script:
`benchmarks/bench_export.py`. Median of {rounds} interleaved
rounds after warm-up, one 0-255 image per call, randomly initialised models (latency does not
depend on the weights). "bare call" is the runtime's own call on a ready array; "cnnzoo.predict(file,
x)" adds what predict does around it (input checks, resizing check, top-k labels). Ratios are
against the TF compiled call, the forward pass `cnnzoo.predict` runs on a Keras model.

| model (input) | call | median | ratio vs TF compiled call |
| --- | --- | --- | --- |
{chr(10).join(rows)}

The fastest `cnnzoo.predict` path per model, against the goals of issue 10:

| model (input) | fastest cnnzoo.predict path | ratio | goal |
| --- | --- | --- | --- |
{chr(10).join(goals)}

### int8 and float16: size and accuracy (digits_cnn, 360 held-out digits)

`cnnzoo.export(model, out, fmt, quantize=...)` with the shipped digits_cnn weights, calibrated on
the digits training split, verified on the held-out split (accuracy goal: int8 within 1 point of float32).

| format | quantize | size | Keras accuracy | exported accuracy | change (points) | top-1 agreement | max abs diff |
| --- | --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(acc)}
"""
    print(f"wrote {write_section('export', text)}")


if __name__ == "__main__":
    main()
