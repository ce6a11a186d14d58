"""runtime="auto" against the TF compiled call, and the ONNX Runtime settings behind it (issue 20).

Side by side in one process, interleaved round by round (every case once per round, medians):

Each case runs as a short block (a pause, one untimed call, three timed ones) within each round, so
the thread pools of one runtime are idle when the next one is timed (see `interleaved`).

1. ONNX Runtime session settings on the model's cached export: ORT's defaults, intra-op threads
   = the cores this process may use, no spinning, graph optimisation level, the memory arena off,
   and pre-allocated I/O (`io_binding`) for one image; `cnnzoo.deploy.runtimes.OnnxRuntime` keeps
   what wins here.
2. Latency per runtime, one image and a batch of 32: the TF compiled call (`runtime="tensorflow"`'s
   forward pass, the reference of the ratios), `cnnzoo.predict(path, x, runtime="tensorflow")`,
   `cnnzoo.predict(path, x)` (`runtime="auto"`: the verified ONNX export) and the bare ONNX Runtime
   call; each with its fraction of the machine's FLOP limit, taken as the best dense float32 matmul
   rate (TensorFlow, 2048x2048) measured in the same run.

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


def interleaved(cases, rounds, warmup=3, block=3, settle=0.02):
    """Median seconds per call of each case, over `rounds` rounds that take every case in turn.

    Within a round each case runs as a block: a pause of `settle` seconds, one untimed call and `block`
    timed ones (their median). The pause lets the thread pools of the case before go idle: ONNX
    Runtime's and TensorFlow's worker threads busy-wait for a while after a call, and timing single
    calls back to back let one runtime's spinning threads take the cores from the next (measured:
    it moved the TF call between 10 and 19 ms at 224x224 on 2 cores), which is not how a program
    that calls one runtime sees it.
    """
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times = {case: [] for case in cases}
    for _ in range(rounds):
        for case, fn in cases.items():
            time.sleep(settle)
            fn()
            times[case].append(statistics.median(timed(fn) for _ in range(block)))
    return {case: statistics.median(t) for case, t in times.items()}


MATMUL = "float32 matmul 2048x2048 (TensorFlow)"


def matmul_cases(n=2048):
    """A case timing a dense float32 matmul, run in the same rounds as the others (same load).

    TensorFlow's (oneDNN) reached the rate of NumPy's at 2048x2048 (1024x1024 ran at two thirds of it).
    NumPy's is not timed here: OpenBLAS's threads busy-wait after a call for longer than the pause
    between cases and slowed the TF call timed after them by up to 1.8x.
    """
    import numpy as np
    import tensorflow as tf

    t = tf.constant(np.random.default_rng(0).standard_normal((n, n)).astype(np.float32))
    return {MATMUL: lambda: tf.linalg.matmul(t, t).numpy()}


def matmul_rate(med, n=2048):
    """The matmul rate (FLOP/s) from its median; removes the case from `med`."""
    return 2 * n**3 / med.pop(MATMUL)


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


def other_runtimes(keras_path, x):
    """The bare calls of the other runtimes on the same model: LiteRT (XNNPACK) on the cached LiteRT export,
    OpenVINO on the cached ONNX file in float32 and, for reference only, in bfloat16 (its default where
    the CPU has bf16 units; not a candidate for `runtime="auto"`: bfloat16 arithmetic does not pass the
    float32 check)."""
    import openvino

    from cnnzoo.deploy.exported_cache import cached_export
    from cnnzoo.deploy.runtimes import open_runtime

    litert = open_runtime(cached_export(keras_path, "litert"))
    core = openvino.Core()
    onnx = core.read_model(str(cached_export(keras_path, "onnx")))
    f32 = core.compile_model(onnx, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"})
    bf16 = core.compile_model(onnx, "CPU", {"INFERENCE_PRECISION_HINT": "bf16", "PERFORMANCE_HINT": "LATENCY"})
    return {
        "LiteRT bare call (XNNPACK, float32)": lambda: litert.run(x),
        "OpenVINO bare call (float32)": lambda: f32(x)[0],
        "OpenVINO bare call (bfloat16, reference only)": lambda: bf16(x)[0],
    }


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
            **other_runtimes(keras_path, x),
            **matmul_cases(),
        }
        out[batch] = interleaved(cases, rounds)
    return out


def main(rounds, goals_only=False):
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
            for batch, med in ({} if goals_only else settings(onnx_path, shape, rounds)).items():
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

Machine: {machine()}, CPU only, load average {load:.1f} when it started (other jobs may share the 2
cores: rounds that take every case in turn slow every case alike, not the ratios). Script:
`benchmarks/bench_runtime.py`, median of {rounds} rounds after warm-up; in each round every case runs
as a block (a 20 ms pause, one untimed call, the median of three timed ones), so that one runtime's
busy-waiting threads do not take the cores from the next; randomly initialised models (latency does
not depend on the weights), the `.keras` file's export made and verified by `runtime="auto"` itself.

ONNX Runtime settings, each against ORT's defaults on the same file (ratio below 1: faster). The
rows after the threads row keep threads = usable cores and change one more thing:

| model (input) | batch | setting | median | ratio vs ORT defaults |
| --- | ---: | --- | ---: | ---: |
{chr(10).join(setting_rows)}

Latency per runtime; ratio against the TF compiled call; "of FLOP limit": the model's forward
FLOPs (`cnnzoo.info(...).flops` x batch) per second over the dense float32 matmul rate
(TensorFlow, 2048x2048; as fast as NumPy's there, and 1024x1024 ran at two thirds of it), timed as
one more case of the same rounds, so under the same load (median {statistics.median(rates) / 1e9:.0f} GFLOP/s
over the tables). The OpenVINO bfloat16 row is there to show what reduced precision would give on
this CPU; its FLOP fraction is still against the float32 rate, and `runtime="auto"` does not use it:

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
    if goals_only:  # a quick rerun of the goal rows (docs/deploy.md lists such runs); the page is not rewritten
        print(chr(10).join(goal_rows))
        return
    print(f"wrote {write_section('runtime', text)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument(
        "--goals-only", action="store_true", help="skip the settings tables, print the goal rows, write nothing"
    )
    args = parser.parse_args()
    main(args.rounds, args.goals_only)
