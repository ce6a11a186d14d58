"""cnnzoo's `finetune` defaults against fastai's recipe: same data, same splits, same time budget.

Two tasks, each written once as image folders `train/`, `valid/`, `test/` (PNG, Pillow) that both
sides read:

- digits: the UCI digits at 32x32 RGB (`cnnzoo.data.digits(seed=0, image_size=(32, 32), channels=3)`;
  its test part is `test/`, a stratified tenth of its training part is `valid/`);
- shapes: five shape classes (circle, square, triangle, cross, ring) of random size, position,
  colour and line width on a 32x32 canvas with random background colour, line and dot clutter;
  1,500 training, 300 validation, 500 test images.

Two network pairs, both from scratch (no downloads):

- `mobilenetv3small_classifier` (keras.applications MobileNetV3Small) against timm's
  `mobilenetv3_small_100` under fastai's `vision_learner(..., pretrained=False)` (fastai's head);
- `bird_classifier` against the same layers written in torch (`fastai_side.bird_cnn`) under a
  plain `Learner`.

cnnzoo side: `cnnzoo.finetune(name, (x, y, x_val, y_val), input_shape=(32, 32, 3))` with its
defaults (no stages, epochs, learning rate or augmentation given), the arrays read back from the
same PNG files; fastai side: `benchmarks/fastai_side.py` in `.venv-fastai` (LR finder, then
`fit_one_cycle` with the epoch count that fills the budget). Both sides are limited to the same
threads, and stop when another epoch would not end within the budget (a Keras callback passed
with `callbacks=`, a fastai callback); the clock starts before the model is built. The budget
counts process CPU time by default (`--clock cpu`: on a shared machine wall time measures the other
jobs too) or wall time (`--clock wall`). Recorded: per-epoch (wall seconds, CPU seconds, validation
accuracy), the accuracy at the budget, the time to a target validation accuracy, the test accuracy
of the final model.

Run: `make bench-fastai` (creates `.venv-fastai` first), or
`.venv/bin/python benchmarks/bench_fastai.py --fastai-python .venv-fastai/bin/python [--budget 60]`.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import numpy as np  # noqa: E402
from _report import machine, write_section  # noqa: E402

SHAPES = ("circle", "square", "triangle", "cross", "ring")
PAIRS = {
    "mobilenetv3": ("mobilenetv3small_classifier", "mobilenetv3_small_100"),
    "bird": ("bird_classifier", "bird_cnn"),
}
TARGETS = {"digits": 0.95, "shapes": 0.90}
# torch's OpenMP threads spin at every barrier; on a 2-core machine shared with other jobs one
# descheduled thread makes each batch wait: measured here at load 6, a bird_cnn step took 1.05 s wall /
# 0.33 s CPU with the default policy, 0.10 s / 0.045 s with PASSIVE (and 0.08 s / 0.04 s on one thread).
OMP_WAIT_POLICY = "PASSIVE"


def draw_shapes(n, size=32, seed=0, clutter=6):
    """`(x, y)`: `n` RGB uint8 images of one of `SHAPES` each (balanced), on a cluttered canvas."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(SHAPES)
    rng.shuffle(y)
    x = np.empty((n, size, size, 3), np.uint8)
    for i, label in enumerate(y):
        background = tuple(int(v) for v in rng.integers(0, 120, 3))
        image = Image.new("RGB", (size, size), background)
        draw = ImageDraw.Draw(image)
        for _ in range(clutter):
            colour = tuple(int(v) for v in rng.integers(40, 200, 3))
            if rng.random() < 0.5:
                draw.line([tuple(int(v) for v in rng.integers(0, size, 2)) for _ in range(2)], fill=colour, width=1)
            else:
                cx, cy = rng.integers(0, size, 2)
                draw.point([(int(cx), int(cy)), (int(cx) + 1, int(cy))], fill=colour)
        r = rng.uniform(0.22, 0.4) * size
        cx, cy = rng.uniform(r, size - r, 2)
        colour = tuple(int(v) for v in rng.integers(130, 256, 3))
        width = int(rng.integers(2, 4))
        box = [cx - r, cy - r, cx + r, cy + r]
        name = SHAPES[label]
        if name == "circle":
            draw.ellipse(box, fill=colour)
        elif name == "square":
            angle = rng.uniform(0, np.pi / 2)
            corners = [
                (cx + r * 0.85 * np.cos(angle + k * np.pi / 2), cy + r * 0.85 * np.sin(angle + k * np.pi / 2))
                for k in range(4)
            ]
            draw.polygon(corners, fill=colour)
        elif name == "triangle":
            angle = rng.uniform(0, 2 * np.pi)
            draw.polygon(
                [
                    (cx + r * np.cos(angle + k * 2 * np.pi / 3), cy + r * np.sin(angle + k * 2 * np.pi / 3))
                    for k in range(3)
                ],
                fill=colour,
            )
        elif name == "cross":
            angle = rng.uniform(0, np.pi / 2)
            for k in range(2):
                a = angle + k * np.pi / 2
                dx, dy = r * np.cos(a), r * np.sin(a)
                draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=colour, width=width + 1)
        else:
            draw.ellipse(box, outline=colour, width=width)
        x[i] = np.asarray(image)
    return x, y.astype(np.int64)


def write_task(root, splits, class_names):
    """Writes `{split: (x, y)}` as `root/<split>/<class>/<index>.png`; returns them read back as arrays."""
    from PIL import Image

    read = {}
    for split, (x, y) in splits.items():
        files = []
        for i, (image, label) in enumerate(zip(x, y)):
            path = root / split / class_names[label] / f"{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path)
            files.append((path, label))
        read[split] = (
            np.stack([np.asarray(Image.open(p).convert("RGB")) for p, _ in files]),
            np.array([label for _, label in files], np.int64),
        )
    return read


def make_tasks(root, seed=0):
    """Writes both tasks under `root`; returns `{task: (folder, {split: (x, y)}, class_names)}`."""
    from sklearn.model_selection import train_test_split

    import cnnzoo

    d = cnnzoo.data.digits(seed=seed, image_size=(32, 32), channels=3)
    x_train, x_val, y_train, y_val = train_test_split(
        d.x_train, d.y_train, test_size=0.1, random_state=seed, stratify=d.y_train
    )
    tasks = {
        "digits": ({"train": (x_train, y_train), "valid": (x_val, y_val), "test": (d.x_test, d.y_test)}, d.class_names)
    }
    x, y = draw_shapes(2300, seed=seed)
    tasks["shapes"] = (
        {"train": (x[:1500], y[:1500]), "valid": (x[1500:1800], y[1500:1800]), "test": (x[1800:], y[1800:])},
        SHAPES,
    )
    return {
        name: (root / name, write_task(root / name, splits, names), names) for name, (splits, names) in tasks.items()
    }


def run_cnnzoo(model_name, arrays, budget, out, clock="cpu", seed=0):
    """`cnnzoo.finetune` with its defaults, stopped when another epoch would overrun `budget` seconds.

    Seconds count on `clock`: `"cpu"` (this process's CPU time, all threads) or `"wall"`.
    """
    import keras

    import cnnzoo

    class Budget(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.last, self.curve, self.done = 0.0, [], False

        def on_epoch_end(self, epoch, logs=None):
            wall, cpu = time.perf_counter() - wall_start, time.process_time() - cpu_start
            now = cpu if clock == "cpu" else wall
            accuracy = next(v for k, v in logs.items() if k.startswith("val_") and "acc" in k)
            self.curve.append((round(wall, 2), round(cpu, 2), float(accuracy)))
            self.done = self.done or now + (now - self.last) > budget
            self.model.stop_training = self.done
            self.last = now

        def on_train_begin(self, logs=None):  # as fastai's: an epoch's time is counted from the start of `fit`
            self.last = time.process_time() - cpu_start if clock == "cpu" else time.perf_counter() - wall_start

        def on_epoch_begin(self, epoch, logs=None):  # a later stage, once the budget is spent: stopped too
            self.model.stop_training = self.done

    (x, y), (x_val, y_val), (x_test, y_test) = arrays["train"], arrays["valid"], arrays["test"]
    stop = Budget()
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    result = cnnzoo.finetune(
        model_name,
        (x, y, x_val, y_val),
        input_shape=x.shape[1:],
        out=out,
        callbacks=[stop],
        seed=seed,
        verbose=0,
        plots=False,
    )
    wall, cpu = time.perf_counter() - wall_start, time.process_time() - cpu_start
    batches = [(x_test[i : i + 256], y_test[i : i + 256]) for i in range(0, len(x_test), 256)]
    test_accuracy, _ = cnnzoo.evaluate(result.model, batches, int(y.max()) + 1)
    planned = sum(s.stage.epochs for s in result.stages)
    return {
        "side": "cnnzoo",
        "recipe": f"finetune({model_name!r}, data): " + ", ".join(str(s.stage) for s in result.stages),
        "planned_epochs": planned,
        "epochs": len(stop.curve),
        "curve": stop.curve,
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "test_accuracy": float(test_accuracy),
        "params": int(result.model.count_params()),
        "final_val_accuracy": result.val_accuracy,
        "warnings": list(result.warnings),
    }


def run_fastai(python, folder, arch, budget, threads, clock="cpu", seed=0):
    """`fastai_side.py` in its own venv; its JSON line."""
    done = subprocess.run(
        [
            python,
            str(HERE / "fastai_side.py"),
            str(folder),
            arch,
            "--budget",
            str(budget),
            "--clock",
            clock,
            "--threads",
            str(threads),
            "--seed",
            str(seed),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_WAIT_POLICY": OMP_WAIT_POLICY},
    )
    if done.returncode != 0:
        raise RuntimeError(f"fastai_side.py failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def at_budget(curve, budget, clock="cpu"):
    """Validation accuracy of the last epoch that ended within the budget (None if none did)."""
    k = 1 if clock == "cpu" else 0
    inside = [point[2] for point in curve if point[k] <= budget]
    return inside[-1] if inside else None


def final_val(r):
    """Validation accuracy of the model a side returned: cnnzoo's `result.val_accuracy` (after any BatchNorm
    re-estimation), fastai's last epoch."""
    return r.get("final_val_accuracy", r["curve"][-1][2] if r["curve"] else None)


def time_to(curve, target, clock="cpu"):
    """Seconds on `clock` to the first epoch at or above `target` validation accuracy (None if never)."""
    k = 1 if clock == "cpu" else 0
    return next((point[k] for point in curve if point[2] >= target), None)


def fmt(value):
    return "-" if value is None else f"{value:.2%}"


def report(results, budget, clock, threads, load):
    unit = "CPU s" if clock == "cpu" else "s"
    rows, curves = [], []
    for (task, _), sides in results.items():
        target = TARGETS[task]
        for r in sides:
            reached = time_to(r["curve"], target, clock)
            rows.append(
                f"| {task} | {r['side']} | `{r['net']}` ({r['params']:,}) | {r['epochs']}/{r['planned_epochs']} | "
                f"{fmt(at_budget(r['curve'], budget, clock))} | "
                f"{'not reached' if reached is None else f'{reached:.0f} {unit}'} | "
                f"{r['cpu_seconds']:.0f} / {r['wall_seconds']:.0f} s | {fmt(final_val(r))} | "
                f"**{fmt(r['test_accuracy'])}** |"
            )
            curves.append(
                f"- {task}, {r['side']} `{r['net']}`: "
                + ", ".join(f"{c:.0f}/{w:.0f} s {a:.1%}" for w, c, a in r["curve"])
            )
    recipes = [
        f"- {task}, {r['side']}: `{r['recipe']}`" + (f" (lr {r['lr']:.2g})" if "lr" in r else "")
        for (task, _), sides in results.items()
        for r in sides
    ]
    verdicts = []
    for (task, pair), (ours, theirs) in results.items():
        better = (
            "above"
            if ours["test_accuracy"] > theirs["test_accuracy"]
            else "equal to"
            if ours["test_accuracy"] == theirs["test_accuracy"]
            else "below"
        )
        verdicts.append(
            f"- {task}, {pair}: cnnzoo {fmt(ours['test_accuracy'])} {better} fastai "
            f"{fmt(theirs['test_accuracy'])} (test), in {ours['cpu_seconds']:.0f} against "
            f"{theirs['cpu_seconds']:.0f} CPU s."
        )
    versions = next((r["versions"] for sides in results.values() for r in sides if "versions" in r), {})
    clock_words = (
        "process CPU time (all threads; robust on a shared machine, where wall time depends on the other jobs)"
        if clock == "cpu"
        else "wall time"
    )
    return f"""
## cnnzoo against fastai

Machine: {machine()}, CPU only; each side limited to {threads} threads (TensorFlow intra/inter-op,
`torch.set_num_threads`). {load} Script: `benchmarks/bench_fastai.py` (`make bench-fastai`; the
fastai half, `benchmarks/fastai_side.py`, runs in `.venv-fastai`: {", ".join(f"{k} {v}" for k, v in versions.items())}).
Both sides train from scratch on the same PNG files (train / valid / test folders), validate on the
same images, and get the same budget of **{budget:.0f} s of {clock_words}**, counted from before the
model is built (fastai's LR finder included); each stops when another epoch would not end within it.
Digits: the UCI digits at 32x32 (1,293 training, 144 validation, 360 test images, split seed 0);
shapes: five drawn shape classes with clutter at 32x32 (1,500 / 300 / 500). Target validation
accuracy: digits {TARGETS["digits"]:.0%}, shapes {TARGETS["shapes"]:.0%}.

| task | side | network (parameters) | epochs run / planned | val. accuracy at {budget:.0f} {unit} (last epoch within) | time to target | CPU / wall time | final val. accuracy | test accuracy |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(rows)}

{chr(10).join(verdicts)}

"Final val. accuracy" is the returned model's: for cnnzoo `result.val_accuracy`, measured after
`finetune`'s BatchNorm re-estimation, which is why it can differ from the last epoch's curve point
(keras.applications' MobileNetV3 keeps BatchNorm momentum 0.999, so its moving statistics during
the epochs are mostly their initial values).

Recipes: cnnzoo's `finetune` defaults (the stages it chose are listed); fastai's from-scratch
recipe: `lr_find()` (valley suggestion), then `fit_one_cycle` with the epoch count that fills the
budget at the speed the finder measured (`fine_tune` is fastai's recipe for a pretrained body: it
starts with a frozen epoch, which on random weights trains a head on noise). No augmentation on
either side (fastai's `from_folder` adds none by default). torch runs with `OMP_WAIT_POLICY=PASSIVE`:
with OpenMP's default spinning, a shared 2-core machine made its steps up to 10x slower.
{chr(10).join(recipes)}

Per-epoch curves (CPU / wall seconds, validation accuracy):
{chr(10).join(curves)}
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fastai-python", default=str(HERE.parent / ".venv-fastai" / "bin" / "python"))
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per side and run")
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="what the budget counts: process CPU time (default) or wall time",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tasks", default="digits,shapes")
    parser.add_argument("--pairs", default="mobilenetv3,bird")
    parser.add_argument("--note", default="", help="a sentence on the machine's load, for the report")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--from-json", help="write the section from a results.json of an earlier run (no training)")
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        meta = saved.pop(
            "meta", {"budget": args.budget, "clock": args.clock, "threads": args.threads, "load": args.note}
        )
        results = {tuple(key.split("/")): sides for key, sides in saved.items()}
        text = report(results, meta["budget"], meta["clock"], meta["threads"], meta["load"])
        print(text if args.no_write else f"wrote {write_section('fastai', text)}")
        return
    if not Path(args.fastai_python).exists():
        sys.exit(f"no fastai venv at {args.fastai_python}: run `make bench-fastai` (it creates .venv-fastai)")

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="bench_fastai-"))
    tasks = make_tasks(root)
    load = f"Load average before the run: {os.getloadavg()[0]:.1f}. {args.note}".strip()
    results = {}
    unit = "CPU s" if args.clock == "cpu" else "s"
    for task in args.tasks.split(","):
        folder, arrays, _ = tasks[task]
        for pair in args.pairs.split(","):
            zoo_name, fastai_arch = PAIRS[pair]
            ours = run_cnnzoo(zoo_name, arrays, args.budget, root / "runs" / f"{task}-{pair}", args.clock)
            ours["net"] = zoo_name
            theirs = run_fastai(args.fastai_python, folder, fastai_arch, args.budget, args.threads, args.clock)
            theirs["net"] = fastai_arch
            results[(task, pair)] = [ours, theirs]
            for r in (ours, theirs):
                reached = time_to(r["curve"], TARGETS[task], args.clock)
                print(
                    f"{task:7s} {r['side']:7s} {r['net']:28s} epochs {r['epochs']:3d}/{r['planned_epochs']:<3d} "
                    f"val@{args.budget:.0f}{unit} {fmt(at_budget(r['curve'], args.budget, args.clock)):>7s}  "
                    f"to {TARGETS[task]:.0%}: {'never' if reached is None else f'{reached:.0f} {unit}':>9s}  "
                    f"cpu {r['cpu_seconds']:5.1f} s wall {r['wall_seconds']:5.1f} s  test {fmt(r['test_accuracy'])}",
                    flush=True,
                )
    load = f"{load} Load average after: {os.getloadavg()[0]:.1f}."
    text = report(results, args.budget, args.clock, args.threads, load)
    meta = {"budget": args.budget, "clock": args.clock, "threads": args.threads, "load": load}
    (root / "results.json").write_text(
        json.dumps({"meta": meta, **{f"{t}/{p}": v for (t, p), v in results.items()}}, indent=1)
    )
    print(f"raw results: {root / 'results.json'}")
    if not args.no_write:
        print(f"wrote {write_section('fastai', text)}")


if __name__ == "__main__":
    main()
