"""The report of the cnnzoo-against-fastai race (`bench_fastai.py`): curves, summary tables, the docs section.

From the per-run records (`runs_cnnzoo.jsonl`, `runs_fastai.jsonl`) it writes `curves.csv` (every
epoch of every run), `summary.csv` and `summary.md` (per task, pair, regime and side: seeds, mean,
sample standard deviation and min-max of the test accuracy, the validation accuracy, the epochs and
the CPU seconds), and returns the markdown section for docs/benchmarks.md.
"""

import csv
import json
import statistics

from _report import machine

NETS = {"bird": "`bird_classifier` / torch `bird_cnn`", "mnv3": "MobileNetV3-Small (cnnzoo's head on both)"}
REGIME_WORDS = {"reg": "shift+zoom, label smoothing 0.1", "plain": "no augmentation, no smoothing"}
ORDER = {("digits", "bird"): 0, ("shapes", "mnv3"): 1, ("digits", "mnv3"): 2, ("shapes", "bird"): 3}


def load(files):
    """Every recorded run, both sides, as dicts."""
    runs = []
    for path in files.values():
        if path.exists():
            runs += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return runs


def stats(values):
    """`(mean, sample std, min, max)` of a list (std 0 for one value)."""
    return (
        statistics.fmean(values),
        statistics.stdev(values) if len(values) > 1 else 0.0,
        min(values),
        max(values),
    )


def groups(runs):
    """`{(task, pair, regime): {side: [runs by seed]}}`, in the race's order."""
    out = {}
    for r in runs:
        out.setdefault((r["task"], r["pair"], r["regime"]), {}).setdefault(r["side"], []).append(r)
    for sides in out.values():
        for rs in sides.values():
            rs.sort(key=lambda r: r["seed"])
    return dict(sorted(out.items(), key=lambda kv: (ORDER.get(kv[0][:2], 9), kv[0][2] != "reg")))


def summary_rows(runs):
    rows = []
    for (task, pair, regime), sides in groups(runs).items():
        for side in ("cnnzoo", "fastai"):
            rs = sides.get(side, [])
            if not rs:
                continue
            test, val = stats([r["test_acc"] for r in rs]), stats([r["val_acc"] for r in rs])
            rows.append({
                "task": task, "pair": pair, "regime": regime, "side": side, "network": rs[0]["arch"],
                "params": rs[0]["params"], "seeds": len(rs), "planned_epochs": rs[0]["planned_epochs"],
                "epochs_run_mean": statistics.fmean(len(r["curve"]) for r in rs),
                "cut_runs": sum(r["cut"] for r in rs), "cpu_s_mean": statistics.fmean(r["cpu_s"] for r in rs),
                "cpu_s_max": max(r["cpu_s"] for r in rs), "lr": rs[0]["plan"]["lr"],
                "epoch_cpu_s": rs[0]["plan"]["per_epoch_s"],
                "first_epoch_end_cpu_s": statistics.fmean(r["curve"][0]["cpu_s"] for r in rs if r["curve"]),
                "closing_cpu_s": statistics.fmean(r["cpu_s"] - r["curve"][-1]["cpu_s"] for r in rs if r["curve"]),
                "test_mean": test[0], "test_std": test[1], "test_min": test[2], "test_max": test[3],
                "val_mean": val[0], "val_std": val[1],
            })  # fmt: skip
    return rows


def verdicts(runs):
    """One line per (task, pair, regime) with both sides: mean difference and seed-by-seed wins."""
    lines = []
    for (task, pair, regime), sides in groups(runs).items():
        ours = {r["seed"]: r["test_acc"] for r in sides.get("cnnzoo", [])}
        theirs = {r["seed"]: r["test_acc"] for r in sides.get("fastai", [])}
        seeds = sorted(set(ours) & set(theirs))
        if not seeds:
            continue
        diff = statistics.fmean(ours[s] - theirs[s] for s in seeds)
        ahead = sum(ours[s] > theirs[s] for s in seeds)
        behind = sum(ours[s] < theirs[s] for s in seeds)
        spread = max(stats([ours[s] for s in seeds])[1], stats([theirs[s] for s in seeds])[1])
        word = "within the seed spread" if abs(diff) <= spread else "cnnzoo ahead" if diff > 0 else "fastai ahead"
        lines.append(
            f"- {task}, {pair}, {regime}: cnnzoo - fastai = {diff:+.2%} test accuracy (mean over {len(seeds)} "
            f"paired seeds); cnnzoo ahead on {ahead}, behind on {behind}, tied on {len(seeds) - ahead - behind}: "
            f"**{word}** (largest side's std {spread:.2%})."
        )
    return lines


def write(results, files, meta):
    """Writes curves.csv, summary.csv and summary.md under `results`; returns the docs section."""
    runs = load(files)
    with open(results / "curves.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", "pair", "regime", "side", "seed", "epoch", "cpu_s", "wall_s", "train_loss", "val_loss",
                    "val_acc"])  # fmt: skip
        for r in sorted(runs, key=lambda r: (r["task"], r["pair"], r["regime"], r["side"], r["seed"])):
            for c in r["curve"]:
                w.writerow([r["task"], r["pair"], r["regime"], r["side"], r["seed"], c["epoch"], c["cpu_s"],
                            c["wall_s"], f"{c['train_loss']:.4f}", f"{c['val_loss']:.4f}", f"{c['val_acc']:.4f}"])  # fmt: skip
    rows = summary_rows(runs)
    if rows:
        with open(results / "summary.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    table = [
        "| task | network | regime | side | parameters | lr | CPU s per epoch / epoch 1 ends / closing | epochs (planned; cut runs) | "
        "CPU s mean (max) | val. accuracy mean ± std | **test accuracy mean ± std** | test min-max | seeds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        table.append(
            f"| {r['task']} | {r['pair']} | {r['regime']} | {r['side']} | {r['params']:,} | {r['lr']:.2g} | "
            f"{r['epoch_cpu_s']:.1f} / {r['first_epoch_end_cpu_s']:.1f} / {r['closing_cpu_s']:.1f} | "
            f"{r['planned_epochs']} ({r['cut_runs']}) | {r['cpu_s_mean']:.1f} ({r['cpu_s_max']:.1f}) | "
            f"{r['val_mean']:.2%} ± {r['val_std']:.2%} | **{r['test_mean']:.2%} ± {r['test_std']:.2%}** | "
            f"{r['test_min']:.2%}-{r['test_max']:.2%} | {r['seeds']} |"
        )
    lines = verdicts(runs)
    (results / "summary.md").write_text(
        f"Budget {meta['budget']:.0f} process CPU s per run, {meta['threads']} thread(s) per side.\n\n"
        + "\n".join(table)
        + "\n\n"
        + "\n".join(lines)
        + "\n"
    )
    versions = next((r["versions"] for r in runs if "versions" in r), {})
    findings = results / "findings.md"  # written by hand after reading the results; kept in the section
    return section(meta, table, lines, versions, findings.read_text() if findings.exists() else "")


def section(meta, table, lines, versions, findings=""):
    budget = meta["budget"]
    return f"""
## cnnzoo against fastai

Machine: {machine()}, CPU only, shared with other jobs; each side runs in its own process on
{meta["threads"]} thread(s) (TensorFlow intra/inter-op, `torch.set_num_threads`), the two sides at the
same time, the runs in the same order. {meta.get("note", "")} Script: `benchmarks/bench_fastai.py` (`make
bench-fastai`; data in `benchmarks/race_data.py`, report in `benchmarks/race_report.py`; the fastai half,
`benchmarks/fastai_side.py`, runs in `.venv-fastai`: {", ".join(f"{k} {v}" for k, v in versions.items())}).
Raw records, every epoch of every run (`curves.csv`) and the summary: `benchmarks/results/fastai_race/`.

**The rules, the same on both sides.** Budget **{budget:.0f} s of process CPU time per run**, from
before the model is built to after the trained model is saved: cnnzoo's closing work (BatchNorm
re-estimation, final validation, save) is inside it, and fastai saves its weights inside it too.
The images are decoded once, before the clock, on both sides. No learning-rate search is billed to
either: cnnzoo trains at its default 1e-3 (cosine decay), fastai at `lr_find()`'s valley, found once
per task, network and regime before the runs (column lr). The epoch count is planned, for each side
and case, from a timed 2-epoch probe run (unbilled) so that the whole schedule (fastai's one-cycle,
cnnzoo's cosine) ends inside 90% of the budget; a guard would stop a run whose next epoch overruns
(cut runs: schedules the guard ended early, when epochs cost more CPU s than in the probe). Seeds 0-{meta["seeds"] - 1} on each side (weights,
shuffling, augmentation). Both sides keep their optimiser defaults (cnnzoo: Keras Adam; fastai: Adam
with betas 0.9/0.99 and decoupled weight decay 0.01).

**Two regimes.** `reg`: random shifts up to 10% of each side and zoom 0.9-1.1 with black fill (what
cnnzoo's `augment="auto"` picks below 10,000 images; on the fastai side the same transform written as
a batch callback with `affine_grid`) and label smoothing 0.1 (fastai's
`LabelSmoothingCrossEntropyFlat`): cnnzoo's defaults, given to both. `plain`: no augmentation and
plain cross-entropy on both.

**Matched networks.** bird: `bird_classifier` against the same layers in torch. mnv3:
keras.applications MobileNetV3Small against timm's `mobilenetv3_small_100` body, **both under
cnnzoo's head** (average pool, dropout 0.2, one dense layer; not fastai's default `vision_learner`
head of ~598k parameters); timm's `conv_head`, unused without its own head, is removed, so the
counts compare (they differ by timm's and Keras' block details).

**Data.** digits: all 1,797 UCI digits at 32x32 RGB on a fresh stratified split (seed 1919; 1,293
training, 144 validation, 360 test): cnnzoo's defaults were chosen on `cnnzoo.data.digits` split
seeds 0-9, and the test part of this split chose nothing; it is scored once per run, after
training. shapes: five drawn shape classes with clutter at 32x32 (seed 19; 1,500 / 300 / 500).
One test image is 0.28 points on digits, 0.2 on shapes.

{chr(10).join(table)}

{chr(10).join(lines)}

"CPU s per epoch / epoch 1 ends / closing": the CPU seconds of one epoch (the second epoch of each
side's unbilled probe), the clock when the first epoch ended (building the model, tracing and
compiling, one epoch; means over the seeds) and the seconds after the last epoch (cnnzoo: BatchNorm
re-estimation, final validation, saving; fastai: saving the weights).

{findings}
"""
