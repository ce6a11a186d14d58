"""Training speed per Keras backend: cnnzoo's fine-tuning step against plain Keras on the same backend.

For each backend (TensorFlow, JAX, PyTorch), in a process of its own (Keras picks its backend once per
process): bird_classifier at 96x96x3, 10 classes, batch 32, synthetic images in a tf.data pipeline.

- plain Keras: the model compiled by hand (`Adam(1e-3)`, sparse cross-entropy, accuracy; Keras's own
  `jit_compile="auto"` and `steps_per_execution=1`);
- cnnzoo: the same model compiled the way `cnnzoo.finetune` compiles a stage
  (`cnnzoo.finetuning.schedules.compile_stage`: cosine schedule, label-smoothed loss, `jit_compile` and
  `steps_per_execution` from `cnnzoo.backend.training`);
- first epoch: a whole `cnnzoo.finetune` call (one stage, one epoch over the same images), compile included.

Rounds alternate plain and cnnzoo inside each process; each figure is a median. The backends run one after
the other, so ratios between backends are less exact than those within one. On a GPU pass
`--dtype mixed_bfloat16 --peak-tflops N` (the chip's dense bf16 peak) to record MFU per backend.

Run: `.venv/bin/python benchmarks/bench_backends.py` (writes its section of docs/benchmarks.md).
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402

BACKENDS = ("tensorflow", "jax", "torch")
CLASSES, BATCHES = 10, 16  # 16: whole calls of 8 steps


def matmul_rate(dtype):
    """The backend's own dense matmul rate in TFLOP/s (8192^3, bf16 under mixed precision), for MFU."""
    import time

    import keras

    n = 8192 if _has_gpu() else 2048
    a = keras.ops.ones((n, n), dtype="bfloat16" if dtype and "bfloat16" in dtype else "float32")
    keras.ops.convert_to_numpy(keras.ops.matmul(a, a)[0, 0])
    start = time.perf_counter()
    for _ in range(10):
        out = keras.ops.matmul(a, a)
    keras.ops.convert_to_numpy(out[0, 0])  # waits for the device
    return 10 * 2 * n**3 / (time.perf_counter() - start) / 1e12


def _has_gpu():
    import keras

    if keras.config.backend() == "jax":
        import jax

        return jax.default_backend() == "gpu"
    if keras.config.backend() == "torch":
        import torch

        return torch.cuda.is_available()
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def batches(x, y, batch):
    """The images as tf.data batches where TensorFlow is installed, else NumPy arrays with a batch size
    (a GPU machine may carry Keras, JAX and PyTorch without TensorFlow)."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        return {"x": x, "y": y, "batch_size": batch}
    import tensorflow as tf

    return {"x": tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache()}


def child(rounds, dtype, size=96, batch=32):
    import importlib.util
    import statistics
    import tempfile
    import time

    import keras
    import numpy as np

    import cnnzoo
    from cnnzoo.backend import training
    from cnnzoo.finetuning import freezing, schedules
    from cnnzoo.finetuning.stages import Stage

    shape = (size, size, 3)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch * BATCHES, *shape)).astype("float32")
    y = rng.integers(0, CLASSES, len(x))
    data = batches(x, y, batch)

    def build():
        keras.utils.set_random_seed(0)
        return cnnzoo.get("bird_classifier", num_classes=CLASSES, input_shape=shape, compile=False, dtype=dtype)

    plain = build()
    plain.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    ours = build()
    parts = freezing.anatomy(ours)
    freezing.apply_stage(parts, Stage("all", 1, 1e-3), freeze_batchnorm=False)
    per_call = training.steps_per_execution_limit() or 8  # what finetune's "auto" picks there
    schedules.compile_stage(ours, Stage("all", 1, 1e-3), parts, BATCHES, steps_per_execution=per_call)
    times = {"plain": [], "cnnzoo": []}
    for model in (plain, ours):
        model.fit(**data, epochs=1, verbose=0)  # compile and warm up
    for _ in range(rounds):
        for name, model in (("plain", plain), ("cnnzoo", ours)):
            start = time.perf_counter()
            model.fit(**data, epochs=1, verbose=0, shuffle=False)
            times[name].append((time.perf_counter() - start) / BATCHES)
    first = None  # finetune reads data through tf.data: timed only where TensorFlow is installed
    if importlib.util.find_spec("tensorflow") is not None:
        start = time.perf_counter()
        cnnzoo.finetune(build(), (x, y, x[:64], y[:64]), stages="all:1:1e-3", augment=False, dtype=dtype,
                        out=Path(tempfile.mkdtemp()) / "run", plots=False, verbose=0, batch_size=batch)  # fmt: skip
        first = time.perf_counter() - start
    flops = cnnzoo.info("bird_classifier", input_shape=shape, num_classes=CLASSES).flops
    return {
        "shape": shape,
        "batch": batch,
        "matmul_tflops": matmul_rate(dtype),
        "backend": keras.config.backend(),
        "plain": statistics.median(times["plain"]),
        "cnnzoo": statistics.median(times["cnnzoo"]),
        "first_epoch": first,
        "train_flops": 3 * flops * batch if flops else None,  # forward + backward ~ 3x the forward
    }


def run(backend, rounds, dtype, size, batch):
    env = {**os.environ, "KERAS_BACKEND": backend}
    code = f"import json, bench_backends as b; print(json.dumps(b.child({rounds}, {dtype!r}, {size}, {batch})))"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=Path(__file__).parent, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"{backend}: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(results, dtype, peak):
    fastest = min(r["cnnzoo"] for r in results)
    first = results[0]
    mfu = peak or any(r.get("matmul_tflops") for r in results)
    rows = [
        f"`benchmarks/bench_backends.py`, {machine()}, {dtype or 'float32'}: bird_classifier at "
        f"{'x'.join(map(str, first['shape']))}, batch {first['batch']}; each backend in its own process, rounds "
        "alternating plain Keras and cnnzoo within it (medians).",
        "",
        "| backend | plain Keras step | cnnzoo step | cnnzoo / plain | cnnzoo / fastest backend | first epoch (finetune, "
        "compile included) |"
        + (" matmul TFLOP/s (same process) | cnnzoo MFU vs that matmul |" if mfu else "")
        + (f" MFU vs {peak:g} TFLOP/s peak |" if peak else ""),
        "|---|---|---|---|---|---|" + ("---|---|" if mfu else "") + ("---|" if peak else ""),
    ]
    for r in results:
        achieved = r["train_flops"] / r["cnnzoo"] / 1e12 if r["train_flops"] else None
        cells = [
            r["backend"],
            f"{r['plain'] * 1000:.1f} ms",
            f"{r['cnnzoo'] * 1000:.1f} ms",
            f"**{r['cnnzoo'] / r['plain']:.3f}**",
            f"{r['cnnzoo'] / fastest:.2f}",
            f"{r['first_epoch']:.1f} s" if r.get("first_epoch") is not None else "not run (no TensorFlow here)",
        ]
        if mfu:
            rate = r.get("matmul_tflops")
            cells += [f"{rate:.1f}" if rate else "-", f"{achieved / rate:.1%}" if achieved and rate else "-"]
        if peak:
            cells.append(f"{achieved / peak:.1%}" if achieved else "-")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dtype", default=None, help="e.g. mixed_bfloat16 (on a GPU)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the chip's dense peak, for MFU")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--size", type=int, default=96, help="image side in pixels")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--section", default="backends", help="docs/benchmarks.md section (e.g. backends-gpu)")
    parser.add_argument("--title", default="Backends: training step per Keras backend")
    args = parser.parse_args()
    results = [run(b, args.rounds, args.dtype, args.size, args.batch) for b in args.backends.split(",")]
    text = f"## {args.title}\n\n" + report(results, args.dtype, args.peak_tflops)
    print(text)
    print(json.dumps(results))
    write_section(args.section, text)


if __name__ == "__main__":
    main()
