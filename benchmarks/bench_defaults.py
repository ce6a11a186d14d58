"""Defaults that win (issue 11, item 5): `cnnzoo.finetune` with no options against the RBF SVM.

For each split seed, the UCI digits split of `cnnzoo.data.digits(seed=s)` (stratified 80/20);
`cnnzoo.finetune` gets the training part and nothing else that changes the recipe (no stages,
epochs, learning rate, augmentation, batch size; only a fresh `out` directory and `verbose=0`),
and its model is tested on the held-out part, where `cnnzoo.cli.demo.svm_accuracy(s)` scores the
RBF SVM on the same split. Two models:

- `digits_cnn`, the zoo's digits network at its own 8x8x1 input: `finetune("digits_cnn", digits(seed=s))`,
  no option at all;
- `bird_classifier` at 32x32x3, the demo's model: `finetune("bird_classifier", digits(seed=s,
  image_size=(32, 32), channels=3), input_shape=(32, 32, 3))` (a name needs its input size; the
  entry's is 224x224).

Measured per call: process CPU time (`time.process_time`, all threads) and wall time of the whole
`finetune` call (building, data, training, saving, plots). Goal: beat the SVM on every seed 0-9
within 60 s of CPU each.

Run: `.venv/bin/python benchmarks/bench_defaults.py [--seeds 0-9] [--models digits_cnn,bird_classifier]`
(writes its section of docs/benchmarks.md). `run_seed(seed, model)` is importable (one seed, e.g.
for a slow test).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _report import machine, write_section  # noqa: E402

BUDGET_S = 60.0
MODELS = ("digits_cnn", "bird_classifier")


def call_for(model, seed):
    """`(data, kwargs)`: what `finetune` gets for `model` on split `seed` (the data, the input size, no recipe)."""
    import cnnzoo

    if model == "digits_cnn":
        return cnnzoo.data.digits(seed=seed), {}
    return (cnnzoo.data.digits(seed=seed, image_size=(32, 32), channels=3), {"input_shape": (32, 32, 3)})


def run_seed(seed, model="bird_classifier", out=None):
    """One split seed: `cnnzoo.finetune` with its defaults against the RBF SVM on the same split.

    Args:
        seed: int, the split seed of `cnnzoo.data.digits` (and of `finetune`'s default seed 0: not passed).
        model: `"digits_cnn"` (8x8x1) or `"bird_classifier"` (32x32x3).
        out: run directory; default a new temporary one (a reused `out` would resume the old run).

    Returns:
        A dict: `seed`, `model`, `accuracy` (test), `svm` (test accuracy of the RBF SVM),
        `verdict` (`"win"`, `"tie"` or `"lose"`), `cpu_seconds`, `wall_seconds`,
        `train_seconds` (the stages' own time), `stages` (what `"auto"` chose), `val_accuracy`,
        `warnings`.

    Example:

    >>> row = run_seed(0, "digits_cnn")  # doctest: +SKIP
    >>> row["verdict"], row["accuracy"] > row["svm"]  # doctest: +SKIP
    ('win', True)
    """
    import cnnzoo
    from cnnzoo.cli.demo import svm_accuracy

    data, kwargs = call_for(model, seed)
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix=f"bench_defaults-{model}-{seed}-"))
    cpu, wall = time.process_time(), time.perf_counter()
    result = cnnzoo.finetune(model, data, out=out, verbose=0, **kwargs)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    accuracy, _ = cnnzoo.evaluate(result.model, [(data.x_test, data.y_test)], len(data.class_names))
    svm = svm_accuracy(seed)
    verdict = "win" if accuracy > svm else "tie" if accuracy == svm else "lose"
    return {
        "seed": seed,
        "model": model,
        "accuracy": accuracy,
        "svm": svm,
        "verdict": verdict,
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "train_seconds": sum(s.seconds or 0 for s in result.stages),
        "stages": ", ".join(str(s.stage) for s in result.stages),
        "val_accuracy": result.val_accuracy,
        "warnings": list(result.warnings),
    }


def summary(rows, model):
    """`"beats the SVM on k/n seeds, max CPU X s ..."` for one model's rows."""
    mine = [r for r in rows if r["model"] == model]
    wins = sum(r["verdict"] == "win" for r in mine)
    cpu, wall = max(r["cpu_seconds"] for r in mine), max(r["wall_seconds"] for r in mine)
    mean = sum(r["accuracy"] for r in mine) / len(mine)
    svm = sum(r["svm"] for r in mine) / len(mine)
    return (
        f"`{model}` beats the SVM on **{wins}/{len(mine)}** seeds (ties: "
        f"{sum(r['verdict'] == 'tie' for r in mine)}), mean test accuracy {mean:.2%} against {svm:.2%}; "
        f"max time {cpu:.0f} s CPU, {wall:.0f} s wall (budget {BUDGET_S:.0f} s of CPU)"
    )


def report(rows, models, load):
    table = []
    for r in rows:
        verdict = {"win": "**win**", "tie": "tie", "lose": "lose"}[r["verdict"]]
        table.append(
            f"| {r['model']} | {r['seed']} | {r['accuracy']:.2%} | {r['svm']:.2%} | {verdict} | "
            f"{r['cpu_seconds']:.1f} s | {r['wall_seconds']:.1f} s | {r['train_seconds']:.1f} s |"
        )
    stages = sorted({f"`{r['model']}`: `{r['stages']}`" for r in rows})
    return f"""
## Defaults against the RBF SVM

Machine: {machine()}, CPU only. {load} Script: `benchmarks/bench_defaults.py` (issue 11, "defaults
that win"). For each split seed, `cnnzoo.finetune` with no recipe options on the training part of
`cnnzoo.data.digits(seed=s)` (its own 20% validation split), tested on the held-out 360 images,
where the RBF SVM (`cnnzoo.cli.demo.svm_accuracy(s)`) scores on the same split.
`digits_cnn`: `finetune("digits_cnn", digits(seed=s))` at its 8x8x1 input, no option at all;
`bird_classifier`: the demo's model at 32x32x3 (`digits(..., image_size=(32, 32), channels=3)`,
`input_shape=(32, 32, 3)`). Times: process CPU time (all threads) and wall time of the whole
`finetune` call (build, data, training, saving, plots); "train" is the stages' own wall time.
Stages `"auto"` chose: {"; ".join(stages)}.

| model | seed | test accuracy | RBF SVM | vs SVM | CPU time | wall time | train |
| --- | --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(table)}

{chr(10).join(f"- {summary(rows, m)}." for m in models)}
"""


def parse_seeds(text):
    """`"0-9"` or `"0,3,5"` -> list of ints."""
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-9")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--note", default="", help="a sentence on the machine's load, for the report")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    import keras

    models = args.models.split(",")
    load = f"Load average before the run: {os.getloadavg()[0]:.1f}. {args.note}".strip()
    rows = []
    for model in models:
        for seed in parse_seeds(args.seeds):
            row = run_seed(seed, model)
            rows.append(row)
            print(
                f"{model:16s} seed {seed}: test {row['accuracy']:.2%}  svm {row['svm']:.2%}  {row['verdict']:4s}  "
                f"cpu {row['cpu_seconds']:5.1f} s  wall {row['wall_seconds']:5.1f} s  ({row['stages']})"
                + (f"  warnings: {row['warnings']}" if row["warnings"] else ""),
                flush=True,
            )
            keras.backend.clear_session()
    load = f"{load} Load average after: {os.getloadavg()[0]:.1f}."
    for model in models:
        print(summary(rows, model))
    if not args.no_write:
        print(f"wrote {write_section('defaults', report(rows, models, load))}")


if __name__ == "__main__":
    main()
