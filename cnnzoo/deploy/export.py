"""`cnnzoo.export`: a Keras model as an ONNX, LiteRT, SavedModel or OpenVINO model, checked in its runtime.

The exported graph keeps the model's preprocessing (raw 0-255 images in,
probabilities out) and a dynamic batch size; the class names travel with it
(ONNX `metadata_props`, a `labels.txt` zipped onto the end of the `.tflite`
file as TFLite metadata packs associated files, `assets/labels.txt` in a
SavedModel). The file is written under a temporary name, run in its own
runtime on real images and compared with the Keras model; only when it
agrees within `tolerance` is it renamed into place, with its SHA-256 beside it
(`<out>.sha256`), which `open_runtime` checks before loading it.
"""

import logging
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cnnzoo.backend.export import converters_in_process
from cnnzoo.deploy.export_process import export_in_tensorflow
from cnnzoo.deploy.runtimes import (
    FORMATS,
    LABELS_FILE,
    LABELS_KEY,
    SUFFIXES,
    format_of,
    labels_text,
    open_runtime,
    require_openvino,
)
from cnnzoo.deploy.verify import Comparison, check, check_calibration, compare, tolerance_for, verification_images
from cnnzoo.errors import ConfigError, ExportError
from cnnzoo.utils import integrity
from cnnzoo.utils.extras import require
from cnnzoo.utils.files import atomic_save, atomic_save_dir
from cnnzoo.utils.renames import renamed_arguments

__all__ = ["export", "ExportResult", "verify", "QUANTIZATIONS"]

log = logging.getLogger("cnnzoo.deploy")

QUANTIZATIONS = {"int8": ("onnx", "litert"), "float16": ("litert",)}
_NAMES = {
    "onnx": "ONNX model (ONNX Runtime)",
    "litert": "LiteRT model (ai-edge-litert)",
    "savedmodel": "SavedModel (TensorFlow)",
    "openvino": "OpenVINO model",
}


@dataclass(frozen=True)
class ExportResult:
    """What `cnnzoo.export` wrote and how the file compares with the Keras model.

    Attributes:
        path: the file (`.onnx`, `.tflite`) or directory (SavedModel, OpenVINO) written.
        format: `"onnx"`, `"litert"`, `"savedmodel"` or `"openvino"`.
        quantize: None, `"int8"` or `"float16"`.
        size_bytes: size of the file (or of every file in the directory).
        float_size_bytes: for a quantized export, the size of the same export in float32.
        images: how many images it was verified on; `source` says which.
        max_abs_diff: largest absolute difference of probabilities from the Keras model's.
        top1_agreement: fraction of images where both give the same top-1 label.
        keras_accuracy, exported_accuracy: top-1 accuracy of each where the images have labels.
        tolerance: the tolerance checked (see `export`).
        class_names: the labels stored with the file.
        seconds: time the export and its check took.
    """

    path: Path
    format: str
    quantize: str
    size_bytes: int
    float_size_bytes: int
    images: int
    source: str
    max_abs_diff: float
    top1_agreement: float
    keras_accuracy: float
    exported_accuracy: float
    tolerance: float
    class_names: tuple
    seconds: float

    @property
    def accuracy_change(self):
        """Exported minus Keras top-1 accuracy (fraction), or None without labels."""
        if self.keras_accuracy is None:
            return None
        return self.exported_accuracy - self.keras_accuracy

    def summary(self):
        """A few lines for people (what `cnnzoo export` prints)."""
        kind = f"{self.format}, {self.quantize}" if self.quantize else self.format
        size = _kb(self.size_bytes) + (f", float32 {_kb(self.float_size_bytes)}" if self.float_size_bytes else "")
        lines = [
            f"wrote {self.path} ({kind}, {size}) in {self.seconds:.1f} s",
            f"verified in its runtime on {self.source}: max abs difference {self.max_abs_diff:.2g}, "
            f"top-1 agreement {self.top1_agreement:.1%}",
        ]
        if self.keras_accuracy is not None:
            lines.append(
                f"accuracy {self.exported_accuracy:.2%} (Keras {self.keras_accuracy:.2%}, "
                f"change {100 * self.accuracy_change:+.2f} points)"
            )
        lines.append(f"class names: {', '.join(self.class_names[:10])}{' ...' if len(self.class_names) > 10 else ''}")
        return "\n".join(lines)

    def to_dict(self):
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out.update(path=str(self.path), class_names=list(self.class_names), accuracy_change=self.accuracy_change)
        return out


def _kb(n):
    return f"{n / 2**20:.2f} MB" if n >= 2**20 else f"{n / 1024:.1f} KB"


@renamed_arguments(model_or_path="model", path="out")
def export(model, out, format=None, *, verify_with=None, quantize=None, tolerance=None):
    """Exports a model for another runtime, runs the file there and checks it against Keras.

    Args:
        model: a `keras.Model` (a zoo model: raw 0-255 images in) or the path
            of a `.keras` file (was `model_or_path`, still accepted until cnnzoo
            0.3 with a `DeprecationWarning`). On the JAX and PyTorch backends
            the same weights are exported by a TensorFlow-backend process
            (`cnnzoo.deploy.export_process`): the same, verified file.
        out: where to write: a `.onnx` or `.tflite` file, or a directory for
            `"savedmodel"` and `"openvino"` (was `path`).
        format: `"onnx"`, `"litert"`, `"savedmodel"` or `"openvino"` (needs the
            `openvino` package); by default found from the suffix of `out`.
        verify_with: images to check (and calibrate) on: a folder (files in
            sub-folders named like the model's classes count for accuracy), a
            list of image files or an array of 0-255 images. Default: the
            held-out UCI digits resized to the model input (with their labels
            when the model's classes are the digits), plus synthetic images.
        quantize: None, `"int8"` (post-training, calibrated on up to 200 of
            the images, with a `DataWarning` below 100; `"onnx"` or
            `"litert"`) or `"float16"` (`"litert"`).
        tolerance: for float exports, the largest max abs difference of
            probabilities allowed (default 1e-4, 1e-2 for float16); for int8,
            the largest fraction of images whose top-1 label may differ from
            Keras (default 0.02).

    Returns:
        An `ExportResult`: path, format, size, max abs difference, top-1
        agreement and, where the images have labels, both accuracies.

    Raises:
        ExportError: the exported model disagrees beyond `tolerance`; nothing
            is left at `out` (a file there before is kept).
        MissingExtraError: the format's converter or runtime is not installed.

    Example:

    >>> result = cnnzoo.export("digits.keras", "digits.onnx")  # doctest: +SKIP
    >>> result.max_abs_diff < 1e-5, result.top1_agreement  # doctest: +SKIP
    (True, 1.0)
    """
    start = time.perf_counter()
    path = Path(out).expanduser()
    format = _check_format(format, path)
    _check_quantize(quantize, format)
    if not converters_in_process():  # JAX, PyTorch: the same weights, exported on the TensorFlow backend
        done = export_in_tensorflow(model, path, format, verify_with, quantize, tolerance)
        fields = {k: v for k, v in done.items() if k in ExportResult.__dataclass_fields__}
        return ExportResult(**{**fields, "path": Path(fields["path"]), "class_names": tuple(fields["class_names"])})
    tolerance = tolerance_for(tolerance, quantize)
    _require(format)
    model = _model(model)
    from cnnzoo.zoo.precision import dtype_of, with_dtype

    if dtype_of(model) != "float32":  # runtimes have no bfloat16/float16 convolutions on CPU: export float32
        log.info("%s computes in %s; exporting (and verifying) its float32 copy", model.name, dtype_of(model))
        model = with_dtype(model, "float32")

    from cnnzoo.zoo.layers import class_names_of

    names = class_names_of(model)
    size, channels = _input_shape(model)
    images = verification_images(verify_with, size, channels, names)
    if quantize == "int8":
        check_calibration(images, verify_with)
    reference = model.predict(images.x, batch_size=32, verbose=0)  # calls the model once, as `model.export` needs
    done = {}

    def write_and_check(tmp):
        done["float_size"] = _WRITERS[format](model, tmp, names, quantize, images.calibration)
        exported = open_runtime(tmp, format)
        if exported.class_names != names:
            raise ExportError(
                f"The exported file lost the class names: {exported.class_names[:5]} instead of "
                f"{names[:5]}. Received: out={str(path)!r}."
            )
        done["comparison"] = c = compare(reference, exported(images.x), images.labels)
        check(c, tolerance, quantize, _NAMES[format], path)
        integrity.write_sidecar(path, integrity.sha256_file(tmp))  # <out>.sha256, checked by `open_runtime`

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*np.object.*", category=FutureWarning)  # tf2onnx on NumPy 2
        (atomic_save if format in SUFFIXES else atomic_save_dir)(path, write_and_check)
    c: Comparison = done["comparison"]
    return ExportResult(
        path,
        format,
        quantize,
        _size(path),
        done["float_size"],
        c.images,
        images.description,
        c.max_abs_diff,
        c.top1_agreement,
        c.keras_accuracy,
        c.exported_accuracy,
        tolerance,
        tuple(names),
        time.perf_counter() - start,
    )


def verify(path, model, verify_with=None, tolerance=None, quantize=None):
    """Checks an exported file against a Keras model (as `export` does before keeping a file).

    Returns:
        A `Comparison`; raises `ExportError` beyond `tolerance`.

    Example:

    >>> verify("digits.onnx", model).max_abs_diff < 1e-5  # doctest: +SKIP
    True
    """
    from cnnzoo.zoo.layers import class_names_of

    model = _model(model)
    runtime = open_runtime(path)
    images = verification_images(verify_with, *_input_shape(model), class_names_of(model))
    c = compare(model.predict(images.x, batch_size=32, verbose=0), runtime(images.x), images.labels)
    check(c, tolerance_for(tolerance, quantize), quantize, _NAMES[runtime.format], path)
    return c


def _check_format(format, path):
    if format is None:
        format = next((f for f, suffix in SUFFIXES.items() if path.suffix.lower() == suffix), None)
        if format is None:
            raise ConfigError(
                f"`format` must be given when `out` does not end in .onnx or .tflite: one of "
                f"{', '.join(FORMATS)}. Received: out={str(path)!r}, format=None."
            )
    if format not in FORMATS:
        raise ConfigError(f"`format` must be one of {', '.join(FORMATS)}. Received: format={format!r}.")
    if format in SUFFIXES and path.suffix.lower() != SUFFIXES[format]:
        raise ConfigError(f"`out` must end in {SUFFIXES[format]} for format={format!r}. Received: out={str(path)!r}.")
    if format not in SUFFIXES and path.is_file():
        raise ConfigError(
            f"`out` must be a directory (or a new name) for format={format!r}: it is written as a "
            f"directory. Received: out={str(path)!r} (an existing file)."
        )
    if format not in SUFFIXES and path.is_dir() and any(path.iterdir()) and format_of(path) != format:
        # the export replaces the directory: never one that holds something else
        raise ConfigError(
            f"`out` must be a new or empty directory, or an earlier {format} export, for "
            f"format={format!r}: the export replaces it. Received: out={str(path)!r} (a directory "
            f"holding other files)."
        )
    return format


def _check_quantize(quantize, format):
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ConfigError(f"`quantize` must be None, 'int8' or 'float16'. Received: quantize={quantize!r}.")
    if quantize is not None and format not in QUANTIZATIONS[quantize]:
        raise ConfigError(
            f"`quantize={quantize!r}` is available for format "
            f"{' or '.join(repr(f) for f in QUANTIZATIONS[quantize])}. Received: format={format!r}."
        )


def _require(format):
    if format == "onnx":
        require("tf2onnx", "export", "Exporting to ONNX")
        require("onnxruntime", "export", "Checking an ONNX export in ONNX Runtime")
    elif format == "litert":
        require("ai_edge_litert", "export", "Checking a LiteRT export in LiteRT")
    elif format == "openvino":
        require_openvino("Exporting to OpenVINO")


def _model(model):
    from cnnzoo.zoo.loading import as_model

    return as_model(model, "model")


def _input_shape(model):
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[3] not in (1, 3) or None in shape[1:]:
        raise ConfigError(
            f"`model` must take fixed-size images [batch, height, width, 1 or 3]. Received: model input shape {shape}."
        )
    return (int(shape[1]), int(shape[2])), int(shape[3])


def _size(path):
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ------------------------------------------------------------------ writers: (model, tmp path, names, quantize,
# calibration images) -> size of the float32 export when quantized, else None


def _write_onnx(model, tmp, names, quantize, calibration):
    onnx = require("onnx", "export", "Exporting to ONNX")
    with tempfile.TemporaryDirectory() as work:
        plain = Path(work) / "model.onnx"
        tf2onnx_log = logging.getLogger("tf2onnx")
        level = tf2onnx_log.level
        tf2onnx_log.setLevel(logging.ERROR)  # "Failed to apply optimize_transpose": an optional pass, skipped
        try:
            model.export(str(plain), format="onnx", verbose=False)
        finally:
            tf2onnx_log.setLevel(level)
        float_size = None
        if quantize == "int8":
            float_size = plain.stat().st_size
            _quantize_onnx(plain, Path(work), calibration)
            plain = Path(work) / "int8.onnx"
        proto = onnx.load(str(plain))
    del proto.metadata_props[:]
    for key, value in _metadata(names).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, tmp)
    return float_size


def _metadata(names):
    import json
    from importlib.metadata import PackageNotFoundError, version

    try:
        made_by = f"cnnzoo {version('cnnzoo')}"
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        made_by = "cnnzoo"
    return {
        LABELS_KEY: json.dumps(list(names)),
        "cnnzoo.input": "raw 0-255 images, float32 NHWC",
        "cnnzoo.made_by": made_by,
    }


def _quantize_onnx(plain, work, calibration):
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = ort.InferenceSession(str(plain), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(calibration[i : i + 1] for i in range(len(calibration)))

        def get_next(self):
            item = next(self.items, None)
            return None if item is None else {name: item}

    ready = work / "pre.onnx"
    quant_pre_process(str(plain), str(ready), skip_symbolic_shape=True)
    quantize_static(str(ready), str(work / "int8.onnx"), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)


def _saved_model(model, directory, names):
    model.export(str(directory), format="tf_saved_model", verbose=False)
    assets = Path(directory) / "assets"
    assets.mkdir(exist_ok=True)
    (assets / LABELS_FILE).write_text(labels_text(names), encoding="utf-8")


def _write_savedmodel(model, tmp, names, quantize, calibration):
    _saved_model(model, tmp, names)


def _write_litert(model, tmp, names, quantize, calibration):
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as work:
        _saved_model(model, Path(work) / "saved", names)
        float_size = None
        if quantize:
            float_size = len(tf.lite.TFLiteConverter.from_saved_model(str(Path(work) / "saved")).convert())
        converter = tf.lite.TFLiteConverter.from_saved_model(str(Path(work) / "saved"))
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # inputs and outputs stay float32
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            converter.representative_dataset = lambda: ([calibration[i : i + 1]] for i in range(len(calibration)))
        flatbuffer = converter.convert()
    with open(tmp, "wb") as f:
        f.write(flatbuffer)
    with zipfile.ZipFile(tmp, "a") as z:  # TFLite metadata's way to carry associated files
        z.writestr(LABELS_FILE, labels_text(names))
    return float_size


def _write_openvino(model, tmp, names, quantize, calibration):
    ov = require_openvino("Exporting to OpenVINO")
    with tempfile.TemporaryDirectory() as work:
        _saved_model(model, Path(work) / "saved", names)
        converted = ov.convert_model(str(Path(work) / "saved"))
        Path(tmp).mkdir(parents=True, exist_ok=True)
        # OpenVINO stores weights as float16 unless told not to: a float export keeps Keras's float32 weights
        ov.save_model(converted, str(Path(tmp) / "model.xml"), compress_to_fp16=False)
    (Path(tmp) / LABELS_FILE).write_text(labels_text(names), encoding="utf-8")


_WRITERS = {"onnx": _write_onnx, "litert": _write_litert, "savedmodel": _write_savedmodel, "openvino": _write_openvino}
