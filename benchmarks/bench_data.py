"""Reading a JPEG folder: `cnnzoo.data.image_folder` vs `keras.utils.image_dataset_from_directory`.

Writes real JPEGs with Pillow into a temporary folder (deleted afterwards), in two sets: small
pictures near the model's size (3,000 at 100-200 px, read at 128x128: decoding is cheap, so any
per-image overhead shows) and photos larger than it (1,000 at 320-480 px, read at 128x128: the
JPEG is decoded at a reduced scale, as Pillow's draft mode). Each round times, in one process and
interleaved, Keras' reader, cnnzoo's, and (where git can show it) cnnzoo's previous reader
(`git show HEAD~N:cnnzoo/data/folders.py`, which checked every file with Pillow, then decoded with
Pillow): the first epoch (building the dataset, then one pass) and a later epoch (one more pass:
cnnzoo reads its memory cache, Keras decodes again). Medians over the rounds, wall time and
process CPU time (all threads); the CPU time is the steadier measure on a busy machine.

    python benchmarks/bench_data.py [--rounds 5] [--old-ref HEAD]
"""

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SETS = {"small": (3000, (100, 200)), "photos": (1000, (320, 480))}
CLASSES, SIZE, BATCH = 5, 128, 32


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
            draw.ellipse([x0, y0, x0 + int(rng.integers(10, 60)), y0 + int(rng.integers(10, 60))],
                         fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
        image.save(root / f"class{c}" / f"{i:05d}.jpg", quality=90)


def old_reader(ref):
    """cnnzoo's reader at git `ref`, loaded as a module, or None (no git, or the file is the same)."""
    try:
        source = subprocess.run(["git", "show", f"{ref}:cnnzoo/data/folders.py"], cwd=REPO, capture_output=True,
                                text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    if "read_header" in source:  # already the new reader
        return None
    path = Path(tempfile.mkdtemp()) / "old_folders.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("cnnzoo_old_folders", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.image_folder


def epochs(make):
    """(first epoch, later epoch), each (wall s, CPU s): building the dataset and a pass, then a pass."""
    out = []
    wall, cpu = time.perf_counter(), time.process_time()
    ds = make()
    for _ in range(2):
        for _ in ds:
            pass
        out.append((time.perf_counter() - wall, time.process_time() - cpu))
        wall, cpu = time.perf_counter(), time.process_time()
    return out


def measure(root, rounds, old):
    import logging
    import warnings

    import keras

    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # the old reader's source is a temporary file

    from cnnzoo.data import image_folder

    readers = {
        "keras": lambda: keras.utils.image_dataset_from_directory(root, image_size=(SIZE, SIZE), batch_size=BATCH,
                                                                  verbose=False),
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
                times[name].append(epochs(make))
    return {name: [[statistics.median(r[e][k] for r in runs) for k in (0, 1)] for e in (0, 1)]
            for name, runs in times.items()}


def table(results, counts):
    rows = ["| images | reader | first epoch: wall / CPU (s) | later epoch: wall / CPU (s) "
            "| first epoch vs Keras: wall / CPU | later epoch vs Keras: wall / CPU |",
            "|---|---|---|---|---|---|"]
    for name, result in results.items():
        keras_first, keras_later = result["keras"]
        for reader, (first, later) in result.items():
            rows.append(f"| {counts[name]} | {reader} | {first[0]:.2f} / {first[1]:.2f} | {later[0]:.2f} / "
                        f"{later[1]:.2f} | {first[0] / keras_first[0]:.2f}x / {first[1] / keras_first[1]:.2f}x | "
                        f"{later[0] / keras_later[0]:.2f}x / {later[1] / keras_later[1]:.2f}x |")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
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
    markdown = f"""## Reading image folders

`benchmarks/bench_data.py`: one folder of real JPEGs (written by Pillow, {CLASSES} classes) read at
{SIZE}x{SIZE}, batch {BATCH}, by `keras.utils.image_dataset_from_directory`, by `cnnzoo.data.image_folder`
(`.train`, no validation split) and by cnnzoo's previous reader (`cnnzoo_old`: every file checked, then
decoded, with Pillow), interleaved over {args.rounds} rounds in one process (medians). First epoch: building
the dataset and one pass; later epoch: one more pass (cnnzoo reads its in-memory cache, Keras decodes again).
CPU is the process's CPU time over all threads. {machine()}.

{table(results, counts)}

cnnzoo now reads the headers of plain JPEGs and PNGs (two small reads per file, no decoding), then decodes
them with TensorFlow in parallel inside tf.data (JPEGs at Pillow's draft scale), resizes and caches them;
other formats and variants go through Pillow as before, and a file that fails to decode is reported in
`skipped` and a log line while the epoch goes on (`cnnzoo.data.decoding`). {args.note}
"""
    print(write_section("data", markdown))


if __name__ == "__main__":
    main()
