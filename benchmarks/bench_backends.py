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
SHAPE, CLASSES, BATCH, BATCHES = (96, 96, 3), 10, 32, 16  # 16: whole calls of 8 steps


def child(rounds, dtype):
    import statistics
    import tempfile
    import time

    import keras
    import numpy as np
    import tensorflow as tf

    import cnnzoo
    from cnnzoo.finetuning import freezing, schedules
    from cnnzoo.finetuning.stages import Stage

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (BATCH * BATCHES, *SHAPE)).astype("float32")
    y = rng.integers(0, CLASSES, len(x))
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).cache()

    def build():
        keras.utils.set_random_seed(0)
        return cnnzoo.get("bird_classifier", num_classes=CLASSES, input_shape=SHAPE, compile=False, dtype=dtype)

    plain = build()
    plain.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    ours = build()
    parts = freezing.anatomy(ours)
    freezing.apply_stage(parts, Stage("all", 1, 1e-3), freeze_batchnorm=False)
    per_call = 1 if keras.config.backend() == "torch" else 8  # what finetune's "auto" picks there
    schedules.compile_stage(ours, Stage("all", 1, 1e-3), parts, BATCHES, steps_per_execution=per_call)
    times = {"plain": [], "cnnzoo": []}
    for model in (plain, ours):
        model.fit(data, epochs=1, verbose=0)  # compile and warm up
    for _ in range(rounds):
        for name, model in (("plain", plain), ("cnnzoo", ours)):
            start = time.perf_counter()
            model.fit(data, epochs=1, verbose=0, shuffle=False)
            times[name].append((time.perf_counter() - start) / BATCHES)
    start = time.perf_counter()
    cnnzoo.finetune(build(), (x, y, x[:64], y[:64]), stages="all:1:1e-3", augment=False, dtype=dtype,
                    out=Path(tempfile.mkdtemp()) / "run", plots=False, verbose=0)  # fmt: skip
    first = time.perf_counter() - start
    flops = cnnzoo.info("bird_classifier", input_shape=SHAPE, num_classes=CLASSES).flops
    return {
        "backend": keras.config.backend(),
        "plain": statistics.median(times["plain"]),
        "cnnzoo": statistics.median(times["cnnzoo"]),
        "first_epoch": first,
        "train_flops": 3 * flops * BATCH if flops else None,  # forward + backward ~ 3x the forward
    }


def run(backend, rounds, dtype):
    env = {**os.environ, "KERAS_BACKEND": backend}
    code = f"import json, bench_backends as b; print(json.dumps(b.child({rounds}, {dtype!r})))"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=Path(__file__).parent, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"{backend}: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(results, dtype, peak):
    fastest = min(r["cnnzoo"] for r in results)
    rows = [
        "## Backends: training step per Keras backend",
        "",
        f"`benchmarks/bench_backends.py`, {machine()}, {dtype or 'float32'}: bird_classifier at 96x96x3, batch 32; "
        "each backend in its own process, rounds alternating plain Keras and cnnzoo within it (medians).",
        "",
        "| backend | plain Keras step | cnnzoo step | cnnzoo / plain | cnnzoo / fastest backend | first epoch (finetune, "
        "compile included) |" + (" MFU |" if peak else ""),
        "|---|---|---|---|---|---|" + ("---|" if peak else ""),
    ]
    for r in results:
        mfu = f" {r['train_flops'] / r['cnnzoo'] / (peak * 1e12):.1%} |" if peak and r["train_flops"] else ""
        rows.append(
            f"| {r['backend']} | {r['plain'] * 1000:.1f} ms | {r['cnnzoo'] * 1000:.1f} ms | "
            f"**{r['cnnzoo'] / r['plain']:.3f}** | {r['cnnzoo'] / fastest:.2f} | {r['first_epoch']:.1f} s |{mfu}"
        )
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dtype", default=None, help="e.g. mixed_bfloat16 (on a GPU)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the chip's dense peak, for MFU")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    args = parser.parse_args()
    results = [run(b, args.rounds, args.dtype) for b in args.backends.split(",")]
    text = report(results, args.dtype, args.peak_tflops)
    print(text)
    write_section("backends", text)


if __name__ == "__main__":
    main()
