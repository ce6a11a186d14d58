"""cnnzoo's `finetune` recipe against fastai's, under the same rules: a race that favours neither side.

Two tasks (`race_data.py`: the UCI digits on a fresh split whose test part chose nothing, and drawn
shapes), two network pairs, both trained from scratch (no downloads):

- bird: `bird_classifier` against the same layers written in torch (`fastai_side.bird_cnn`);
- mnv3: `mobilenetv3small_classifier` (keras.applications MobileNetV3Small, cnnzoo's head: average
  pool, dropout 0.2, dense) against timm's `mobilenetv3_small_100` body under the same head
  (`fastai_side.mnv3_small`; timm's unused `conv_head` removed, so the parameter counts compare).

Two regimes, each the same on both sides: `reg` (random shifts up to 10% and zoom 0.9-1.1 with black
fill, cnnzoo's `augment="auto"` at this size, and label smoothing 0.1: cnnzoo's defaults) and `plain`
(neither). Each side keeps its own optimiser and schedule defaults: cnnzoo Adam, its from-scratch
stage at 1e-3 with cosine decay; fastai Adam (wd 0.01), `fit_one_cycle` at `lr_find()`'s valley.

The rules (the same for both sides):
- the data is decoded once, before the clock (`<task>.npz`, read into arrays / tensors);
- the budget counts process CPU seconds (`--budget`, per run), from before the model is built to
  after the trained model is saved, all of cnnzoo's closing work (BatchNorm re-estimation, the final
  validation, the save) included;
- no learning-rate search is billed: cnnzoo's 1e-3 is its default, fastai's LR finder runs once per
  (task, network, regime) before the runs, outside any budget;
- the epoch count is planned from a timed 2-epoch probe run (seed 0, unbilled) of the same side and
  case, so that the schedule ends inside 90% of the budget; a guard still stops a run whose next
  epoch would overrun (reported as cut);
- `--seeds` seeds per case (weights, shuffling, augmentation); each side runs in its own process on
  `--threads` threads, the two sides at the same time, the runs in the same order.

Written to `--results` (default `benchmarks/results/fastai_race/`): `runs_cnnzoo.jsonl`,
`runs_fastai.jsonl` (a record per run), `curves.csv` (every epoch of every run, both sides),
`summary.csv` and `summary.md` (mean, standard deviation, min-max per case), and the section of
docs/benchmarks.md. Rerunning skips the runs already recorded (`--fresh` starts over).

Run: `make bench-fastai` (creates `.venv-fastai` first), or
`.venv/bin/python benchmarks/bench_fastai.py --fastai-python .venv-fastai/bin/python [--budget 30]`.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import race_report  # noqa: E402
from race_data import write_tasks  # noqa: E402

# (task, pair) in the order they run: the two cases that matter most first.
CASES = (("digits", "bird"), ("shapes", "mnv3"), ("digits", "mnv3"), ("shapes", "bird"))
PAIRS = {"bird": ("bird_classifier", "bird_cnn"), "mnv3": ("mobilenetv3small_classifier", "mnv3_small")}
REGIMES = ("reg", "plain")
MARGIN = 0.9  # the plan fills this share of the budget (as fastai_side.MARGIN)
# torch's OpenMP threads spin at every barrier; on a shared machine a descheduled thread makes each batch wait.
OMP_WAIT_POLICY = "PASSIVE"


def regime_options(regime):
    """cnnzoo's keywords for a regime: its defaults (`reg`) or no augmentation and no smoothing (`plain`)."""
    return (
        {"augment": "auto", "label_smoothing": 0.1} if regime == "reg" else {"augment": False, "label_smoothing": 0.0}
    )


def train_cnnzoo(model_name, splits, regime, seed, epochs, budget, out):
    """One `cnnzoo.finetune` run on the clock; its record (curve, seconds, accuracies)."""
    import keras

    import cnnzoo

    curve, record = [], {"cut": False}

    class Guard(keras.callbacks.Callback):
        """Records each epoch; stops when another epoch would overrun the budget."""

        def on_epoch_end(self, epoch, logs=None):
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            acc = next(v for k, v in logs.items() if k.startswith("val_") and "acc" in k)
            curve.append({"epoch": len(curve) + 1, "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
                          "train_loss": float(logs["loss"]), "val_loss": float(logs["val_loss"]),
                          "val_acc": float(acc)})  # fmt: skip
            last = curve[-2]["cpu_s"] if len(curve) > 1 else self.fit0
            if len(curve) < epochs and cpu + (cpu - last) > budget:
                record["cut"] = True
                self.model.stop_training = True

        def on_train_begin(self, logs=None):
            self.fit0 = time.process_time() - cpu0

    (x, y), (x_val, y_val) = splits["train"], splits["valid"]
    wall0, cpu0 = time.perf_counter(), time.process_time()
    result = cnnzoo.finetune(
        model_name, (x, y, x_val, y_val), input_shape=x.shape[1:], out=out, epochs=epochs, callbacks=[Guard()],
        seed=seed, resume=False, verbose=0, plots=False, **regime_options(regime),
    )  # fmt: skip
    record.update(cpu_s=round(time.process_time() - cpu0, 2), wall_s=round(time.perf_counter() - wall0, 2))
    x_test, y_test = splits["test"]
    record.update(
        curve=curve,
        val_acc=float(result.val_accuracy),
        test_acc=float(cnnzoo.evaluate(result.model, (x_test, y_test))[0]),
        params=int(result.model.count_params()),
        recipe=f"finetune({model_name!r}, data, epochs={epochs}, **{regime_options(regime)}): "
        + ", ".join(str(s.stage) for s in result.stages),
    )
    return record


def plan_cnnzoo(model_name, splits, regime, budget, root):
    """The epochs that fit: from a timed 2-epoch probe (seed 0, unbilled), as `fastai_side.plan` does."""
    probe = train_cnnzoo(model_name, splits, regime, 0, 2, float("inf"), root / "probe")
    per_epoch = probe["curve"][1]["cpu_s"] - probe["curve"][0]["cpu_s"]
    fixed = max(0.0, probe["cpu_s"] - 2 * per_epoch)
    epochs = max(1, math.floor((MARGIN * budget - fixed) / per_epoch))
    return epochs, {"per_epoch_s": round(per_epoch, 2), "fixed_s": round(fixed, 2), "lr": 1e-3}


def done_keys(path):
    """`(task, arch, regime, seed)` of the runs already recorded in a JSON lines file."""
    if not path.exists():
        return set()
    return {(r["task"], r["arch"], r["regime"], r["seed"]) for r in map(json.loads, path.read_text().splitlines())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fastai-python", default=str(HERE.parent / ".venv-fastai" / "bin" / "python"))
    parser.add_argument("--budget", type=float, default=30.0, help="process CPU seconds per run and side")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="threads per side (TensorFlow, torch)")
    parser.add_argument("--cases", default=",".join(f"{t}/{p}" for t, p in CASES), help="task/pair,... in order")
    parser.add_argument("--regimes", default=",".join(REGIMES))
    parser.add_argument("--results", default=str(HERE / "results" / "fastai_race"))
    parser.add_argument("--fresh", action="store_true", help="forget the runs already recorded")
    parser.add_argument("--note", default="", help="a sentence on the machine's load, for the report")
    parser.add_argument("--report-only", action="store_true", help="write the report from the recorded runs")
    parser.add_argument("--no-write", action="store_true", help="leave docs/benchmarks.md alone")
    args = parser.parse_args()
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    files = {side: results / f"runs_{side}.jsonl" for side in ("cnnzoo", "fastai")}
    meta_file = results / "meta.json"
    if not args.report_only:
        if args.fresh:
            for f in files.values():
                f.unlink(missing_ok=True)
        run(args, files, results)
        meta = {"budget": args.budget, "threads": args.threads, "seeds": args.seeds, "note": args.note}
        meta_file.write_text(json.dumps(meta, indent=1))
    meta = json.loads(meta_file.read_text())
    if args.note:  # a note given with --report-only replaces the recorded one
        meta["note"] = args.note
    text = race_report.write(results, files, meta)
    if not args.no_write:
        from _report import write_section

        print(f"wrote {write_section('fastai', text)}")


def run(args, files, results):
    if not Path(args.fastai_python).exists():
        sys.exit(f"no fastai venv at {args.fastai_python}: run `make bench-fastai` (it creates .venv-fastai)")
    root = Path(tempfile.mkdtemp(prefix="bench_fastai-"))
    tasks = write_tasks(root)
    cases = [tuple(c.split("/")) for c in args.cases.split(",")]
    jobs = [
        {"task": task, "pair": pair, "npz": str(tasks[task][0]), "regime": regime, "seed": seed, "budget": args.budget}
        for task, pair in cases
        for seed in range(args.seeds)
        for regime in args.regimes.split(",")
    ]
    fastai_done, ours_done = done_keys(files["fastai"]), done_keys(files["cnnzoo"])
    theirs = [{**j, "arch": PAIRS[j["pair"]][1]} for j in jobs]
    theirs = [j for j in theirs if (j["task"], j["arch"], j["regime"], j["seed"]) not in fastai_done]
    (root / "jobs.json").write_text(json.dumps(theirs))
    print(f"data and jobs in {root}; load average {os.getloadavg()[0]:.1f}", flush=True)
    worker = subprocess.Popen(
        [args.fastai_python, str(HERE / "fastai_side.py"), str(root / "jobs.json"), "--out", str(files["fastai"]),
         "--threads", str(args.threads)],
        env={**os.environ, "OMP_WAIT_POLICY": OMP_WAIT_POLICY},
    )  # fmt: skip
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    plans = {}
    for job in jobs:
        name = PAIRS[job["pair"]][0]
        if (job["task"], name, job["regime"], job["seed"]) in ours_done:
            continue
        splits = tasks[job["task"]][1]
        key = (job["task"], name, job["regime"])
        if key not in plans:
            plans[key] = plan_cnnzoo(name, splits, job["regime"], args.budget, root / "plan" / "-".join(key))
            keras.backend.clear_session()
        epochs, facts = plans[key]
        out = root / "runs" / f"{job['task']}-{job['pair']}-{job['regime']}-{job['seed']}"
        record = train_cnnzoo(name, splits, job["regime"], job["seed"], epochs, args.budget, out)
        keras.backend.clear_session()
        record.update(
            {k: job[k] for k in ("task", "pair", "regime", "seed", "budget")}, arch=name, side="cnnzoo",
            planned_epochs=epochs, plan=facts,
        )  # fmt: skip
        with open(files["cnnzoo"], "a") as f:
            f.write(json.dumps(record) + "\n")
        print(
            f"{job['task']:6s} {job['pair']:4s} {job['regime']:5s} seed {job['seed']} cnnzoo "
            f"{len(record['curve'])}/{epochs} epochs {record['cpu_s']:.1f} CPU s test {record['test_acc']:.2%}",
            flush=True,
        )
    if worker.wait() != 0:
        sys.exit(f"fastai_side.py failed (exit {worker.returncode}); the runs it recorded are in {files['fastai']}")


if __name__ == "__main__":
    main()
