"""runtime="auto" against the TF compiled call, and the ONNX Runtime settings behind it (issue 20).

Side by side in one process, interleaved round by round (every case once per round, medians):

1. ONNX Runtime session settings on the model's cached export: ORT's defaults, intra-op threads
   = the cores this process may use, no spinning, graph optimisation level, the memory arena off,
   and pre-allocated I/O (`io_binding`) for one image; `cnnzoo.deploy.runtimes.OnnxRuntime` keeps
   what wins here.
2. Latency per runtime, one image and a batch of 32: the TF compiled call (`runtime="tensorflow"`'s
   forward pass, the reference of the ratios), `cnnzoo.predict(path, x, runtime="tensorflow")`,
   `cnnzoo.predict(path, x)` (`runtime="auto"`: the verified ONNX export) and the bare ONNX Runtime
   call; each with its fraction of the machine's FLOP limit, taken as the best dense float32 matmul
   rate (NumPy and TensorFlow, 2048x2048) measured in the same run.

Run: `.venv/bin/python benchmarks/bench_runtime.py [--rounds N]` (writes its section of docs/benchmarks.md).
"""

import argparse
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

MODELS = [("bird_classifier", (32, 32, 3), 10), ("bird_classifier", (224, 224, 3), 200)]
GOALS = {32: 0.25, 224: 0.65}  # issue 20: cnnzoo.predict("model.keras", x) against the TF compiled call


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(cases, rounds, warmup=3):
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times = {case: [] for case in cases}
    for _ in range(rounds):
        for case, fn in cases.items():
            times[case].append(timed(fn))
    return {case: statistics.median(t) for case, t in times.items()}


MATMUL = "float32 matmul 1024x1024 (TensorFlow)"
MATMUL_NUMPY = "float32 matmul 1024x1024 (NumPy)"


def matmul_cases(n=1024):
    """Two cases timing a dense float32 matmul, run interleaved with the others (same load)."""
    import numpy as np
    import tensorflow as tf

    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    t = tf.constant(a)
    return {MATMUL: lambda: tf.linalg.matmul(t, t).numpy(), MATMUL_NUMPY: lambda: a @ a}


def matmul_rate(med, n=1024):
    """The best of the two matmul rates (FLOP/s) from their interleaved medians."""
    return 2 * n**3 / min(med.pop(MATMUL), med.pop(MATMUL_NUMPY))


def sessions(path):
    """name -> an ONNX Runtime session with one setting changed from ORT's defaults."""
    import onnxruntime as ort

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    def make(threads=0, spin=None, level=None, arena=True):
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads
        if spin is not None:
            options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        if level is not None:
            options.graph_optimization_level = level
        options.enable_cpu_mem_arena = arena
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    level = ort.GraphOptimizationLevel
    return {
        "ORT defaults": make(),
        f"intra-op threads = usable cores ({cores})": make(threads=cores),
        "1 intra-op thread": make(threads=1),
        "no spinning": make(threads=cores, spin="0"),
        "graph optimisation: basic": make(threads=cores, level=level.ORT_ENABLE_BASIC),
        "graph optimisation: extended": make(threads=cores, level=level.ORT_ENABLE_EXTENDED),
        "memory arena off": make(threads=cores, arena=False),
    }


def bound(session, image):
    """A one-image call through pre-allocated input and output buffers (`io_binding`)."""
    import numpy as np

    inp, out = session.get_inputs()[0], session.get_outputs()[0]
    x = np.empty(image.shape, np.float32)
    y = np.empty((image.shape[0], out.shape[-1]), np.float32)
    binding = session.io_binding()
    binding.bind_cpu_input(inp.name, x)
    binding.bind_output(out.name, "cpu", 0, np.float32, y.shape, y.ctypes.data)

    def call():
        x[...] = image
        session.run_with_iobinding(binding)
        return y.copy()

    return call


def settings(onnx_path, shape, rounds):
    import numpy as np

    rows = {}
    for batch in (1, 32):
        rounds = rounds if batch == 1 or shape[0] <= 32 else max(5, rounds // 4)  # 224x224 x 32: a second a call
        x = np.random.default_rng(0).uniform(0, 255, (batch, *shape)).astype("float32")
        made = sessions(onnx_path)
        cases = {name: (lambda s: lambda: s.run(None, {s.get_inputs()[0].name: x}))(s) for name, s in made.items()}
        if batch == 1:
            cases["io_binding (pre-allocated input and output)"] = bound(made["ORT defaults"], x)
        rows[batch] = interleaved(cases, rounds)
    return rows


def runtimes(model, keras_path, shape, rounds):
    import numpy as np

    import cnnzoo
    from cnnzoo.deploy.fast_runtime import fast_runtime
    from cnnzoo.deploy.inference import predictor

    onnx = fast_runtime(keras_path)
    assert onnx is not None and onnx.format == "onnx", "the export extra is needed"
    out = {}
    for batch in (1, 32):
        x = np.random.default_rng(0).uniform(0, 255, (batch, *shape)).astype("float32")
        arg = x[0] if batch == 1 else x
        cases = {
            "TF compiled call": lambda x=x: predictor(model).fn(x),
            'cnnzoo.predict(path, x, runtime="tensorflow")': lambda a=arg: cnnzoo.predict(
                keras_path, a, runtime="tensorflow"
            ),
            "cnnzoo.predict(path, x) (auto: verified ONNX)": lambda a=arg: cnnzoo.predict(keras_path, a),
            "ONNX Runtime bare call (cnnzoo's settings)": lambda x=x: onnx.run(x),
            **matmul_cases(),
        }
        out[batch] = interleaved(cases, rounds)
    return out


def main(rounds):
    warnings.filterwarnings("ignore")
    import keras

    import cnnzoo
    from cnnzoo.deploy.exported_cache import cached_export

    load = os.getloadavg()[0]
    setting_rows, runtime_rows, goal_rows, rates = [], [], [], []
    with tempfile.TemporaryDirectory() as work:
        os.environ["CNNZOO_HOME"] = work
        for name, shape, classes in MODELS:
            keras.utils.set_random_seed(0)
            model = cnnzoo.get(name, num_classes=classes, input_shape=shape, compile=False)
            keras_path = Path(work) / f"{name}_{shape[0]}.keras"
            model.save(keras_path)
            model = cnnzoo.load(keras_path, compile=False)  # what runtime="tensorflow" runs
            onnx_path = cached_export(keras_path, "onnx")
            label = f"{name} {shape[0]}x{shape[1]}"
            for batch, med in settings(onnx_path, shape, rounds).items():
                ref = med["ORT defaults"]
                for case, t in med.items():
                    setting_rows.append(f"| {label} | {batch} | {case} | {t * 1e3:.3f} ms | {t / ref:.2f} |")
                print(label, batch, {k: round(v * 1e3, 3) for k, v in med.items()}, flush=True)
            flops = cnnzoo.info(name, input_shape=shape, num_classes=classes).flops
            for batch, med in runtimes(model, keras_path, shape, rounds).items():
                rate = matmul_rate(med)
                rates.append(rate)
                ref = med["TF compiled call"]
                for case, t in med.items():
                    share = flops * batch / t / rate
                    runtime_rows.append(
                        f"| {label} | {batch} | {case} | {t * 1e3:.3f} ms | {t / ref:.2f} | {share:.0%} |"
                    )
                print(label, batch, {k: round(v * 1e3, 3) for k, v in med.items()}, flush=True)
                if batch == 1:
                    auto = med["cnnzoo.predict(path, x) (auto: verified ONNX)"] / ref
                    goal_rows.append(f"| {label} | **{auto:.2f}** | <= {GOALS[shape[0]]} |")
    text = f"""
## Runtime "auto": the verified ONNX export against the TF compiled call

Machine: {machine()}, CPU only, load average {load:.1f} when it started (other jobs shared the 2
cores: interleaving slows every case alike, not the ratios). Script: `benchmarks/bench_runtime.py`,
median of {rounds} interleaved rounds after warm-up, randomly initialised models (latency does not
depend on the weights), the `.keras` file's export made and verified by `runtime="auto"` itself.

ONNX Runtime settings, each against ORT's defaults on the same file (ratio below 1: faster). The
rows after the threads row keep threads = usable cores and change one more thing:

| model (input) | batch | setting | median | ratio vs ORT defaults |
| --- | ---: | --- | ---: | ---: |
{chr(10).join(setting_rows)}

Latency per runtime; ratio against the TF compiled call; "of FLOP limit": the model's forward
FLOPs (`cnnzoo.info(...).flops` x batch) per second over the best dense float32 matmul rate
(TensorFlow or NumPy, 1024x1024), timed as two more cases of the same interleaved rounds, so
under the same load (median {statistics.median(rates) / 1e9:.0f} GFLOP/s over the tables):

| model (input) | batch | call | median | ratio vs TF compiled call | of FLOP limit |
| --- | ---: | --- | ---: | ---: | ---: |
{chr(10).join(runtime_rows)}

`cnnzoo.predict("model.keras", x)` (one image, `runtime="auto"`) against the goals of issue 20:

| model (input) | ratio vs TF compiled call | goal |
| --- | ---: | ---: |
{chr(10).join(goal_rows)}

Read with care when the load average is high: single medians swing between runs, and a FLOP fraction
above 100% means the matmul reference was slowed more than the model at that moment.
"""
    print(f"wrote {write_section('runtime', text)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    main(parser.parse_args().rounds)
