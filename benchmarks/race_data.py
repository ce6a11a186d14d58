"""The data of the cnnzoo-against-fastai race (`bench_fastai.py`): two tasks, each a fixed train / valid / test split.

- digits: all 1,797 UCI digits (scikit-learn's `load_digits`) at 32x32 RGB, as `cnnzoo.data.digits`
  renders them, split afresh with seed `DIGITS_SEED` (stratified: 360 test, then 144 validation,
  1,293 training). cnnzoo's defaults were chosen on `cnnzoo.data.digits(seed=0..9)` test splits;
  this partition is another one, and its test part is scored once, after training, by both sides;
  nothing (no default, no learning rate, no epoch count) is chosen on it.
- shapes: five shape classes (circle, square, triangle, cross, ring) of random size, position,
  colour and line width on a 32x32 canvas with a random background and line / dot clutter, drawn
  with seed `SHAPES_SEED`: 1,500 training, 300 validation, 500 test images.

Each task is written once as `<task>.npz` (uint8 `x_train`, `y_train`, `x_valid`, ...), which both
sides load before their clocks start.
"""

import numpy as np

SHAPES = ("circle", "square", "triangle", "cross", "ring")
DIGITS_SEED = 1919  # not one of the split seeds 0-9 that cnnzoo's defaults were measured on
SHAPES_SEED = 19


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


def digits_splits(seed=DIGITS_SEED):
    """`{split: (x, y)}` of all 1,797 digits at 32x32 RGB: 360 test, 144 validation, 1,293 training (stratified)."""
    from sklearn.model_selection import train_test_split

    import cnnzoo

    d = cnnzoo.data.digits(seed=0, image_size=(32, 32), channels=3)
    x, y = np.concatenate([d.x_train, d.x_test]), np.concatenate([d.y_train, d.y_test])
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=360, random_state=seed, stratify=y)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=144, random_state=seed, stratify=y_rest)
    return {"train": (x_train, y_train), "valid": (x_val, y_val), "test": (x_test, y_test)}


def shapes_splits(seed=SHAPES_SEED):
    """`{split: (x, y)}` of 2,300 drawn shapes: 1,500 training, 300 validation, 500 test."""
    x, y = draw_shapes(2300, seed=seed)
    return {"train": (x[:1500], y[:1500]), "valid": (x[1500:1800], y[1500:1800]), "test": (x[1800:], y[1800:])}


def write_tasks(root):
    """Writes `root/<task>.npz` for both tasks; returns `{task: (npz path, {split: (x, y)})}`."""
    out = {}
    for task, splits in (("digits", digits_splits()), ("shapes", shapes_splits())):
        path = root / f"{task}.npz"
        np.savez(path, **{f"{k}_{s}": v for s, xy in splits.items() for k, v in zip("xy", xy)})
        out[task] = (path, splits)
    return out
