"""Reading a JPEG folder: `cnnzoo.data.image_folder` vs `keras.utils.image_dataset_from_directory`.

Writes real JPEGs with Pillow into a temporary folder (deleted afterwards), in two sets: small
pictures near the model's size (3,000 at 100-200 px, read at 128x128: decoding is cheap, so any
per-image overhead shows) and photos larger than it (1,000 at 320-480 px, read at 128x128: the
JPEG is decoded at a reduced scale, as Pillow's draft mode). Each round times, in one process and
interleaved, Keras' reader, cnnzoo's, and (where git has a different one) cnnzoo's reader at
`--old-ref` (`git show REF:cnnzoo/data/folders.py` and the reader modules beside it, `READER`): the first epoch (building the
dataset, then one pass) and a later epoch (one more pass: cnnzoo reads its memory cache, Keras
decodes again). Medians over the rounds, wall time and process CPU time (all threads); the CPU time
is the steadier measure on a busy machine. The first epoch's minor page faults are counted too:
memory the process touches for the first time, which is what an in-memory cache of decoded images
costs beyond decoding.

    python benchmarks/bench_data.py [--rounds 7] [--old-ref HEAD]
"""

import argparse
import gc
import importlib.util
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SETS = {"small": (3000, (100, 200)), "photos": (1000, (320, 480))}
CLASSES, SIZE, BATCH = 5, 128, 32
# cnnzoo's folder reader, each module after those it imports (`folder_files` and `folder_dataset` were split
# out of `folders`; an older ref has none: it is read without them)
READER = ("decoding", "folder_files", "folder_dataset", "folders")


def write_jpegs(root, count, sides, seed=0):
    """`count` JPEGs in `CLASSES` folders: gradients, noise and a few shapes, like small photos."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    for i in range(count):
        c = i % CLASSES
        w, h = (int(v) for v in rng.integers(sides[0], sides[1] + 1, 2))
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        base = np.stack([x / w * 255, y / h * 255, np.full_like(x, 40 * c)], axis=-1)
        image = Image.fromarray(np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
            draw.ellipse(
                [x0, y0, x0 + int(rng.integers(10, 60)), y0 + int(rng.integers(10, 60))],
                fill=tuple(int(v) for v in rng.integers(0, 256, 3)),
            )
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
        image.save(root / f"class{c}" / f"{i:05d}.jpg", quality=90)


def old_reader(ref):
    """cnnzoo's reader at git `ref`, loaded as modules, or None (no git, or the same as the working tree)."""

    def show(path):
        try:
            return subprocess.run(
                ["git", "show", f"{ref}:{path}"], cwd=REPO, capture_output=True, text=True, check=True
            ).stdout
        except (OSError, subprocess.CalledProcessError):
            return None

    sources = {name: show(f"cnnzoo/data/{name}.py") for name in READER}
    if sources["folders"] is None or all(
        source is None or source == (REPO / "cnnzoo" / "data" / f"{name}.py").read_text()
        for name, source in sources.items()
    ):
        return None
    folder = Path(tempfile.mkdtemp())

    def load(name, source):
        path = folder / f"{name}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    loaded = []  # the reader's own modules, not today's: each imports the old ones loaded before it
    for name in READER:
        source = sources[name]
        if source is None:
            continue
        for earlier in loaded:
            source = source.replace(f"from cnnzoo.data.{earlier} import", f"from cnnzoo_old_{earlier} import")
        module = load(f"cnnzoo_old_{name}", source)
        loaded.append(name)
    return module.image_folder


def revision(ref):
    """`ref` as a short commit hash (what it names now may change), or `ref` itself without git."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", ref], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ref


def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def epochs(make):
    """(first epoch, later epoch), each (wall s, CPU s, minor page faults): building the dataset and a pass,
    then a pass."""
    out = []
    wall, cpu, touched = time.perf_counter(), time.process_time(), faults()
    ds = make()
    for _ in range(2):
        for _ in ds:
            pass
        out.append((time.perf_counter() - wall, time.process_time() - cpu, faults() - touched))
        wall, cpu, touched = time.perf_counter(), time.process_time(), faults()
    return out


def measure(root, rounds, old):
    import logging
    import warnings

    import keras

    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # the old reader's source is a temporary file

    from cnnzoo.data import image_folder

    readers = {
        "keras": lambda: keras.utils.image_dataset_from_directory(
            root, image_size=(SIZE, SIZE), batch_size=BATCH, verbose=False
        ),
        "cnnzoo": lambda: image_folder(root, image_size=SIZE, batch_size=BATCH, validation_split=0).train,
    }
    if old is not None:
        readers["cnnzoo_old"] = lambda: old(root, image_size=SIZE, batch_size=BATCH, validation_split=0).train
    for make in readers.values():  # warm-up: TensorFlow start-up and the page cache
        epochs(make)
    times = {name: [] for name in readers}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(rounds):
            for name, make in readers.items():
                gc.collect()  # the previous reader's datasets and cache go now, not inside the next timing
                times[name].append(epochs(make))
    return {
        name: [[statistics.median(r[e][k] for r in runs) for k in (0, 1, 2)] for e in (0, 1)]
        for name, runs in times.items()
    }


def table(results, counts):
    rows = [
        "| images | reader | first epoch: wall / CPU (s) | later epoch: wall / CPU (s) "
        "| first epoch vs Keras: wall / CPU | later epoch vs Keras: wall / CPU | first epoch: page faults |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        keras_first, keras_later = result["keras"]
        for reader, (first, later) in result.items():
            rows.append(
                f"| {counts[name]} | {reader} | {first[0]:.2f} / {first[1]:.2f} | {later[0]:.2f} / "
                f"{later[1]:.2f} | {first[0] / keras_first[0]:.2f}x / {first[1] / keras_first[1]:.2f}x | "
                f"{later[0] / keras_later[0]:.2f}x / {later[1] / keras_later[1]:.2f}x | {first[2]:,.0f} |"
            )
    return "\n".join(rows)


def goal(results, counts, limit=1.2):
    """One sentence per set: is cnnzoo's first epoch within `limit` times Keras', in wall and CPU time?"""
    lines = []
    for name, result in results.items():
        ratios = [result["cnnzoo"][0][k] / result["keras"][0][k] for k in (0, 1)]
        met = " and ".join(what for what, r in zip(("wall", "CPU"), ratios) if r <= limit) or "neither"
        lines.append(f"{counts[name]}: {ratios[0]:.2f}x wall, {ratios[1]:.2f}x CPU (within {limit}x: {met})")
    return "; ".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--old-ref", default="HEAD", help="git revision holding the previous reader")
    parser.add_argument("--note", default="", help="a line added under the table (e.g. how busy the machine was)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    old = old_reader(args.old_ref)
    results, counts = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (count, sides) in SETS.items():
            root = Path(tmp) / name
            write_jpegs(root, count, sides)
            counts[name] = f"{count:,} JPEGs, {sides[0]}-{sides[1]} px"
            results[name] = measure(root, args.rounds, old)
            print(name, results[name], flush=True)
    print(write_section("data", report(results, counts, args.rounds, old and revision(args.old_ref), args.note)))


def report(results, counts, rounds, old_revision=None, note=""):
    """The markdown section: what was measured, the table, and the goal."""
    old_line = f" and by cnnzoo's reader at git revision `{old_revision}` (`cnnzoo_old`)," if old_revision else ""
    intro = textwrap.fill(
        f"`benchmarks/bench_data.py`: one folder of real JPEGs (written by Pillow, {CLASSES} classes) read at "
        f"{SIZE}x{SIZE}, batch {BATCH}, by `keras.utils.image_dataset_from_directory`, by "
        f"`cnnzoo.data.image_folder` (`.train`, no validation split){old_line} interleaved over {rounds} rounds "
        f"in one process (medians; each reader's garbage is collected before the next one is timed). First epoch: "
        f"building the dataset and one pass; later epoch: one more pass (cnnzoo reads its in-memory cache, Keras "
        f"decodes again). CPU is the process's CPU time over all threads; page faults are the minor page faults of "
        f"the first epoch (memory touched for the first time). {machine()}.",
        110,
    )
    outro = textwrap.fill(
        "cnnzoo reads the headers of plain JPEGs and PNGs (one read per file up to 16 KiB, two beyond, no "
        "decoding), then decodes them with TensorFlow in parallel inside tf.data (JPEGs at Pillow's draft scale), "
        "resizes, rounds to uint8 and caches them; other formats and variants go through Pillow, and a file that "
        "fails to decode is reported in `skipped` and a log line while the epoch goes on (`cnnzoo.data.decoding`; "
        f"shuffled training data skips the per-image gap check). Goal, a first epoch within 1.2x of Keras': "
        f"{goal(results, counts)}. What a first epoch costs beyond Keras' is mostly the in-memory cache that makes "
        "the later epochs fast: its uint8 images are memory the process touches for the first time (the page "
        f"faults) and are rounded from the resized floats. {note}".rstrip(),
        110,
    )
    return f"## Reading image folders\n\n{intro}\n\n{table(results, counts)}\n\n{outro}\n"


if __name__ == "__main__":
    main()
