"""Prediction on each Keras backend: `cnnzoo.predict`'s forward pass / the backend's own compiled call (goal <= 1.1).

`cnnzoo.deploy.inference.predictor(model)` runs `cnnzoo.backend.inference.compiled_forward`; here it is
timed against what a user of each backend would write by hand, on the same model and batch:

- TensorFlow: `tf.function(lambda x: model(x, training=False))`;
- JAX: `jax.jit` of `model.stateless_call`, the variable values fetched once beforehand (the predictor
  reads them at every call, so that weights set later are used);
- PyTorch: the model called under `torch.inference_mode()` on a torch tensor; and, for the record,
  `torch.compile` of that call (what decides that the predictor does not use it).

Each backend runs in its own process (`KERAS_BACKEND`); one image and a batch of 32, medians of
interleaved rounds after warm-up. Both sides return numpy arrays (JAX: the result is waited for).

Each backend runs with one thread (`ONE_THREAD`) unless `--all-threads` is given: single-threaded
timings stay steady on a machine that other jobs share.

Run: `.venv/bin/python benchmarks/bench_backends_predict.py` (writes its section of docs/benchmarks.md).
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("tensorflow", "jax", "torch")
SHAPE, CLASSES = (32, 32, 3), 10
BATCHES = (1, 32)
ROUNDS = {1: 200, 32: 60}
PREDICTOR = "cnnzoo predictor"


def own_calls(model):
    """`{name: fn(x numpy) -> numpy}`: the backend's own compiled inference call(s) of `model`."""
    import keras

    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(lambda x: model(x, training=False))
        return {"tf.function(model)": lambda x: compiled(x).numpy()}
    if backend == "jax":
        import jax
        import numpy as np

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        jitted = jax.jit(lambda t, n, x: model.stateless_call(t, n, x, training=False)[0])
        return {"jax.jit(stateless_call)": lambda x: np.asarray(jitted(trainable, non_trainable, x))}
    import torch

    def eager(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x), training=False).numpy()

    compiled = torch.compile(lambda x: model(x, training=False))

    def with_compile(x):
        with torch.inference_mode():
            return compiled(torch.from_numpy(x)).numpy()

    return {"inference_mode model(x)": eager, "torch.compile(model)": with_compile}


def measure():
    """In a process under one backend: `{batch: {call: (median s, first call s)}}` as JSON on stdout."""
    import keras
    import numpy as np

    import cnnzoo
    from cnnzoo.deploy.inference import predictor

    keras.utils.set_random_seed(0)
    model = cnnzoo.get("bird_classifier", num_classes=CLASSES, input_shape=SHAPE, compile=False)
    cases = {PREDICTOR: predictor(model), **own_calls(model)}
    out = {}
    for n in BATCHES:
        x = np.random.default_rng(n).uniform(0, 255, (n, *SHAPE)).astype("float32")
        first = {}
        for name, fn in cases.items():
            start = time.perf_counter()
            fn(x)
            first[name] = time.perf_counter() - start
            for _ in range(5):
                fn(x)
        expected = cases[PREDICTOR](x)
        for name, fn in cases.items():
            np.testing.assert_allclose(fn(x), expected, atol=1e-5, err_msg=name)
        times = {name: [] for name in cases}
        order = list(cases)
        for _ in range(ROUNDS[n]):
            order.reverse()  # neither call always runs first
            for name in order:
                start = time.perf_counter()
                cases[name](x)
                times[name].append(time.perf_counter() - start)
        own = next(name for name in cases if name != PREDICTOR)
        paired = statistics.median(a / b for a, b in zip(times[PREDICTOR], times[own]))
        out[n] = {"calls": {name: (statistics.median(t), first[name]) for name, t in times.items()}, "ratio": paired}
    return out


# One thread per backend: on a machine whose few cores other jobs share, a backend's thread pool that
# waits for a busy core (PyTorch's OpenMP above all) makes single calls 10-50x slower at random.
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}


def run_backend(backend, one_thread):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", **(ONE_THREAD if one_thread else {})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryDirectory() as cache:  # torch.compile's first call as on a fresh machine
        env["TORCHINDUCTOR_CACHE_DIR"] = cache
        done = subprocess.run(
            [sys.executable, __file__, "--measure"], env=env, capture_output=True, text=True, timeout=1800
        )
    if done.returncode != 0:
        raise RuntimeError(f"{backend}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def torch_note(result):
    """Why the PyTorch predictor runs eagerly, in this run's numbers."""
    if not result:
        return ""
    eager, compiled = "inference_mode model(x)", "torch.compile(model)"
    timings = [measured["calls"] for measured in result.values()]
    speedups = [calls[eager][0] / calls[compiled][0] for calls in timings]
    compile_s = max(calls[compiled][1] for calls in timings)
    batch = result[str(max(BATCHES))]["calls"]
    saved_per_image = (batch[eager][0] - batch[compiled][0]) / max(BATCHES)
    low, high = f"{min(speedups):.1f}", f"{max(speedups):.1f}"
    note = (
        f"`torch.compile` makes each call {low if low == high else low + '-' + high}x faster once compiled, but "
        f"compiling takes up to {compile_s:.0f} s for each new batch size (an empty compile cache; PyTorch "
        "recompiles on a new shape "
        "until it treats the batch dimension as dynamic): it pays for itself only after about "
        f"{float(f'{compile_s / saved_per_image:.2g}'):,.0f} images in batches of {max(BATCHES)}, far more than a `cnnzoo "
        "predict` run, an evaluation or a feature cache of a small data set. So the PyTorch predictor runs "
        "the model eagerly under `torch.inference_mode()`."
    )
    return textwrap.fill(note, width=100, break_on_hyphens=False)


def main():
    one_thread = "--all-threads" not in sys.argv
    rows, summary = [], []
    load = os.getloadavg()[0]
    results = {backend: run_backend(backend, one_thread) for backend in BACKENDS}
    load = max(load, os.getloadavg()[0])
    for backend, result in results.items():
        for n, measured in result.items():
            calls, ratio = measured["calls"], measured["ratio"]
            own = next(name for name in calls if name != PREDICTOR)
            summary.append(f"{backend} batch {n}: predictor / {own} = {ratio:.3f}")
            for name, (median, first) in calls.items():
                rows.append(f"| {backend} | {n} | {name} | {median * 1e3:.3f} ms | {first * 1e3:.0f} ms |")
            rows.append(f"| {backend} | {n} | **ratio predictor / {own}** | **{ratio:.3f}** | goal <= 1.1 |")
    text = f"""
## Predict on each Keras backend

Machine: {machine()}, CPU only, {"one thread per backend" if one_thread else "every core"}
(load average up to {load:.1f} during the run: the latencies move with it, the ratios much less).
Script: `benchmarks/bench_backends_predict.py` (`--all-threads` lets each backend use every core). `bird_classifier`
{"x".join(map(str, SHAPE))}, {CLASSES} classes; each backend in its own process, median of interleaved rounds
({ROUNDS[1]} for one image, {ROUNDS[32]} for 32, the order reversed each round) after warm-up; "first call"
includes tracing or compilation. A ratio is the median of the per-round ratios (the two calls of a round
see the same load).
The predictor is what `cnnzoo.predict`, `cnnzoo.evaluate` and `cnnzoo serve` run
(`cnnzoo.backend.inference.compiled_forward`); the row after it is the backend's own compiled call.

| backend | batch | call | median latency | first call |
| --- | --- | --- | --- | --- |
{chr(10).join(rows)}

The JAX predictor reads the variables' values at every call (weights set after it was cached are
used); the hand-written `jax.jit` call gets them once; both compile once per batch size.
{torch_note(results.get("torch"))}
"""
    path = write_section("backends-predict", text)
    print("\n".join(summary))
    print(f"wrote {path}")


if __name__ == "__main__":
    if "--measure" in sys.argv:
        print(json.dumps(measure()))
    else:
        main()
