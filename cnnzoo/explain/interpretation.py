"""`cnnzoo.interpret(model, data)`: how a classifier does on labelled images, and a look at its mistakes.

What fastai's `ClassificationInterpretation` gives, for a Keras model: the
accuracy, per-class precision and recall, the confusion matrix (an array and a
picture), the pairs of classes most often confused, and the images with the
highest loss drawn with Grad-CAM (image, true class, prediction, probability,
loss). Every image runs through the model's compiled forward pass
(`cnnzoo.deploy.inference.predictor`); only the few images the pictures need are
kept (the highest losses, and a few right ones per class). The data may be
anything `cnnzoo.data.prepare` accepts, scored whole where `prepare` would split
it (`cnnzoo.explain.evaluation_data`): a test folder needs no arguments.
"""

import heapq
import json
import math
from pathlib import Path

import numpy as np

from cnnzoo.errors import ConfigError, DataError
from cnnzoo.explain.evaluation_data import evaluation_data, label_map
from cnnzoo.utils.checks import check_int

__all__ = ["Interpretation", "interpret", "KEEP"]

KEEP = 36  # images kept for the pictures: the highest losses (a 6x6 grid), and as many right ones at most
RIGHT_PER_CLASS = 2


def interpret(model, data, *, batch_size=32, tta=False, keep=KEEP, runtime="auto"):
    """Scores a classifier on labelled images: an `Interpretation` of its answers and its mistakes.

    Args:
        model: a `keras.Model` classifier (a zoo model, or any softmax
            classifier) or the path of a `.keras` file.
        data: labelled images, every one scored: an image-folder path (read
            whole at the model's input size: a test folder needs nothing
            else), `(x, y)` arrays, a `cnnzoo.data.Arrays` record such as
            `cnnzoo.data.digits()` (its test part), `(x, y, x_val, y_val)` or
            `(train_ds, val_ds)` (the validation part), a
            `cnnzoo.data.ImageFolder` (its validation images, or all of them
            when it has none), a tf.data dataset or an iterable of `(images,
            labels)` batches. Class folders are matched to the model's class
            names by name.
        batch_size: int, images per forward pass.
        tta: bool; score each image by the mean of the probabilities of it and
            its mirror image (`cnnzoo.deploy.inference.flip_averaged`).
        keep: int >= 0, most images kept for `plot_top_losses` (the highest
            losses; as many right ones, a few per class, for `examples`).
        runtime: what runs the forward passes, as in `cnnzoo.predict`:
            `"auto"` scores a `.keras` path on its verified ONNX export when
            the `export` extra is installed (else the compiled Keras call, with
            one log line); a `keras.Model` in memory on the compiled Keras call;
            `"tensorflow"` / `"keras"` forces Keras; `"onnx"`, `"litert"`.

    Returns:
        An `Interpretation`.

    Example:

    >>> interp = cnnzoo.interpret("runs/demo/run/bird_classifier.keras", "runs/demo/digits/test")
    >>> interp  # doctest: +SKIP
    Interpretation(bird_classifier on 360 images of the folder 'runs/demo/digits/test': accuracy 99.72% ...)
    >>> interp.most_confused()  # doctest: +SKIP
    [('3', '8', 1)]
    >>> interp.plot_top_losses(9, "top_losses.png")  # doctest: +SKIP
    """
    from cnnzoo.deploy.fast_runtime import fast_runtime, normalise_runtime
    from cnnzoo.deploy.inference import flip_averaged, input_shape_of, predictor
    from cnnzoo.explain.inputs import resolve_model
    from cnnzoo.zoo.layers import class_names_of

    batch_size = check_int(batch_size, "batch_size")
    keep = check_int(keep, "keep", lo=0)
    if not isinstance(tta, bool):
        raise ConfigError(f"`tta` must be True or False. Received: tta={tta!r}.")
    runtime, source = normalise_runtime(runtime), model
    model = resolve_model(model)
    (height, width), channels = input_shape_of(model)
    names = tuple(class_names_of(model))
    labelled = evaluation_data(data, (height, width, channels), batch_size)
    mapping = label_map(labelled.class_names, names)
    exported = None if runtime == "auto" and not isinstance(source, (str, Path)) else fast_runtime(source, runtime)
    forward = exported or predictor(model)  # the Keras model still draws the pictures (Grad-CAM)
    kept = _Kept(keep)
    probs, labels, seen = [], [], 0
    for x, y in labelled.batches():
        y = y if mapping is None else mapping[np.clip(y, 0, len(mapping) - 1)]
        if len(y) and (y.min() < 0 or y.max() >= len(names)):
            raise DataError(
                f"`data` labels must be class indices of the model, 0 to {len(names) - 1}. "
                f"Received: label {int(y.max() if y.max() >= len(names) else y.min())}."
            )
        p = np.asarray(flip_averaged(forward, x, batch_size) if tta else forward(x, batch_size), np.float32)
        kept.add(seen, x, y, p)
        probs.append(p)
        labels.append(y)
        seen += len(y)
    probs = np.concatenate(probs) if probs else np.zeros((0, len(names)), np.float32)
    labels = np.concatenate(labels) if labels else np.zeros((0,), np.int64)
    sources = labelled.sources if labelled.sources is not None and len(labelled.sources) == len(labels) else None
    return Interpretation(model, probs, labels, names, kept.images, sources, labelled.description)


class _Kept:
    """The images the pictures need, gathered while streaming: the `keep` highest losses, and up to
    `RIGHT_PER_CLASS` right answers per class (the first ones), `keep` in all."""

    def __init__(self, keep):
        self.keep, self.heap, self.images, self.right, self.num_right = keep, [], {}, {}, 0

    def add(self, start, x, y, probs):
        if not self.keep:
            return
        losses = -np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))
        predicted = np.argmax(probs, axis=1)
        for i in np.argsort(-losses, kind="stable"):
            if len(self.heap) >= self.keep and losses[i] <= self.heap[0][0]:
                break
            item = (float(losses[i]), -(start + int(i)))
            if len(self.heap) >= self.keep:
                _, dropped = heapq.heappushpop(self.heap, item)
                self._forget(-dropped)
            else:
                heapq.heappush(self.heap, item)
            self.images[start + int(i)] = np.array(x[i])  # a copy: a view would hold the whole batch
        for i in np.flatnonzero(predicted == y):
            chosen = self.right.setdefault(int(y[i]), [])
            if len(chosen) < RIGHT_PER_CLASS and self.num_right < self.keep:
                chosen.append(start + int(i))
                self.num_right += 1
                self.images[start + int(i)] = np.array(x[i])

    def _forget(self, index):
        if not any(index in chosen for chosen in self.right.values()):
            self.images.pop(index, None)


class Interpretation:
    """What `cnnzoo.interpret` returns: a classifier's answers on labelled images, and its mistakes.

    Attributes:
        model: the `keras.Model`.
        probabilities: float32 `[N, classes]`, the model's output per image.
        labels: int64 `[N]`, the true class of each image (model class indices).
        class_names: tuple of the model's class names.
        images: dict index -> float32 image (0-255, the model's input size),
            for the images the pictures show (see `interpret`'s `keep`).
        sources: the image files in order (folder data), or None.
        description: what was scored, in words.
    """

    def __init__(self, model, probabilities, labels, class_names, images, sources, description):
        self.model, self.probabilities, self.labels = model, probabilities, labels
        self.class_names, self.images, self.sources, self.description = class_names, images, sources, description

    # ---------------------------------------------------------------- numbers

    @property
    def predicted(self):
        """int64 `[N]`, the predicted class of each image."""
        return np.argmax(self.probabilities, axis=1) if len(self.labels) else np.zeros((0,), np.int64)

    @property
    def losses(self):
        """float32 `[N]`, each image's cross-entropy: -log(probability of its true class)."""
        p = self.probabilities[np.arange(len(self.labels)), self.labels]
        return (-np.log(np.clip(p, 1e-12, 1.0))).astype(np.float32)

    @property
    def accuracy(self):
        """The share of images classified right (None when there are none)."""
        return float(np.mean(self.predicted == self.labels)) if len(self.labels) else None

    @property
    def confusion_matrix(self):
        """int64 `[classes, classes]`: row the true class, column the predicted one."""
        n = len(self.class_names)
        matrix = np.zeros((n, n), np.int64)
        np.add.at(matrix, (self.labels, self.predicted), 1)
        return matrix

    @property
    def precision(self):
        """float `[classes]`: of the images predicted as a class, the share that are (NaN when none are)."""
        matrix = self.confusion_matrix
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.diag(matrix) / matrix.sum(axis=0)

    @property
    def recall(self):
        """float `[classes]`: of the images of a class, the share predicted as it (NaN when it has none)."""
        matrix = self.confusion_matrix
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.diag(matrix) / matrix.sum(axis=1)

    @property
    def mistakes(self):
        """Indices of the wrong predictions, highest loss first."""
        wrong = np.flatnonzero(self.predicted != self.labels)
        return wrong[np.argsort(-self.losses[wrong], kind="stable")]

    def most_confused(self, min_count=1):
        """Pairs of classes the model mixes up, most often first (fastai's `most_confused`).

        Args:
            min_count: int, fewest mistakes a pair needs to be listed.

        Returns:
            A list of `(true class, predicted class, count)`.

        Example:

        >>> interp.most_confused()  # doctest: +SKIP
        [('3', '8', 2), ('7', '1', 1)]
        """
        min_count = check_int(min_count, "min_count")
        matrix = self.confusion_matrix
        np.fill_diagonal(matrix, 0)
        rows, cols = np.nonzero(matrix >= min_count)
        pairs = sorted(zip(rows, cols), key=lambda rc: (-matrix[rc], rc))
        return [(self.class_names[r], self.class_names[c], int(matrix[r, c])) for r, c in pairs]

    def top_losses(self, k=None):
        """`(losses, indices)` of the `k` images with the highest loss (all, for None), highest first."""
        order = np.argsort(-self.losses, kind="stable")
        order = order if k is None else order[: check_int(k, "k")]
        return self.losses[order], order

    def report(self):
        """Per-class precision, recall and image count as a text table, with the accuracy.

        Example:

        >>> print(interp.report())  # doctest: +SKIP
        class  precision    recall  images
        0        100.00%   100.00%      36
        ...
        accuracy 99.44% (358/360 images)
        """
        width = max([5, *(len(str(c)) for c in self.class_names)])
        counts = self.confusion_matrix.sum(axis=1)
        lines = [f"{'class':<{width}}  precision    recall  images"]
        for name, p, r, n in zip(self.class_names, self.precision, self.recall, counts):
            lines.append(f"{name:<{width}}  {_percent(p):>9}  {_percent(r):>8}  {n:>6}")
        right = int(np.sum(self.predicted == self.labels))
        lines.append(f"accuracy {_percent(self.accuracy)} ({right}/{len(self.labels)} images)")
        return "\n".join(lines)

    def to_dict(self, k=9):
        """The numbers as JSON-ready data: accuracy, per class, confusion matrix, most confused, top `k` losses."""
        losses, order = self.top_losses(k)
        predicted = self.predicted
        return {
            "model": self.model.name,
            "data": self.description,
            "images": int(len(self.labels)),
            "accuracy": self.accuracy,
            "classes": [
                {"name": c, "precision": _number(p), "recall": _number(r), "images": int(n)}
                for c, p, r, n in zip(self.class_names, self.precision, self.recall, self.confusion_matrix.sum(1))
            ],
            "confusion_matrix": self.confusion_matrix.tolist(),
            "most_confused": [list(pair) for pair in self.most_confused()],
            "top_losses": [
                {
                    "index": int(i),
                    "source": None if self.sources is None else self.sources[i],
                    "true": self.class_names[self.labels[i]],
                    "predicted": self.class_names[predicted[i]],
                    "probability": float(self.probabilities[i, predicted[i]]),
                    "loss": float(loss),
                }
                for loss, i in zip(losses, order)
            ],
        }

    def __repr__(self):
        if not len(self.labels):
            return f"Interpretation({self.model.name} on {self.description}: no images)"
        wrong = int(np.sum(self.predicted != self.labels))
        confused = ", ".join(f"{t!r} as {p!r} ({n})" for t, p, n in self.most_confused()[:3])
        return (
            f"Interpretation({self.model.name} on {self.description}: accuracy {_percent(self.accuracy)} "
            f"({len(self.labels) - wrong}/{len(self.labels)}), {wrong} mistake{'s' if wrong != 1 else ''}"
            f"{'; most confused: ' + confused if confused else ''})"
        )

    # ---------------------------------------------------------------- pictures

    def plot_confusion_matrix(self, out, normalize=False, title=None):
        """Writes the confusion matrix as a PNG; returns its `Path`.

        Args:
            out: the PNG's path.
            normalize: bool; colour each row by its share of the true class
                (the counts are still written in the cells).
            title: optional words on what was scored (default the description).

        Example:

        >>> interp.plot_confusion_matrix("confusion_matrix.png")  # doctest: +SKIP
        PosixPath('confusion_matrix.png')
        """
        from cnnzoo.explain.interpretation_plots import confusion_matrix_figure
        from cnnzoo.utils.plotting import save_png

        fig = confusion_matrix_figure(self.confusion_matrix, self.class_names, title or self.description, normalize)
        return save_png(fig, out)

    def plot_top_losses(self, k=9, out="top_losses.png", gradcam=True):
        """Writes a grid of the `k` images with the highest loss, each under its Grad-CAM; returns its `Path`.

        Each picture is titled with the true class, the prediction and its
        probability, and the loss; the heatmap shows where the model looked
        for the class it predicted (`gradcam=False`: the images alone).

        Args:
            k: int, images shown (at most the `keep` that `interpret` kept).
            out: the PNG's path.
            gradcam: bool.

        Example:

        >>> interp.plot_top_losses(9, "top_losses.png")  # doctest: +SKIP
        PosixPath('top_losses.png')
        """
        from cnnzoo.explain.interpretation_plots import top_losses_figure
        from cnnzoo.utils.plotting import save_png

        k = check_int(k, "k")
        _, order = self.top_losses(k)
        shown = [int(i) for i in order if int(i) in self.images]
        if len(shown) < len(order):
            raise ConfigError(
                f"`k` must be at most the {len(self.images)} images `interpret` kept (its `keep`). "
                f"Received: k={k}. Call cnnzoo.interpret(..., keep={k})."
            )
        title = f"top {len(shown)} losses of {self.model.name} on {self.description}"
        return save_png(top_losses_figure(self, shown, title, gradcam), out)

    def examples(self, count=8):
        """`(right, wrong)` indices for a picture of `count` images: mistakes first, a few right ones.

        The mistakes go highest loss first, taking turns across the true
        classes (the class with the worst mistake first), so that one class
        does not fill the picture; right answers, one class after another,
        take at least a quarter of the places (two when `count` allows) and
        every place the mistakes leave. Only images `interpret` kept count.

        Example:

        >>> right, wrong = interp.examples(8)  # doctest: +SKIP
        >>> wrong.tolist()  # doctest: +SKIP
        [153, 298, 87]
        """
        from cnnzoo.explain.interpretation_plots import by_turns

        count = check_int(count, "count")
        kept = np.array(sorted(self.images), np.int64)
        if not len(kept):
            return np.zeros((0,), np.int64), np.zeros((0,), np.int64)
        labels, predicted, losses = self.labels[kept], self.predicted[kept], self.losses[kept]
        right = by_turns(kept[predicted == labels], labels[predicted == labels], -kept[predicted == labels])
        wrong = by_turns(kept[predicted != labels], labels[predicted != labels], losses[predicted != labels])
        places = count - min(len(right), max(2 if count >= 4 else 1, math.ceil(count / 4)))
        wrong = wrong[:places]
        return right[: count - len(wrong)], wrong

    def plot_examples(self, out, count=8):
        """Writes Grad-CAM pictures of a row of right answers and a row of mistakes (`examples`); returns its
        `Path`, or None when no image was kept or the model has no convolution to read (logged)."""
        from cnnzoo.explain.interpretation_plots import examples_figure
        from cnnzoo.utils.plotting import save_png

        right, wrong = self.examples(count)
        fig = examples_figure(self, right, wrong) if len(right) or len(wrong) else None
        return None if fig is None else save_png(fig, out)

    def save(self, out, k=9):
        """Writes `confusion_matrix.png`, `top_losses.png` (top `k`) and `metrics.json` into `out`.

        Returns:
            A dict name -> `Path`.

        Example:

        >>> cnnzoo.interpret(model, "photos/test").save("evaluated")  # doctest: +SKIP
        {'confusion_matrix': PosixPath('evaluated/confusion_matrix.png'), ...}
        """
        from cnnzoo.utils.files import atomic_save

        out = Path(out)
        written = {"confusion_matrix": self.plot_confusion_matrix(out / "confusion_matrix.png")}
        k = min(k, len(self.images))
        if k:
            written["top_losses"] = self.plot_top_losses(k, out / "top_losses.png")
        text = json.dumps(self.to_dict(k), indent=2)
        written["metrics"] = atomic_save(out / "metrics.json", lambda tmp: Path(tmp).write_text(text))
        return written


def _percent(value):
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2%}"


def _number(value):
    return None if value is None or math.isnan(value) else float(value)
