"""Grad-CAM: where in the image a model looked for the class it predicts (Selvaraju et al. 2017)."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnzoo.backend.gradients import feature_map_and_gradient
from cnnzoo.errors import ConfigError, ExplainWarning
from cnnzoo.explain import taps as _taps
from cnnzoo.explain.gradcam_picture import gradcam_picture, overlay, resize_heat
from cnnzoo.explain.inputs import model_batch, original, resolve_model
from cnnzoo.utils.checks import is_int
from cnnzoo.utils.plotting import save_png
from cnnzoo.zoo.layers import class_names_of

__all__ = ["grad_cam", "overlay", "heatmaps", "Heatmaps", "explained_picture", "warn_vanished", "VANISHING"]


VANISHING = 1e-4  # total |gradient x activation| (in units of the class score) below which the map is noise


@dataclass(frozen=True)
class Heatmaps:
    """Grad-CAM of a batch at the feature map's resolution, and what it explains.

    Attributes:
        maps: float32 `[N, h, w]`, each in [0, 1] (all zeros where no region
            raises the score).
        classes: int32 `[N]`, the class each map explains.
        probabilities: float32 `[N]`, the model's probability of that class.
        strength: float32 `[N]`, the total |gradient x activation| over the
            feature map, in units of the class score (before the softmax): how
            much the score depends on the map, to first order. Below `VANISHING`
            the gradients vanish and the scaled map is noise.
        layer: the name of the feature-map layer read.
    """

    maps: np.ndarray
    classes: np.ndarray
    probabilities: np.ndarray
    strength: np.ndarray
    layer: str

    @property
    def vanished(self):
        """bool `[N]`: the score barely depends on the feature map (see `strength`)."""
        return self.strength < VANISHING

    def about(self, i, class_names):
        """What map `i` explains, as `gradcam_picture`'s keywords (label, probability, layer, strength, vanished)."""
        k = int(self.classes[i])
        return dict(
            label=class_names[k] if k < len(class_names) else str(k),
            probability=float(self.probabilities[i]),
            layer=self.layer,
            strength=float(self.strength[i]),
            vanished=bool(self.vanished[i]),
        )


def heatmaps(model, batch, class_index=None, layer=None):
    """Grad-CAM of a batch already at the model's input size: a `Heatmaps`.

    Args:
        model: a `keras.Model` classifier (not a path).
        batch: float32 `[N, H, W, C]`, 0-255, at the model's input size.
        class_index: as in `grad_cam`.
        layer: as in `grad_cam`.

    Example:

    >>> maps = heatmaps(model, np.zeros((2, 32, 32, 3), "float32"))  # doctest: +SKIP
    >>> maps.maps.shape, maps.vanished.tolist()  # doctest: +SKIP
    ((2, 4, 4), [False, False])
    """
    from cnnzoo.deploy.inference import predictor

    tap = _taps.default_gradcam_layer(model) if layer is None else _taps.find(model, layer, "layer")
    batch = np.asarray(batch, np.float32)

    def forward(x, offset):
        offsets = None if offset is None else {tap.name: offset}
        captured, scores = _taps.run(model, x, [tap.name], logits=True, offsets=offsets)
        return captured[tap.name], scores

    chosen = []

    def choose(scores):
        if scores.ndim != 2:
            raise ConfigError(
                f"`model` must output class scores [batch, classes]. Received: model output shape {scores.shape}."
            )
        chosen.append(_class_indices(model, class_index, scores, int(scores.shape[-1])))
        return chosen[-1]

    fmap, grads, _ = feature_map_and_gradient(forward, batch, (len(batch), *tap.shape), choose)
    weights = grads.mean(axis=(1, 2), keepdims=True)
    cams = np.maximum((weights * fmap).sum(axis=-1), 0.0)
    peaks = cams.max(axis=(1, 2), keepdims=True)
    cams = np.divide(cams, peaks, out=np.zeros_like(cams), where=peaks > 0)
    classes = chosen[-1]
    probs = np.asarray(predictor(model)(batch), np.float32)
    return Heatmaps(
        cams.astype(np.float32),
        classes,
        probs[np.arange(len(batch)), classes],
        np.abs(grads * fmap).sum(axis=(1, 2, 3)).astype(np.float32),
        tap.name,
    )


def grad_cam(model, image, class_index=None, layer=None, out=None):
    """A Grad-CAM heatmap: which parts of the image raise the score of a class.

    The gradient of the class score (before the softmax) with respect to a
    convolutional feature map, averaged over its positions, weighs each
    channel; the weighted sum of the channels, rectified and scaled to [0, 1],
    is the heatmap, resized to the image (Selvaraju et al. 2017,
    arXiv:1610.02391). When the score barely depends on the feature map (an
    untrained model: gradients near zero), the scaled map is noise: a
    `cnnzoo.ExplainWarning` says so, and the picture written to `out` notes it.

    Args:
        model: a `keras.Model` classifier taking fixed-size images (a zoo
            model), or the path of a `.keras` file.
        image: a file path, a PIL image or an array `[H, W]`/`[H, W, C]` with
            0-255 values (any size: it is resized for the model as
            `cnnzoo.predict` does); a list of them or a 4-D array `[N, H, W, C]`.
        class_index: None for each image's predicted class, an int, or a class
            name of a zoo model (`"robin"`).
        layer: None for the last convolutional feature map (after its
            BatchNormalization and activation; inside `ConvBlock`s and nested
            backbones too), or the name of a layer whose output is a feature map.
        out: optional path of a PNG to write: the heatmap over the image,
            enlarged to at least 224 pixels on the long side, titled with the
            class explained and its probability, with a colour bar (for several
            images, a directory receiving `0.png`, `1.png`, ...).

    Returns:
        A float32 array `[H, W]` in [0, 1] at the size of the image as given;
        a list of them for a list of images, an array `[N, H, W]` for a 4-D
        array.

    Example:

    >>> heat = cnnzoo.explain.grad_cam(model, "robin.jpg", out="robin_gradcam.png")
    >>> heat.shape, float(heat.max())  # doctest: +SKIP
    ((480, 640), 1.0)
    """
    model = resolve_model(model)
    batch, single = model_batch(model, image)
    stacked = not single and (isinstance(image, np.ndarray) or hasattr(image, "numpy"))
    items = [image] if single else list(np.asarray(image)) if stacked else list(image)
    found = heatmaps(model, batch, class_index, layer)
    warn_vanished(model, found)  # the pictures note it too
    heats = [resize_heat(cam, original(item).shape[:2]) for cam, item in zip(found.maps, items)]
    if out is not None:
        names = class_names_of(model)
        paths = [Path(out)] if single else [Path(out) / f"{i}.png" for i in range(len(items))]
        for i, (item, heat, path) in enumerate(zip(items, heats, paths)):
            save_png(gradcam_picture(item, heat, **found.about(i, names)), path)
    if single:
        return heats[0]
    return np.stack(heats) if stacked else heats


def warn_vanished(model, found):
    """Emits a `cnnzoo.ExplainWarning` when some maps of `found` (a `Heatmaps`) are noise: vanishing gradients."""
    import warnings

    faint = np.flatnonzero(found.vanished)
    if len(faint):
        warnings.warn(
            f"Grad-CAM of {model.name!r} at layer {found.layer!r}: the class score barely depends on the "
            f"feature map for {len(faint)} of {len(found.maps)} image(s) (total |gradient x activation| "
            f"{float(found.strength[faint].max()):.2g}, below {VANISHING:g}): the gradients vanish and the "
            f"heatmap is noise scaled up to [0, 1]. Is the model trained? Try another `layer`.",
            ExplainWarning,
            stacklevel=3,
        )


def _class_indices(model, class_index, scores, n):
    if class_index is None:
        return np.argmax(scores, axis=1).astype(np.int32)
    if isinstance(class_index, str):
        names = class_names_of(model)
        if class_index not in names:
            raise ConfigError(
                f"`class_index` must be an int from 0 to {n - 1} or one of the model's class names "
                f"{names[:10]}{' ...' if len(names) > 10 else ''}. Received: class_index={class_index!r}."
            )
        class_index = names.index(class_index)
    if not is_int(class_index) or not 0 <= class_index < n:
        raise ConfigError(
            f"`class_index` must be None, a class name or an int from 0 to {n - 1} (the model has "
            f"{n} classes). Received: class_index={class_index!r}."
        )
    return np.full(len(scores), int(class_index), np.int32)


def explained_picture(model, image, class_index=None, layer=None):
    """`grad_cam` of one image as its picture (`cnnzoo.explain.gradcam_picture.gradcam_picture`), titled with
    what the model says.

    Args:
        model: a `keras.Model` classifier.
        image: one image (path, PIL image or array, 0-255), at any size.
        class_index, layer: as in `grad_cam`.

    Returns:
        A matplotlib `Figure`. Vanishing gradients also emit a `cnnzoo.ExplainWarning`.

    Example:

    >>> figure_rgb(explained_picture(model, "robin.jpg")).shape  # doctest: +SKIP
    (330, 390, 3)
    """
    batch, _ = model_batch(model, image)
    found = heatmaps(model, batch[:1], class_index, layer)
    warn_vanished(model, found)
    heat = resize_heat(found.maps[0], original(image).shape[:2])
    return gradcam_picture(image, heat, **found.about(0, class_names_of(model)))
