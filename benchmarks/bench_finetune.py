"""Frozen-backbone stage: head trained on cached features / head trained through the frozen backbone.

The same `finetune` call (stage `head:E`, same seed, same data, same epochs)
with `cache_features=True` and with `cache_features=False`, side by side in
one run, alternating, best of two each. Data: the UCI digits written as an
image folder by `cnnzoo.data.digits_folder` (1,437 training images), read at
the input size of each row with `cnnzoo.data.load_image` and passed as
`(x, y)` arrays (20% validation), so that both paths see the same batches in
the same order. Stage time includes the feature extraction pass, checkpoints
and validation; it excludes building the model and reading the images. Also
shown: final validation accuracy of both and the largest difference between
their predicted probabilities (the cache must give the same model).

Run: `.venv/bin/python benchmarks/bench_finetune.py` (writes its section of docs/benchmarks.md).
"""

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402

EPOCHS = 5


def run_once(arrays, size, cache, out):
    import keras

    import cnnzoo
    from cnnzoo.finetuning import stages

    keras.utils.set_random_seed(0)
    model = cnnzoo.get("bird_classifier", num_classes=10, input_shape=(size, size, 3), compile=False)
    result = cnnzoo.finetune(
        model,
        arrays,
        stages=[stages.Stage(0, EPOCHS, 1e-3)],
        cache_features=cache,
        out=out,
        resume=False,
        verbose=0,
        plots=False,
    )
    assert result.stages[0].feature_cache is cache
    return result


def main():
    import numpy as np

    import cnnzoo
    from cnnzoo import data

    root = Path(tempfile.mkdtemp(prefix="bench_finetune-"))
    train_dir, _ = data.digits_folder(root / "digits")
    files = sorted(train_dir.rglob("*.png"))
    labels = np.array([int(f.parent.name) for f in files])
    rows, ratios = [], []
    for size in (32, 96):
        arrays = (np.stack([data.load_image(f, (size, size), 3) for f in files]), labels)
        seconds = {True: [], False: []}
        results = {}
        for _attempt in range(2):
            for cache in (False, True):
                results[cache] = run_once(arrays, size, cache, root / f"run-{size}-{cache}")
                seconds[cache].append(results[cache].stages[0].seconds)
        through, cached = min(seconds[False]), min(seconds[True])
        x = arrays[0][:500].astype("float32")
        diff = np.abs(
            cnnzoo.deploy.inference.predictor(results[True].model)(x)
            - cnnzoo.deploy.inference.predictor(results[False].model)(x)
        ).max()
        ratio = cached / through
        ratios.append((size, ratio))
        rows.append(
            f"| {size}x{size}x3 | {through:.2f} s | {cached:.2f} s | **{ratio:.3f}** "
            f"({1 / ratio:.1f}x faster) | "
            f"{results[False].val_accuracy:.2%} / {results[True].val_accuracy:.2%} | {diff:.1e} |"
        )
    text = f"""
## Fine-tuning: feature cache in frozen stages

Machine: {machine()}, CPU only. Script: `benchmarks/bench_finetune.py`. `bird_classifier` (5 conv
blocks with BatchNorm, head dense 256 + dropout 0.5, 10 classes), stage `head:{EPOCHS}:1e-3` (backbone
frozen, BatchNorm in inference mode), UCI digits from the image folder as arrays ({len(files)} images,
20% for validation), batch 32. Best of two alternating runs each. The backbone is randomly
initialised: the accuracies only compare the two paths (5 epochs of a head on random features).

| input | through the frozen backbone | cached features | ratio cached / through | val. accuracy \
through / cached | max prob. difference |
| --- | --- | --- | --- | --- | --- |
{chr(10).join(rows)}

The cached stage runs the frozen part once over the training and validation images, then trains
the head alone; training through the frozen network repeats that forward pass every epoch. Same
seed and same batches: both give the same model (the last column is float32 round-off), so the cache
is on by default (`cache_features="auto"`) where everything below the head is frozen and the data
is not augmented. (An `ImageFolder` shuffles in its own pipeline, which the cached path cannot
replay; there the two differ only as two runs with different shuffles do.) The saving grows with
the input size and the epoch count.
"""
    path = write_section("finetune", text)
    for size, ratio in ratios:
        print(f"{size}x{size}: cached / through = {ratio:.3f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
