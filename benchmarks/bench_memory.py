"""Peak memory of one epoch over a 20,000-image folder: the in-memory cache vs a small cache budget.

Writes 20,000 small real JPEGs with Pillow into a temporary folder (deleted afterwards), then
reads it with `cnnzoo.data.image_folder` at a size whose decoded images (~600 MB) exceed a
256 MB budget. Each setting runs one epoch in its own subprocess, which reports its peak RSS
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`): unlimited budget (memory cache), the small budget
without a cache directory (decoded every epoch), and the small budget with one (cache files).
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402

IMAGES, CLASSES, SOURCE = 20_000, 10, (48, 48)
SIZE = (100, 100)  # decoded: 20,000 x 100 x 100 x 3 bytes = 600 MB
BUDGET = 256 * 10**6

_CHILD = (
    """
import json, resource, sys, time
import cnnzoo.data
folder, budget, cache_dir, epochs = sys.argv[1], sys.argv[2], sys.argv[3] or None, int(sys.argv[4])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
data = cnnzoo.data.image_folder(folder, image_size=(%d, %d), batch_size=64, validation_split=0.0,
                                cache_budget=budget, cache_dir=cache_dir)
start, n = time.perf_counter(), 0
for images, labels in data.train.take(-1 if epochs else 1):
    n += int(labels.shape[0]) if epochs else 0
print(json.dumps({"mode": data.cache_mode, "reason": data.cache_reason, "images": n,
                  "seconds": time.perf_counter() - start, "baseline_kb": base,
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""
    % SIZE
)


def write_folder(root):
    from PIL import Image

    rng = np.random.default_rng(0)
    for k in range(CLASSES):
        (root / f"class_{k}").mkdir(parents=True)
    for i in range(IMAGES):
        base = rng.integers(0, 256, size=3)
        pixels = np.clip(base + rng.normal(0, 30, size=(*SOURCE, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"class_{i % CLASSES}" / f"{i}.jpg", quality=85)


def run(folder, budget, cache_dir="", epochs=1):
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(folder), budget, str(cache_dir), str(epochs)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    with tempfile.TemporaryDirectory(prefix="cnnzoo_bench_memory_") as tmp:
        folder = Path(tmp) / "images"
        t = time.perf_counter()
        write_folder(folder)
        written = time.perf_counter() - t
        settings = [
            ("unlimited budget", "unlimited", ""),
            ("256 MB budget, no cache_dir", str(BUDGET), ""),
            ("256 MB budget, cache_dir", str(BUDGET), Path(tmp) / "cache"),
        ]
        rows = [(name, run(folder, budget, cache_dir)) for name, budget, cache_dir in settings]
        floor = run(folder, str(BUDGET), "", epochs=0)["peak_kb"]  # TensorFlow + the pipeline, one batch read
    decoded = IMAGES * SIZE[0] * SIZE[1] * 3
    ref = rows[0][1]["peak_kb"]
    lines = [
        f"{IMAGES:,} JPEGs ({SOURCE[0]}x{SOURCE[1]}, written in {written:.0f} s) read at "
        f"{SIZE[0]}x{SIZE[1]}x3: {decoded / 1e6:.0f} MB decoded. One epoch per setting, each in its own "
        f"process; peak RSS is `ru_maxrss` of that process (Python + TensorFlow + the pipeline). "
        f"Machine: {machine()}.",
        "",
        "| setting | cache mode | images | epoch (s) | peak RSS (MB) | above floor (MB) | vs memory cache |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['mode']} | {r['images']:,} | {r['seconds']:.1f} | {r['peak_kb'] / 1024:.0f} | "
            f"{(r['peak_kb'] - floor) / 1024:.0f} | {r['peak_kb'] / ref:.2f}x |"
        )
        print(
            f"{name:30s} mode={r['mode']:6s} peak={r['peak_kb'] / 1024:7.0f} MB  ratio={r['peak_kb'] / ref:.2f}  "
            f"epoch={r['seconds']:.1f}s  ({r['reason']})",
            flush=True,
        )
    lines += [
        "",
        f"Floor: the same process reading one batch only ({floor / 1024:.0f} MB: Python, TensorFlow, the "
        f"pipeline). The memory cache holds all {decoded / 1e6:.0f} MB of decoded images; with the 256 MB "
        f"budget cnnzoo chooses files or streaming, shuffles file names instead of decoded images, and the "
        f"epoch stays within the budget above the floor.",
    ]
    print(f"floor {floor / 1024:.0f} MB")
    path = write_section("memory", "## Bounded memory: 20,000-image folder\n\n" + "\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
