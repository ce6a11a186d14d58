"""Translation invariance, measured: train on shapes in one half of the image, test on the other half.

The primer's claim: a convolution learns a local pattern once and finds it
anywhere, while a dense layer learns a weight per pixel and knows only the
positions it saw. `translation_experiment` draws shapes (circle, square,
triangle, cross) with Pillow on a cluttered canvas, always in the left half
for training, and scores three models on new images in the left half and in
the right half:

- `dense`: Flatten + Dense, no convolution;
- `cnn_flatten`: the zoo CNN (`bird_classifier`'s conv + max-pool blocks) whose
  head flattens the last feature map: its dense weights are tied to positions
  again;
- `cnn_global_pool`: the same CNN with a global pooling head: the class
  depends on which features were found, not where.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnzoo.errors import ConfigError
from cnnzoo.utils.checks import check_int

__all__ = ["SHAPES", "MODELS", "TranslationResult", "draw_shapes", "translation_experiment", "plot_translation"]

SHAPES = ("circle", "square", "triangle", "cross")
MODELS = ("dense", "cnn_flatten", "cnn_global_pool")
LABELS = {
    "dense": "dense (Flatten + Dense)",
    "cnn_flatten": "CNN, flatten head",
    "cnn_global_pool": "CNN, global pooling head",
}


@dataclass(frozen=True)
class TranslationResult:
    """What `translation_experiment` measured.

    Attributes:
        accuracy: `{model: {"trained_half": float, "other_half": float}}` for
            the models in `MODELS` order: accuracy on new images whose shape
            lies in the half seen in training, and in the other half.
        seed: int.
        size: int, the canvas side in pixels.
        num_train: int, training images (all in the trained half).
        num_test: int, test images per half.
        epochs: int.
        seconds: float, wall time of the whole experiment.
        plot: `Path` of the bar chart, or None.
        params: `{model: parameter count}`.
        pooling: the global pooling of `cnn_global_pool` (`"max"` or `"avg"`).
    """

    accuracy: dict
    seed: int
    size: int
    num_train: int
    num_test: int
    epochs: int
    seconds: float
    plot: object = None
    params: dict = field(default_factory=dict)
    pooling: str = "max"

    def markdown(self):
        """The accuracies as a markdown table (one row per model)."""
        rows = ["| model | parameters | trained half | other half |", "|---|---:|---:|---:|"]
        for name, acc in self.accuracy.items():
            rows.append(
                f"| {LABELS.get(name, name)} | {self.params.get(name, 0):,} | "
                f"{acc['trained_half']:.1%} | {acc['other_half']:.1%} |"
            )
        return "\n".join(rows)


def draw_shapes(n, size=32, half="left", seed=0, clutter=8):
    """Images of shapes on a cluttered canvas, each shape inside one half of it.

    Args:
        n: int, how many images.
        size: int, the canvas side in pixels (at least 24).
        half: `"left"` or `"right"`: the half of the canvas each shape lies in.
        seed: int.
        clutter: int, random line segments and dots drawn over the whole
            canvas before the shape.

    Returns:
        `(x, y)`: uint8 images `[n, size, size, 1]` and int labels `[n]`
        indexing `SHAPES`, balanced.

    Example:

    >>> x, y = draw_shapes(8, size=32, half="right")
    >>> x.shape, [SHAPES[i] for i in y[:4]]
    ((8, 32, 32, 1), ['circle', 'square', 'triangle', 'cross'])
    """
    from PIL import Image, ImageDraw

    n = check_int(n, "n")
    size = check_int(size, "size", lo=24)
    if half not in ("left", "right"):
        raise ConfigError(f"`half` must be 'left' or 'right'. Received: half={half!r}.")
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(SHAPES)
    x = np.empty((n, size, size, 1), np.uint8)
    w = size // 2
    for i in range(n):
        img = Image.new("L", (size, size), int(rng.integers(0, 40)))
        draw = ImageDraw.Draw(img)
        for _ in range(clutter):  # clutter everywhere, in both halves
            x0, y0 = rng.uniform(0, size, 2)
            angle, length = rng.uniform(0, np.pi), rng.uniform(2, size / 6)
            draw.line(
                [(x0, y0), (x0 + length * np.cos(angle), y0 + length * np.sin(angle))],
                fill=int(rng.integers(60, 170)),
                width=1,
            )
        s = rng.uniform(0.55, 0.8) * w  # shape side
        cx = rng.uniform(s / 2 + 1, w - s / 2 - 1) + (w if half == "right" else 0)
        cy = rng.uniform(s / 2 + 1, size - s / 2 - 1)
        _shape(draw, SHAPES[y[i]], cx, cy, s, int(rng.integers(190, 256)))
        x[i, ..., 0] = np.asarray(img)
    noise = rng.normal(0, 10, x.shape)
    return np.clip(x + noise, 0, 255).astype(np.uint8), y.astype(np.int64)


def _shape(draw, kind, cx, cy, s, ink):
    r = s / 2
    box = [cx - r, cy - r, cx + r, cy + r]
    if kind == "circle":
        draw.ellipse(box, outline=ink, width=2)
    elif kind == "square":
        draw.rectangle(box, outline=ink, width=2)
    elif kind == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], outline=ink, width=2)
    else:
        draw.line([(cx - r, cy), (cx + r, cy)], fill=ink, width=2)
        draw.line([(cx, cy - r), (cx, cy + r)], fill=ink, width=2)


def _models(size, pooling):
    import keras

    from cnnzoo.zoo.builders import compile_model, get

    n = len(SHAPES)
    blocks = [{"filters": 16}, {"filters": 32}, {"filters": 32}]
    common = dict(
        num_classes=n,
        input_shape=(size, size, 1),
        blocks=blocks,
        dense=[64],
        dropout=0.0,
        class_names=list(SHAPES),
        compile=False,
    )
    dense = keras.Sequential(
        [
            keras.Input((size, size, 1)),
            keras.layers.Rescaling(1 / 255.0),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(n, activation="softmax"),
        ],
        name="dense",
    )
    models = {
        "dense": dense,
        "cnn_flatten": get("bird_classifier", pooling="flatten", **common),
        "cnn_global_pool": get("bird_classifier", pooling=pooling, **common),
    }
    for model in models.values():
        compile_model(model, learning_rate=2e-3)
    return models


def translation_experiment(
    seed=0, out=None, *, size=32, num_train=2000, num_test=400, epochs=8, pooling="max", batch_size=64
):
    """Trains three models on shapes in the left half of the image and tests them on both halves.

    A dense network and a CNN with a flatten head learn weights per position:
    shapes in the half they never saw are close to chance for them. The same
    CNN with a global pooling head recognises a shape wherever it lies: its
    convolutions detect the same local patterns everywhere, and the pooling
    forgets where (translation invariance).

    Args:
        seed: int; data, weights and shuffling follow it (the caller's random
            state is restored afterwards).
        out: optional path of the bar chart PNG (written atomically).
        size: int, the canvas side in pixels.
        num_train: int, training images (shapes in the left half).
        num_test: int, test images per half.
        epochs: int.
        pooling: `"max"` or `"avg"`: the global pooling of the third model.
        batch_size: int.

    Returns:
        A `TranslationResult`.

    Example:

    >>> r = cnnzoo.explain.translation_experiment(seed=0, out="translation.png")
    >>> print(r.markdown())  # doctest: +SKIP
    """
    import time

    from cnnzoo.utils.seeding import seeded

    seed = check_int(seed, "seed", lo=0)
    num_train, num_test = check_int(num_train, "num_train"), check_int(num_test, "num_test")
    epochs, batch_size = check_int(epochs, "epochs"), check_int(batch_size, "batch_size")
    if pooling not in ("max", "avg"):
        raise ConfigError(f"`pooling` must be 'max' or 'avg' (the global pooling head). Received: pooling={pooling!r}.")
    start = time.perf_counter()
    x, y = draw_shapes(num_train, size, "left", seed=seed)
    tests = {
        "trained_half": draw_shapes(num_test, size, "left", seed=seed + 10_000),
        "other_half": draw_shapes(num_test, size, "right", seed=seed + 20_000),
    }
    accuracy, params = {}, {}
    with seeded(seed):
        models = _models(size, pooling)
        for name, model in models.items():
            model.fit(x.astype(np.float32), y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True)
            both = np.concatenate([tx for tx, _ in tests.values()]).astype(np.float32)  # one predict call
            right = np.argmax(model.predict(both, verbose=0, batch_size=256), axis=1) == np.concatenate(
                [ty for _, ty in tests.values()]
            )
            accuracy[name] = {
                half: float(right[k * num_test : (k + 1) * num_test].mean()) for k, half in enumerate(tests)
            }
            params[name] = int(model.count_params())
    result = TranslationResult(
        accuracy, seed, size, num_train, num_test, epochs, time.perf_counter() - start, None, params, pooling
    )
    if out is not None:
        result = TranslationResult(**{**result.__dict__, "plot": plot_translation(result, out)})
    return result


def plot_translation(result, out):
    """A bar chart of a `TranslationResult` (or several: the mean, with each seed as a dot); returns the Path."""
    from cnnzoo.utils.plotting import figure, save_png

    results = list(result) if isinstance(result, (list, tuple)) else [result]
    names = list(results[0].accuracy)
    fig = figure((6.4, 3.6))
    ax = fig.subplots()
    width = 0.38
    for k, (half, colour) in enumerate((("trained_half", "#4878cf"), ("other_half", "#d65f5f"))):
        values = np.array([[r.accuracy[m][half] for m in names] for r in results])
        pos = np.arange(len(names)) + (k - 0.5) * width
        ax.bar(
            pos,
            values.mean(axis=0),
            width,
            color=colour,
            label="trained half (left)" if k == 0 else "other half (right, never seen)",
        )
        if len(results) > 1:
            for row in values:
                ax.plot(pos, row, "k.", ms=4)
        for p, v, top in zip(pos, values.mean(axis=0), values.max(axis=0)):
            ax.text(p, top + 0.03, f"{v:.0%}", ha="center", fontsize=8)
    ax.axhline(1 / len(SHAPES), color="grey", ls=":", lw=1, label="chance")
    ax.set_xticks(range(len(names)), [LABELS.get(m, m) for m in names], fontsize=8)
    ax.set_ylim(0, 1.3)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("test accuracy")
    seeds = ", ".join(str(r.seed) for r in results)
    ax.set_title(
        f"Trained on shapes in the left half only ({results[0].size}x{results[0].size}, "
        f"seed{'s' if len(results) > 1 else ''} {seeds})",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper center", ncol=3, frameon=False)
    return save_png(fig, Path(out))
