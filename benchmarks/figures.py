"""The figures and numbers of docs/concepts.md, from real runs (issue 9): `make figures`.

Each step below makes the picture for one claim of the primer and the numbers behind it; the
PNGs go to docs/figures/ and the numbers into docs/concepts.md between
`<!-- figures:NAME:start -->` and `<!-- figures:NAME:end -->` markers (the prose around them is
written by hand). Under a minute on 2 CPU cores.

1. `triangle`: two box functions convolved give a triangle; convolution flips, correlation not.
2. `sobel`: a Sobel kernel on a real photo (scikit-learn's china.jpg), equal to a Keras Conv2D.
3. `digits`: a zoo CNN trained on the UCI digits: first-layer filters, deeper filters by
   activation maximisation (block 2), feature maps block by block, Grad-CAM on right and wrong answers.
4. `receptive`: VGG-16's receptive fields, block by block (`cnnzoo.explain.receptive_fields`).
5. `translation`: `cnnzoo.explain.translation_experiment` over three seeds, and Grad-CAM on the
   shapes (the README's picture).
6. `pyramid`: the feature maps of one digit at each level of `cnnzoo.features_model` (docs/zoo.md).

Run: `.venv/bin/python benchmarks/figures.py [STEP ...]` (default: all of them).
"""

import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402

import cnnzoo  # noqa: E402
from cnnzoo import explain  # noqa: E402
from cnnzoo.utils.plotting import figure, save_png  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FIGURES = REPO / "docs" / "figures"
CONCEPTS = REPO / "docs" / "concepts.md"
DPI = 80


def write_numbers(name, markdown):
    """Replaces the `<!-- figures:name:start -->...<!-- figures:name:end -->` block of docs/concepts.md."""
    text = CONCEPTS.read_text()
    block = f"<!-- figures:{name}:start -->\n{markdown.strip()}\n<!-- figures:{name}:end -->"
    pattern = re.compile(rf"<!-- figures:{re.escape(name)}:start -->.*?<!-- figures:{re.escape(name)}:end -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    CONCEPTS.write_text(text)


def save(fig, name):
    return save_png(fig, FIGURES / name, dpi=DPI)


def photo(size=None):
    """scikit-learn's china.jpg (a real photo shipped with it), gray or RGB, optionally resized."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    image = Image.fromarray(load_sample_image("china.jpg"))
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR) if size else image)


# --------------------------------------------------------------------------- 1. triangle


def triangle():
    box = np.ones(5)
    tri = explain.convolve(box, box, mode="full")
    fig = figure((9, 2.4))
    axes = fig.subplots(1, 3)
    for ax, values, title in zip(axes, (box, box, tri), ("f: a box (5 ones)", "g: the same box", "f * g")):
        x = np.arange(len(values)) - (len(values) - 1) / 2
        ax.stem(x, values, basefmt=" ")
        ax.set_xlim(-6, 6)
        ax.set_ylim(0, max(values) + 0.8)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    save(fig, "triangle.png")
    _shrink(FIGURES / "triangle.png")
    impulse = np.array([0.0, 0.0, 1.0, 0.0, 0.0])
    w = np.array([1.0, 2.0, 3.0])
    conv, corr = explain.convolve(impulse, w), explain.correlate(impulse, w)
    same_as_numpy = np.array_equal(tri, np.convolve(box, box, mode="full"))
    write_numbers(
        "triangle",
        f"""
- `convolve(box, box, mode="full")` with a box of five ones: `{_fmt(tri)}`, a triangle
  (equal to `numpy.convolve`: {same_as_numpy}).
- The flip, on an impulse `{_fmt(impulse)}` and the kernel `{_fmt(w)}`: convolution gives
  `{_fmt(conv)}` (the kernel as it is), cross-correlation gives `{_fmt(corr)}` (the kernel reversed).
""",
    )


def _fmt(values):
    return "[" + ", ".join(f"{v:g}" for v in np.asarray(values).ravel()) + "]"


# --------------------------------------------------------------------------- 2. sobel


def sobel():
    import keras

    rgb = photo((320, 214))
    gray = rgb.astype(np.float64) @ [0.299, 0.587, 0.114]
    gx, gy = explain.correlate(gray, "sobel_x"), explain.correlate(gray, "sobel_y")
    magnitude = np.hypot(gx, gy)
    conv = keras.layers.Conv2D(1, 3, padding="same", use_bias=False)
    conv.build((None, *gray.shape, 1))
    conv.set_weights([explain.kernel("sobel_x")[:, :, None, None]])
    by_keras = np.asarray(conv(gray[None, ..., None].astype("float32")))[0, ..., 0]
    diff = float(np.abs(by_keras - gx).max())
    fig = figure((10, 2.3))
    axes = fig.subplots(1, 4)
    panels = (
        (rgb, "photo (sklearn china.jpg)", None),
        (gx, "Sobel x: vertical edges", "RdBu_r"),
        (gy, "Sobel y: horizontal edges", "RdBu_r"),
        (magnitude, "edge strength", "gray_r"),
    )
    for ax, (image, title, cmap) in zip(axes, panels):
        if cmap is None:
            ax.imshow(image)
        else:  # the 99th percentile saturates: a few very strong edges would leave the rest white
            limit = np.percentile(np.abs(image), 99)
            ax.imshow(image, cmap=cmap, vmin=-limit if cmap == "RdBu_r" else 0, vmax=limit)
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    save(fig, "sobel.png")
    _shrink(FIGURES / "sobel.png", colours=128)
    k = explain.kernel("sobel_x")
    rows = "\n".join("    " + " ".join(f"{v:+g}" for v in row) for row in k)
    write_numbers(
        "sobel",
        f"""
The Sobel x kernel (`cnnzoo.explain.kernels["sobel_x"]`):

```
{rows}
```

On the {gray.shape[1]}x{gray.shape[0]} gray photo, `cnnzoo.explain.correlate` and a `keras.layers.Conv2D`
holding the same kernel differ by at most {diff:.1e} (float32 rounding; pixel values 0-255).
Edges are sparse: {np.mean(magnitude > 0.25 * magnitude.max()):.1%} of the pixels have an edge strength above a
quarter of the strongest one; on flat areas the weights (-1, -2, -1 against +1, +2, +1) cancel.
""",
    )


# --------------------------------------------------------------------------- 3. digits


def digits(epochs=8):
    from cnnzoo.finetuning.explained import gradcam_examples

    size = 32
    data = cnnzoo.data.digits(image_size=(size, size))
    model = cnnzoo.get(
        "bird_classifier",
        num_classes=10,
        input_shape=(size, size, 1),
        compile=False,
        class_names=[str(i) for i in range(10)],
        blocks=[
            {"filters": 16, "batch_norm": True},
            {"filters": 32, "batch_norm": True},
            {"filters": 64, "batch_norm": True},
        ],
        dense=[64],
        dropout=0.3,
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = cnnzoo.finetune(
            model, data, stages=f"all:{epochs}:2e-3", out=Path(tmp) / "run", verbose=0, plots=False, seed=0
        )
    seconds = time.perf_counter() - start
    model = result.model
    probs = model.predict(data.x_test.astype("float32"), verbose=0)
    accuracy = float(np.mean(np.argmax(probs, axis=1) == data.y_test))
    explain.filters(model, out=FIGURES / "filters_block1.png")
    explain.filters(model, "block2_conv1", max_filters=8, out=FIGURES / "filters_block2.png", steps=60, step_size=2.0)
    _shrink(FIGURES / "filters_block1.png", FIGURES / "filters_block2.png")
    index = int(np.flatnonzero(data.y_test == 3)[0])
    layers = ["block1_conv1", "block1_pool", "block2_conv1", "block2_pool", "block3_conv1", "block3_pool"]
    maps = explain.feature_maps(model, data.x_test[index], layers=layers)
    _feature_map_figure(data.x_test[index], maps)
    gradcam_examples(cnnzoo.interpret(model, data), FIGURES / "gradcam_digits.png", count=8)  # its test images
    _shrink(FIGURES / "gradcam_digits.png", colours=128)
    wrong = int(np.sum(np.argmax(probs, axis=1) != data.y_test))
    rows = "\n".join(f"| `{name}` | {m.shape[0]}x{m.shape[1]} | {m.shape[2]} |" for name, m in maps.items())
    write_numbers(
        "digits",
        f"""
A zoo CNN (`bird_classifier`'s design: three conv + max-pool blocks of 16, 32 and 64 filters with
BatchNorm, dense 64, softmax) at 32x32x1, trained {epochs} epochs on the {len(data.y_train):,}
training images of `cnnzoo.data.digits` by `cnnzoo.finetune` in {seconds:.0f} s: {accuracy:.2%} on the
{len(data.y_test)} held-out images ({wrong} wrong).

| layer | feature map | channels |
|---|---|---:|
{rows}
""",
    )


def _shrink(*paths, colours=64):
    """Re-saves PNGs with a palette of `colours`: the grids and charts need no more, photos 128."""
    from PIL import Image

    for path in paths:
        with Image.open(path) as im:
            small = im.convert("RGB").quantize(colours)
        small.save(path, optimize=True)


def _feature_map_figure(image, maps, channels=8):
    fig = figure((1.25 * (channels + 1), 1.3 * len(maps)))
    axes = fig.subplots(len(maps), channels + 1, squeeze=False)
    for r, (name, m) in enumerate(maps.items()):
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.imshow(np.asarray(image)[..., 0], cmap="gray")
                ax.set_ylabel(f"{name}\n{m.shape[0]}x{m.shape[1]}", fontsize=7)
            elif c - 1 < m.shape[-1]:
                ax.imshow(m[..., c - 1], cmap="viridis", interpolation="nearest")
    fig.suptitle("Feature maps of one test digit, block by block (input at left; first 8 channels)", fontsize=9)
    save(fig, "feature_maps_digits.png")
    _shrink(FIGURES / "feature_maps_digits.png")


# --------------------------------------------------------------------------- 4. receptive fields


def receptive():
    from PIL import Image, ImageDraw

    fields = explain.receptive_fields("vgg16")
    names = [n for n in fields if n.startswith("block")]
    fig = figure((10, 3.6))
    ax, ax_img = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
    sizes = [fields[n].size for n in names]
    colours = ["#d65f5f" if n.endswith("pool") else "#4878cf" for n in names]
    ax.bar(range(len(names)), sizes, color=colours)
    ax.set_xticks(
        range(len(names)),
        [n.replace("block", "b").replace("_conv", " c").replace("_pool", " pool") for n in names],
        rotation=90,
        fontsize=7,
    )
    ax.axhline(224, color="grey", ls=":", lw=1)
    ax.text(0, 228, "input 224", fontsize=7, color="grey")
    ax.set_ylabel("receptive field (pixels)")
    ax.set_title("VGG-16: receptive field per layer (blue conv, red pool)", fontsize=9)
    canvas = Image.fromarray(photo((224, 224)))
    draw = ImageDraw.Draw(canvas)
    pools = [n for n in names if n.endswith("pool")]
    palette = ["#ffffff", "#ffe066", "#ff9f1c", "#e71d36", "#7b2cbf"]
    for n, colour in zip(pools, palette):
        s = fields[n].size
        lo = 112 - s / 2
        draw.rectangle([lo, lo, lo + s - 1, lo + s - 1], outline=colour, width=2)
    ax_img.imshow(np.asarray(canvas))
    ax_img.set_axis_off()
    ax_img.set_title("what one centre unit after each pool sees", fontsize=8)
    save(fig, "receptive_fields.png")
    _shrink(FIGURES / "receptive_fields.png", colours=128)
    rows = []
    for b in range(1, 6):
        convs = [n for n in names if n.startswith(f"block{b}_conv")]
        last, pool = fields[convs[-1]], fields[f"block{b}_pool"]
        rows.append(f"| block{b} | {len(convs)} | {fields[convs[0]].size} -> {last.size} | {pool.size} | {pool.jump} |")
    write_numbers(
        "receptive",
        """
| VGG-16 block | 3x3 convs | receptive field over its convs (px) | after its max-pool (px) | stride (px) |
|---|---:|---:|---:|---:|
"""
        + "\n".join(rows),
    )


# --------------------------------------------------------------------------- 5. translation


def translation(seeds=(0, 1, 2)):
    from cnnzoo.explain.translation import LABELS, plot_translation

    results = [explain.translation_experiment(seed=s) for s in seeds]
    plot_translation(results, FIGURES / "translation.png")
    _shrink(FIGURES / "translation.png")
    r0 = results[0]
    rows = []
    for name in r0.accuracy:
        trained = [r.accuracy[name]["trained_half"] for r in results]
        other = [r.accuracy[name]["other_half"] for r in results]
        rows.append(
            f"| {LABELS[name]} | {r0.params[name]:,} | {np.mean(trained):.1%} "
            f"({', '.join(f'{v:.0%}' for v in trained)}) | {np.mean(other):.1%} "
            f"({', '.join(f'{v:.0%}' for v in other)}) |"
        )
    seconds = np.mean([r.seconds for r in results])
    write_numbers(
        "translation",
        f"""
{r0.num_train:,} training images ({r0.size}x{r0.size}, shapes in the left half only), {r0.num_test} test
images per half, {r0.epochs} epochs, global {r0.pooling} pooling; mean over seeds {", ".join(map(str, seeds))}
(each seed in brackets); {seconds:.0f} s per seed for the three models. Chance is 25%.

| model | parameters | trained half (left) | other half (right, never seen) |
|---|---:|---:|---:|
"""
        + "\n".join(rows),
    )
    shapes_gradcam()


def shapes_gradcam(size=48, n=2400, epochs=10):
    """Grad-CAM of a global-pooling CNN trained on shapes anywhere on the canvas: the README's picture."""
    from cnnzoo.explain.translation import SHAPES, draw_shapes
    from cnnzoo.utils.seeding import seeded

    xl, yl = draw_shapes(n // 2, size, "left", seed=1)
    xr, yr = draw_shapes(n // 2, size, "right", seed=2)
    x, y = np.concatenate([xl, xr]).astype("float32"), np.concatenate([yl, yr])
    tl, tyl = draw_shapes(100, size, "left", seed=3)
    tr, tyr = draw_shapes(100, size, "right", seed=4)
    tx, ty = np.concatenate([tl, tr]), np.concatenate([tyl, tyr])
    with seeded(0):
        model = cnnzoo.get(
            "bird_classifier",
            num_classes=len(SHAPES),
            input_shape=(size, size, 1),
            class_names=list(SHAPES),
            pooling="avg",
            dense=[64],
            dropout=0.0,
            blocks=[{"filters": 16}, {"filters": 32}, {"filters": 64}],
        )
        model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    predicted = np.argmax(model.predict(tx.astype("float32"), verbose=0), axis=1)
    heats = explain.grad_cam(model, tx)
    peak_x = np.array([np.unravel_index(np.argmax(h), h.shape)[1] for h in heats])
    in_half = np.mean((peak_x < size // 2) == (np.arange(len(ty)) < 100))
    picks = [0, 1, 2, 3, 100, 101, 102, 103]
    fig = figure((1.6 * len(picks), 2.0))
    axes = fig.subplots(1, len(picks))
    for ax, i in zip(axes, picks):
        ax.imshow(explain.overlay(tx[i], heats[i], alpha=0.45), interpolation="nearest")
        ax.set_title(f"{SHAPES[predicted[i]]}", fontsize=8, color="#1a7f37" if predicted[i] == ty[i] else "#c62828")
        ax.set_axis_off()
    fig.suptitle("Grad-CAM: where a global-pooling zoo CNN looked (predicted class above each image)", fontsize=9)
    save(fig, "gradcam_shapes.png")
    _shrink(FIGURES / "gradcam_shapes.png", colours=128)
    write_numbers(
        "gradcam_shapes",
        f"""
A global-pooling zoo CNN trained {epochs} epochs on {n:,} {size}x{size} shape images (shapes anywhere):
{np.mean(predicted == ty):.1%} right on 200 new images, and for {in_half:.1%} of them the Grad-CAM
peak lies in the half of the image that holds the shape.
""",
    )


# --------------------------------------------------------------------------- 6. feature pyramid


def pyramid(size=64, epochs=4, channels=6):
    """docs/zoo.md: the feature maps `cnnzoo.get(..., features_only=True)` gives, level by level, for one digit."""
    data = cnnzoo.data.digits(image_size=(size, size))
    model = cnnzoo.get(
        "bird_classifier",
        num_classes=10,
        input_shape=(size, size, 1),
        compile=False,
        blocks=[{"filters": f, "batch_norm": True} for f in (16, 32, 32, 64, 64)],
        dense=[],
        pooling="avg",
    )
    with tempfile.TemporaryDirectory() as tmp:
        model = cnnzoo.finetune(
            model, data, stages=f"all:{epochs}:3e-3", out=Path(tmp) / "run", verbose=0, plots=False, seed=0
        ).model
    features = cnnzoo.features_model(model)  # every level: strides 2, 4, 8, 16, 32
    index = int(np.flatnonzero(data.y_test == 3)[0])
    image = data.x_test[index].astype("float32")
    maps = [np.asarray(m[0], np.float32) for m in features.predict(image[None], verbose=0)]
    fig = figure((1.3 * (channels + 1), 1.35 * len(maps)))
    axes = fig.subplots(len(maps), channels + 1, squeeze=False)
    for row, (level, m) in zip(axes, zip(features.feature_info, maps)):
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].imshow(image[..., 0], cmap="gray")
        row[0].set_ylabel(
            f"level {level.index}, stride {level.reduction}\n{m.shape[0]}x{m.shape[1]}x{m.shape[2]}\n{level.layer}",
            fontsize=7,
        )
        strongest = np.argsort(m.mean(axis=(0, 1)))[::-1][:channels]  # the most active channels, not blank ones
        for ax, c in zip(row[1:], strongest):
            ax.imshow(m[..., c], cmap="viridis", interpolation="nearest")
    fig.suptitle(
        f"The pyramid of one {size}x{size} test digit: cnnzoo.features_model (the {channels} most active channels)",
        fontsize=9,
    )
    save(fig, "feature_pyramid.png")
    _shrink(FIGURES / "feature_pyramid.png")


STEPS = {
    "triangle": triangle,
    "sobel": sobel,
    "digits": digits,
    "receptive": receptive,
    "translation": translation,
    "pyramid": pyramid,
}


def main(argv):
    FIGURES.mkdir(parents=True, exist_ok=True)
    chosen = argv or list(STEPS)
    unknown = [s for s in chosen if s not in STEPS]
    if unknown:
        raise SystemExit(f"unknown step(s) {unknown}; choose from {list(STEPS)}")
    for step in chosen:
        start = time.perf_counter()
        STEPS[step]()
        print(f"{step}: {time.perf_counter() - start:.1f} s", flush=True)
    total = sum(p.stat().st_size for p in FIGURES.glob("*.png"))
    print(f"docs/figures: {len(list(FIGURES.glob('*.png')))} PNGs, {total / 1024:.0f} KiB; numbers in {CONCEPTS}")


if __name__ == "__main__":
    main(sys.argv[1:])
