"""Fast inference: image paths, PIL images or arrays -> labels and probabilities.

`model.predict` builds a data adapter, a progress callback and a step loop on
every call: about 45 ms for one image on a 2-core CPU, most of it overhead.
`predict` calls the model's compiled forward pass
(`cnnzoo.backend.inference.compiled_forward`: a `tf.function` traced once for
any batch size on TensorFlow, `jax.jit` on JAX, an `inference_mode` call on
PyTorch), cached per model, so a single image costs about as much as the
forward pass itself.
"""

import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnzoo.backend.inference import compiled_forward
from cnnzoo.data.images import resize_array, to_channels
from cnnzoo.deploy.fast_runtime import RUNTIMES
from cnnzoo.deploy.runtimes import Runtime, format_of, open_runtime
from cnnzoo.errors import ConfigError, DataError, DataNotFoundError
from cnnzoo.utils.checks import check_int

__all__ = [
    "Prediction",
    "predict",
    "load_images",
    "predictor",
    "flip_averaged",
    "input_shape_of",
    "forward_of",
    "RUNTIMES",
]

MAX_BATCH = 32


@dataclass(frozen=True)
class Prediction:
    """The prediction for one image.

    Attributes:
        label: the most probable class name.
        probability: its probability (float in [0, 1]).
        top_k: `((label, probability), ...)`, best first, `top_k` pairs.
        source: the file path, when the image came from one.
    """

    label: str
    probability: float
    top_k: tuple
    source: str = None

    def to_dict(self):
        return {
            "source": self.source,
            "label": self.label,
            "probability": self.probability,
            "top_k": [{"label": label, "probability": p} for label, p in self.top_k],
        }


def predict(model, images, top_k=1, batch_size=MAX_BATCH, runtime="auto", tta=False):
    """Classifies images with a zoo model, using the class names stored in its head.

    Args:
        model: a `keras.Model` (a zoo model ending in `ClassifierHead`, or any
            softmax classifier: its classes are then named "0", "1", ...), or
            the path of a saved `.keras` model, or an exported one: a `.onnx`
            file (ONNX Runtime), a `.tflite` file (LiteRT), a SavedModel
            directory (TensorFlow) written by `cnnzoo.export`, which carry
            their class names; or a `cnnzoo.deploy.runtimes.Runtime`.
        images: one image or a list of them. An image is a file path (str or
            `Path`), a PIL image, or an array `[H, W]`, `[H, W, C]` with 0-255
            values; a 4-D array `[N, H, W, C]` is a batch. Images are
            converted to the model's channels and resized to its input size
            the way `cnnzoo.data.image_folder` does it.
        top_k: int, how many (label, probability) pairs to keep per image.
        batch_size: int, most images run through the model at once.
        runtime: `"auto"` (the default; None is the same): for a `.keras`
            path, ONNX Runtime when the `export` extra is installed: the model
            is exported once, verified against Keras as `cnnzoo.export` does,
            and cached in `$CNNZOO_HOME/exports` by the file's SHA-256 (never
            beside the model); where the extra is missing, the export fails or
            disagrees, the compiled Keras call, with one log line saying why.
            A `keras.Model` in memory runs the compiled Keras call under
            `"auto"` (exporting a live model on every call would cost more
            than it saves). `"tensorflow"` or `"keras"`: the compiled Keras
            call, on the Keras backend in use. `"onnx"` or `"litert"`: that
            runtime, also for a model in memory (cached by its config and
            weights), raising `ExportError` when the export disagrees. For an
            exported file, `"auto"` or its own format.
        tta: bool; test-time augmentation: the probabilities are the mean of
            those of the image and of its mirror image (`flip_averaged`). Only
            for classes that a horizontal flip preserves (photos of birds,
            not digits or text). Twice the compute.

    Returns:
        A `Prediction` for a single image, a list of them for a list or batch.

    Example:

    >>> p = cnnzoo.predict(model, "birds/test/robin/1.jpg", top_k=3)
    >>> p.label, round(p.probability, 2)
    ('robin', 0.97)
    """
    forward, names, (size, channels) = forward_of(model, runtime)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= len(names):
        raise ConfigError(
            f"`top_k` must be an integer from 1 to the number of classes ({len(names)}). Received: top_k={top_k!r}."
        )
    batch_size = check_int(batch_size, "batch_size")
    batch, sources, single = load_images(images, size, channels)
    probs = flip_averaged(forward, batch, batch_size) if tta else forward(batch, batch_size)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    out = []
    for i, row in enumerate(order):
        pairs = tuple((names[j], float(probs[i, j])) for j in row)
        out.append(Prediction(pairs[0][0], pairs[0][1], pairs, sources[i]))
    return out[0] if single else out


def forward_of(model, runtime="auto"):
    """`(forward pass, class names, (input size, channels))` of a model, a path or a `Runtime`.

    The forward pass is `fn(batch float32 NHWC, batch_size) -> probabilities`:
    for a `.keras` path and `runtime="auto"`, the verified ONNX export when
    there is one (`cnnzoo.deploy.fast_runtime`), else the compiled Keras call;
    for a `keras.Model` in memory, the compiled Keras call unless `runtime` is
    `"onnx"` or `"litert"`; for an exported file, its own runtime.

    Example:

    >>> forward, names, (size, channels) = forward_of("birds.keras")  # doctest: +SKIP
    """
    from cnnzoo.deploy.fast_runtime import KERAS_RUNTIMES, fast_runtime, known_runtime, normalise_runtime

    runtime = normalise_runtime(runtime)
    if isinstance(model, (str, Path)):
        known = known_runtime(model, runtime)  # the same unchanged file as before: no path handling
        if known is not None:
            return known, known.class_names, (known.input_size, known.channels)
        fmt = format_of(Path(model).expanduser())
        if fmt in (None, "keras"):
            if not Path(model).expanduser().is_file():
                raise DataNotFoundError(
                    f"`model` must be a keras.Model or an existing .keras file (or an exported model). "
                    f"Received: model={str(model)!r} (no such file)."
                )
            model = fast_runtime(model, runtime) or _load(model)
        else:
            if runtime not in ("auto", fmt, "tensorflow" if fmt == "savedmodel" else fmt):
                raise ConfigError(
                    f"`runtime` must be 'auto' or {fmt!r} for a {fmt} model (it runs in its own "
                    f"runtime). Received: runtime={runtime!r}, model={str(model)!r}."
                )
            model = _open(model)
    elif not isinstance(model, Runtime) and runtime not in ("auto", *KERAS_RUNTIMES):
        model = fast_runtime(model, runtime)  # asked for: exported from memory, cached by its weights
    if isinstance(model, Runtime):
        return model, model.class_names, (model.input_size, model.channels)
    return predictor(model), _class_names(model), input_shape_of(model)


_forward = forward_of  # the 0.1 name


_OPENED = {}


def _open(path):
    """The runtime of an exported file, kept while the file is unchanged (a few at a time)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataNotFoundError(
            f"`model` must be a keras.Model, a .keras file or an exported model. "
            f"Received: model={str(path)!r} (no such file)."
        )
    key = (str(path.resolve()), path.stat().st_mtime_ns)
    if key not in _OPENED:
        if len(_OPENED) >= 4:
            _OPENED.pop(next(iter(_OPENED)))
        _OPENED[key] = open_runtime(path)
    return _OPENED[key]


class _Predictor:
    """A model's compiled forward pass (`compiled_forward`), run `batch_size` images at a time."""

    def __init__(self, model):
        self.fn = compiled_forward(model)  # holds a weak reference: the cache must not keep the model alive

    def __call__(self, batch, batch_size=MAX_BATCH):
        batch = np.asarray(batch, np.float32)
        outs = [np.asarray(self.fn(batch[start : start + batch_size])) for start in range(0, len(batch), batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


_PREDICTORS = weakref.WeakKeyDictionary()


def flip_averaged(forward, batch, batch_size=MAX_BATCH):
    """Test-time augmentation: the mean of the probabilities of each image and of its horizontal flip.

    Args:
        forward: `fn(batch, batch_size) -> probabilities`, e.g. `predictor(model)`
            or a `cnnzoo.deploy.runtimes.Runtime`.
        batch: float32 images `[N, H, W, C]`.
        batch_size: int, most images per forward call.

    Returns:
        float32 probabilities `[N, classes]`.

    Example:

    >>> probs = flip_averaged(predictor(model), images)  # doctest: +SKIP
    """
    batch = np.asarray(batch, np.float32)
    mirrored = np.ascontiguousarray(batch[:, :, ::-1])
    return (
        (np.asarray(forward(batch, batch_size), np.float32) + np.asarray(forward(mirrored, batch_size), np.float32)) / 2
    ).astype(np.float32)


def predictor(model):
    """The cached compiled forward pass of `model`: `fn(batch float32 NHWC) -> probabilities`.

    Example:

    >>> probs = predictor(model)(np.zeros((1, 32, 32, 3), "float32"))  # doctest: +SKIP
    """
    fn = _PREDICTORS.get(model)
    if fn is None:
        fn = _PREDICTORS[model] = _Predictor(model)
    return fn


_LOADED = {}


def _load(path):
    from cnnzoo.zoo.loading import load

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataNotFoundError(
            f"`model` must be a keras.Model or an existing .keras file. Received: model={str(path)!r} (no such file)."
        )
    key = (str(path.resolve()), path.stat().st_mtime_ns)
    if key not in _LOADED:
        _LOADED.clear()  # keep one loaded model: the CLI and scripts predict with one at a time
        _LOADED[key] = load(path, compile=False)
    return _LOADED[key]


def _class_names(model):
    from cnnzoo.zoo.layers import class_names_of

    return class_names_of(model)


def input_shape_of(model):
    """`((height, width), channels)` of a Keras model's input; raises `ConfigError` unless fixed-size images.

    Example:

    >>> input_shape_of(cnnzoo.get("digits_cnn"))  # doctest: +SKIP
    ((8, 8), 1)
    """
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[3] not in (1, 3) or None in shape[1:]:
        raise ConfigError(
            f"`model` must take fixed-size images [batch, height, width, 1 or 3]. Received: model input shape {shape}."
        )
    return (int(shape[1]), int(shape[2])), int(shape[3])


_input_size = input_shape_of  # the 0.1 name


# ------------------------------------------------------------------ images


def load_images(images, size, channels):
    """Reads and resizes images for a model input.

    Args:
        images: see `predict`.
        size: (height, width).
        channels: 1 or 3.

    Returns:
        `(batch, sources, single)`: a float32 array `[N, height, width,
        channels]` with 0-255 values, the file path of each image (or None),
        and whether a single image was given.

    Example:

    >>> batch, _, single = load_images(["a.png", "b.png"], (32, 32), 3)  # doctest: +SKIP
    """
    single = _is_single(images)
    try:
        items = [images] if single else list(images)
    except TypeError:
        raise DataError(
            f"`images` must be an image (path, PIL image, array) or a list of them. Received: an "
            f"object of type {type(images).__name__}."
        ) from None
    if not items:
        raise DataError("`images` must hold at least one image. Received: images=[].")
    out = np.empty((len(items), size[0], size[1], channels), np.float32)
    sources = []
    for i, item in enumerate(items):
        out[i], source = _one(item, size, channels)
        sources.append(source)
    return out, sources, single


def _is_single(images):
    if isinstance(images, (str, Path)):
        return True
    if isinstance(images, np.ndarray) or hasattr(images, "numpy"):
        return np.ndim(images) in (2, 3)
    return _is_pil(images)


def _is_pil(obj):
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        return False
    return isinstance(obj, Image.Image)


def _one(item, size, channels):
    from cnnzoo import data

    source = None
    if isinstance(item, (str, Path)):  # exactly what image_folder does to a file
        source = str(item)
        if not Path(item).expanduser().is_file():
            raise DataNotFoundError(
                f"`images` must name existing image files. Received: images={source!r} (no such file)."
            )
        try:
            return data.load_image(Path(item).expanduser(), size, channels).astype(np.float32), source
        except DataError as e:
            raise DataError(
                f"`images` must be readable image files (PNG, JPEG, BMP, GIF, WebP). Received: images={source!r}: {e}"
            ) from e
    if _is_pil(item):
        item = data.convert_image(item, channels)  # exactly what image_folder does to a decoded file
    try:
        arr = np.asarray(item.numpy() if hasattr(item, "numpy") else item)
    except Exception as e:  # noqa: BLE001 - anything that is not array-like
        raise DataError(
            f"`images` must be file paths, PIL images or arrays. Received: an item of type {type(item).__name__}."
        ) from e
    if arr.dtype.kind not in "uif" or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4)):
        raise DataError(
            f"`images` arrays must be numeric [H, W] or [H, W, C] with C in 1, 3, 4 (0-255 values), "
            f"or a 4-D batch. Received: an array of shape {arr.shape} and dtype {arr.dtype}."
        )
    return resize_array(to_channels(arr, channels), size), source
