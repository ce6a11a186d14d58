"""Should `dtype="auto"` (mixed_bfloat16 on bf16 hardware) be the default? Validation accuracy over seeds (issue 20).

For each task and seed, `cnnzoo.finetune` trains the same model twice in one process, float32
and mixed_bfloat16, seeds alternating, everything else equal (a small budget: a few epochs).
It records the final validation accuracy and the wall time of the call. The verdict per task:
bfloat16 "matches" when the difference of the mean accuracies is within the float32 seed spread
(its standard deviation over the seeds, and at least one validation image). Then the training
step time of each task's model in both precisions (interleaved rounds, medians), and of two
larger models. `dtype="auto"` may become the default only when every task of the issue (digits,
shapes, a from-scratch MobileNetV3-Small) matches on 5 seeds and none trains slower in
bfloat16; the script says which tasks it ran.

Tasks:
- `digits`: `digits_cnn` on the UCI digits (`cnnzoo.data.digits(seed=s)`), 8x8x1.
- `shapes`: `bird_classifier` at 32x32x1 on `cnnzoo.explain.translation.draw_shapes` (1,200 images).
- `mobilenet`: `mobilenetv3small_classifier` from scratch on the digits at 32x32x3.

Run: `.venv/bin/python benchmarks/bench_dtype_auto.py [--tasks digits,shapes] [--seeds 5] [--epochs 8]`
(writes its section of docs/benchmarks.md).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402

PRECISIONS = ("float32", "mixed_bfloat16")
ALL_TASKS = ("digits", "shapes", "mobilenet")


def task(name, seed):
    """`(model, data, kwargs)` for `cnnzoo.finetune` on task `name`, split `seed`."""

    import cnnzoo

    if name == "digits":
        return "digits_cnn", cnnzoo.data.digits(seed=seed), {}
    if name == "shapes":
        from cnnzoo.explain.translation import SHAPES, draw_shapes

        x, y = draw_shapes(1200, 32, "left", seed=seed)
        xv, yv = draw_shapes(300, 32, "left", seed=1000 + seed)
        data = (x.astype("float32"), y, xv.astype("float32"), yv)
        return "bird_classifier", data, {"input_shape": (32, 32, 1), "class_names": list(SHAPES)}
    digits = cnnzoo.data.digits(seed=seed, image_size=(32, 32), channels=3)
    return "mobilenetv3small_classifier", digits, {"input_shape": (32, 32, 3), "weights": None}


def run(name, seed, dtype, epochs):
    import cnnzoo

    model, data, kwargs = task(name, seed)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = cnnzoo.finetune(
            model, data, out=out, verbose=0, seed=seed, dtype=dtype, epochs=epochs, plots=False, **kwargs
        )
        return result.val_accuracy, time.perf_counter() - start


SPEED_ONLY = {  # step time only (no accuracy runs): where bfloat16 pays off and where it does not
    "bird_classifier 96x96x3": ("bird_classifier", (96, 96, 3), {}),
    "mobilenetv3small_classifier 224x224x3": ("mobilenetv3small_classifier", (224, 224, 3), {"weights": None}),
}


def step_times(tasks, rounds=5, steps=10, batch=32):
    """Median seconds per training step, `{(case, precision): s}`, for each task's model and `SPEED_ONLY`.

    Each model is built in both precisions and compiled as `finetune` compiles it; rounds alternate
    the precisions; every round fits `steps` batches of the task's own images (random ones for
    `SPEED_ONLY`) after one warm-up fit.
    """
    import keras
    import numpy as np

    import cnnzoo
    from cnnzoo.backend import training
    from cnnzoo.zoo.builders import compile_model

    cases = {}
    for t in tasks:
        name, data, kwargs = task(t, 0)
        x, y = (data.x_train, data.y_train) if hasattr(data, "x_train") else data[:2]
        kwargs = {k: v for k, v in kwargs.items() if k not in ("class_names", "input_shape")}
        cases[t] = (name, tuple(x.shape[1:]), kwargs, x, y)
    rng = np.random.default_rng(0)
    for label, (name, shape, kwargs) in SPEED_ONLY.items():
        x = rng.random((steps * batch, *shape), dtype=np.float32) * 255
        cases[label] = (name, shape, kwargs, x, rng.integers(0, 10, steps * batch))
    models = {}
    for label, (name, shape, kwargs, x, y) in cases.items():
        for dtype in PRECISIONS:
            keras.utils.set_random_seed(0)
            model = cnnzoo.get(name, num_classes=10, input_shape=shape, dtype=dtype, **kwargs)
            compile_model(model, learning_rate=1e-3, jit_compile=training.jit_compile())
            model.fit(x[: 2 * batch], y[: 2 * batch], batch_size=batch, verbose=0)  # traced before timing
            models[(label, dtype)] = model
    times = {key: [] for key in models}
    for r in range(rounds):
        for label, (_, _, _, x, y) in cases.items():
            for dtype in PRECISIONS if r % 2 == 0 else PRECISIONS[::-1]:
                n = min(steps * batch, len(x))
                start = time.perf_counter()
                models[(label, dtype)].fit(x[:n], y[:n], batch_size=batch, verbose=0, shuffle=False)
                times[(label, dtype)].append((time.perf_counter() - start) / -(-n // batch))
    return {key: statistics.median(value) for key, value in times.items()}


def main(tasks, seeds, epochs):
    from cnnzoo.utils.devices import bf16_units

    load = os.getloadavg()[0]
    has, why = bf16_units()
    results = {(t, p): [] for t in tasks for p in PRECISIONS}
    for t in tasks:
        for seed in range(seeds):
            for dtype in PRECISIONS if seed % 2 == 0 else PRECISIONS[::-1]:
                accuracy, seconds = run(t, seed, dtype, epochs)
                results[(t, dtype)].append((accuracy, seconds))
                print(f"{t} seed {seed} {dtype}: val accuracy {accuracy:.4f} in {seconds:.1f} s", flush=True)
    steps = step_times(tasks)
    rows, verdicts, slower = [], [], []
    for t in tasks:
        f32 = [a for a, _ in results[(t, "float32")]]
        spread = max(statistics.stdev(f32) if len(f32) > 1 else 0.0, 1.0 / 300)
        for p in PRECISIONS:
            acc = [a for a, _ in results[(t, p)]]
            secs = [s for _, s in results[(t, p)]]
            rows.append(
                f"| {t} | {p} | {len(acc)} | {statistics.mean(acc):.2%} | "
                f"{statistics.stdev(acc) if len(acc) > 1 else 0:.2%} | {min(acc):.2%} - {max(acc):.2%} | "
                f"{statistics.median(secs):.1f} s |"
            )
        diff = statistics.mean(a for a, _ in results[(t, "mixed_bfloat16")]) - statistics.mean(f32)
        match = abs(diff) <= spread
        ratio = steps[(t, "mixed_bfloat16")] / steps[(t, "float32")]
        if ratio > 1.0:
            slower.append(f"{t} {ratio:.2f}x")
        verdicts.append(
            f"| {t} | {100 * diff:+.2f} points | {100 * spread:.2f} points | {'matches' if match else 'differs'} | "
            f"{steps[(t, 'float32')] * 1e3:.1f} ms | {steps[(t, 'mixed_bfloat16')] * 1e3:.1f} ms | {ratio:.2f} |"
        )
    speed_rows = [
        f"| {label} | {steps[(label, 'float32')] * 1e3:.1f} ms | {steps[(label, 'mixed_bfloat16')] * 1e3:.1f} ms | "
        f"{steps[(label, 'mixed_bfloat16')] / steps[(label, 'float32')]:.2f} |"
        for label in SPEED_ONLY
    ]
    ran_all = set(tasks) == set(ALL_TASKS) and seeds >= 5
    every = all("| matches |" in v for v in verdicts)
    if ran_all and every and not slower:
        decision = '`dtype="auto"` may be the default: every task matches on 5 seeds and trains no slower.'
    elif not ran_all:
        decision = (
            f"The default stays float32 (`dtype=None`): this run covered {', '.join(tasks)} with {seeds} seeds, "
            f'not all of {", ".join(ALL_TASKS)}. `dtype="auto"` is there to ask for.'
        )
    else:
        reasons = [] if every else ["not every task matches float32's accuracy"]
        if slower:
            reasons.append(f"bfloat16 trains slower on {', '.join(slower)} (step time against float32)")
        decision = (
            f"The default stays float32 (`dtype=None`): {'; '.join(reasons)}. Accuracy alone would allow "
            f'`dtype="auto"`{" (every task matches on 5 seeds)" if every else ""}, but a default that makes '
            'these models train slower is not the fastest correct answer; `dtype="auto"` (or '
            '`dtype="mixed_bfloat16"`) is there to ask for where the step-time table shows it pays.'
        )
    text = f"""
## Precision by measurement: `dtype="auto"` against float32

`benchmarks/bench_dtype_auto.py` on {machine()}, load average {load:.1f} when it started; bf16
units: {has} ({why}), so `dtype="auto"` is {"mixed_bfloat16" if has else "float32"} here. Each task
and seed trains `cnnzoo.finetune(..., seed=s, dtype=d, epochs={epochs})` in both precisions in one
process (order alternating by seed); final validation accuracy and wall time of the call.

| task | precision | seeds | mean val. accuracy | std | min - max | median time |
| --- | --- | ---: | ---: | ---: | ---: | ---: |
{chr(10).join(rows)}

bfloat16 minus float32 (mean), against the float32 seed spread (its standard deviation, at least one image in 300):

| task | difference | float32 spread | verdict | float32 step | bfloat16 step | step ratio |
| --- | ---: | ---: | --- | ---: | ---: | ---: |
{chr(10).join(verdicts)}

Training step time (batch 32, median of 5 alternating rounds of 10 steps, compiled as `finetune` compiles)
of two more models, speed only:

| model (input) | float32 step | bfloat16 step | step ratio |
| --- | ---: | ---: | ---: |
{chr(10).join(speed_rows)}

{decision}
"""
    print(text)
    print(f"wrote {write_section('dtype_auto', text)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="digits", help=f"comma-separated, of {', '.join(ALL_TASKS)}")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    main([t.strip() for t in args.tasks.split(",") if t.strip()], args.seeds, args.epochs)
