"""Exported models run in their own runtimes: ONNX Runtime, LiteRT, TensorFlow (SavedModel), OpenVINO.

`open_runtime(path)` gives a `Runtime`: `runtime(batch)` takes raw 0-255
float32 images `[N, H, W, C]` (preprocessing is inside the exported graph) and
returns the softmax probabilities; `runtime.class_names` are the labels the
file carries (ONNX metadata, a `labels.txt` inside the `.tflite` file or the
SavedModel's assets); `runtime.input_size` and `runtime.channels` its input.
Each runtime's package is imported when a file is opened, never on import.
"""

import json
import os
import threading
import zipfile
from pathlib import Path

import numpy as np

from cnnzoo.errors import ConfigError, DataNotFoundError
from cnnzoo.utils import integrity
from cnnzoo.utils.extras import require

__all__ = [
    "FORMATS",
    "SUFFIXES",
    "LABELS_KEY",
    "Runtime",
    "format_of",
    "open_runtime",
    "read_labels_text",
    "labels_text",
    "require_openvino",
]

FORMATS = ("onnx", "litert", "savedmodel", "openvino")
SUFFIXES = {"onnx": ".onnx", "litert": ".tflite"}  # the two single-file formats
LABELS_KEY = "cnnzoo.class_names"  # ONNX metadata_props key (a JSON list) and OpenVINO rt_info path
LABELS_FILE = "labels.txt"  # inside a .tflite (an appended zip, as TFLite metadata packs associated files),
#                             in a SavedModel's assets/ and beside an OpenVINO model.xml
_OPENVINO_XML = "model.xml"


def format_of(path):
    """The export format of a file or directory: `"onnx"`, `"litert"`, `"savedmodel"`, `"openvino"`,
    `"keras"`, or None when it is none of them.

    Example:

    >>> format_of("model.onnx")
    'onnx'
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".tflite":
        return "litert"
    if suffix in (".keras", ".h5"):
        return "keras"
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "savedmodel"
        if (path / _OPENVINO_XML).is_file():
            return "openvino"
    return None


def labels_text(class_names):
    """The `labels.txt` form of class names: one per line."""
    return "".join(f"{name}\n" for name in class_names)


def read_labels_text(text):
    """Class names from a `labels.txt` text (one per line; a trailing newline is not a class)."""
    return text[:-1].split("\n") if text.endswith("\n") else text.split("\n")


def require_openvino(purpose):
    """Imports `openvino` or raises `MissingExtraError` naming the `openvino` extra."""
    return require("openvino", "openvino", purpose)


class Runtime:
    """A loaded exported model: `runtime(batch) -> probabilities`.

    Attributes:
        format: `"onnx"`, `"litert"`, `"savedmodel"` or `"openvino"`.
        path: the file or directory it was loaded from.
        class_names: the labels stored with the file (`"0"`, `"1"`, ... when it has none).
        input_size: `(height, width)` of its input.
        channels: 1 or 3.
        verified: for a cached export of a `.keras` model, how it compared with
            Keras (`cnnzoo.deploy.exported_cache.read_record`); else None.
    """

    format = None

    def __init__(self, path):
        self.path = Path(path)
        self.verified = None
        self.class_names = []
        self.input_size = None
        self.channels = None

    def __call__(self, batch, batch_size=32):
        """Probabilities `[N, classes]` for raw 0-255 images `[N, H, W, C]`, `batch_size` at a time."""
        batch = np.ascontiguousarray(batch, np.float32)
        if 0 < len(batch) <= batch_size:
            return self.run(batch)
        outs = [self.run(batch[start : start + batch_size]) for start in range(0, len(batch), batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0, len(self.class_names)), np.float32)

    def run(self, batch):  # pragma: no cover - each runtime defines it
        raise NotImplementedError

    def _set_input(self, shape, num_classes, labels):
        shape = tuple(shape)
        if (
            len(shape) != 4
            or not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape[1:])
            or shape[3] not in (1, 3)
        ):
            raise ConfigError(
                f"`model` must take fixed-size images [batch, height, width, 1 or 3]. "
                f"Received: {self.format} file {str(self.path)!r} with input shape {shape}."
            )
        self.input_size, self.channels = (int(shape[1]), int(shape[2])), int(shape[3])
        self.class_names = list(labels) if labels else [str(i) for i in range(int(num_classes))]

    def __repr__(self):
        return (
            f"<{type(self).__name__} {str(self.path)!r} input={self.input_size}x{self.channels} "
            f"classes={len(self.class_names)}>"
        )


def usable_cores():
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# ONNX Runtime session settings, each measured against ORT's defaults side by side
# (benchmarks/bench_runtime.py, docs/benchmarks.md "Runtime auto"). Intra-op threads: ORT's default
# (its own count of physical cores, threads pinned) was faster for one image than an explicit count
# of the usable cores (0.22 against 0.33 ms and 0.21 against 0.29 ms at 32x32, two runs), so it is
# kept, except where this process may use fewer cores than the machine has (an affinity mask, a
# container's cpuset): then the usable cores, so ORT does not oversubscribe them. Graph optimisation
# stays at ORT's default (all: basic and extended were 1.5-2x slower on batches), the memory arena
# stays on, and there is no io_binding (slower than a plain run for one image in both runs). Spinning
# (idle intra-op threads busy-waiting for the next call): kept for small inputs (off was 2-10x slower
# for one 32x32 image), off above `SPIN_MAX_PIXELS` (off was 1.5-2x faster at 224x224, one image and
# 32, in three runs on the shared 2-core machine).
ORT_SETTINGS = {"intra_op_threads": "ORT default, or the usable cores when fewer", "memory_arena": True}
SPIN_MAX_PIXELS = 64 * 64


def ort_threads():
    """Intra-op threads for ONNX Runtime: 0 (ORT's default) unless this process may use fewer cores than exist."""
    usable = usable_cores()
    return usable if usable < (os.cpu_count() or usable) else 0


class OnnxRuntime(Runtime):
    format = "onnx"

    def __init__(self, path, threads=None, spinning=None):
        """`spinning`: None decides by the input size (`SPIN_MAX_PIXELS`); False for a server's runtime."""
        super().__init__(path)
        self.session = self._session(path, threads, spinning)
        shape = self.session.get_inputs()[0].shape
        large = all(isinstance(d, int) for d in shape[1:3]) and shape[1] * shape[2] > SPIN_MAX_PIXELS
        if spinning is None and large:
            self.session = self._session(path, threads, False)
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name = inp.name
        labels = self.session.get_modelmeta().custom_metadata_map.get(LABELS_KEY)
        self._set_input(
            [d if isinstance(d, int) else -1 for d in inp.shape], out.shape[-1], json.loads(labels) if labels else None
        )

    @staticmethod
    def _session(path, threads, spinning):
        ort = require("onnxruntime", "export", "Running .onnx files")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if spinning is False:  # idle intra-op threads sleep instead of busy-waiting for the next call
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.intra_op_num_threads = int(threads or ort_threads())
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_cpu_mem_arena = ORT_SETTINGS["memory_arena"]
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(self, batch):
        return self.session.run(None, {self.input_name: batch})[0]


class LiteRTRuntime(Runtime):
    format = "litert"

    def __init__(self, path, threads=None):
        super().__init__(path)
        require("ai_edge_litert", "export", "Running .tflite files")
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count())
        self.lock = threading.Lock()  # an Interpreter runs one batch at a time
        self.interpreter.allocate_tensors()
        inp, out = self.interpreter.get_input_details()[0], self.interpreter.get_output_details()[0]
        self.input_index, self.output_index = inp["index"], out["index"]
        self.batch = int(inp["shape"][0])
        self._set_input(inp["shape"], out["shape"][-1], _tflite_labels(path))

    def run(self, batch):
        with self.lock:
            if len(batch) != self.batch:
                self.interpreter.resize_tensor_input(self.input_index, batch.shape, strict=False)
                self.interpreter.allocate_tensors()
                self.batch = len(batch)
            self.interpreter.set_tensor(self.input_index, batch)
            self.interpreter.invoke()
            return self.interpreter.get_tensor(self.output_index).copy()


def _tflite_labels(path):
    try:
        with zipfile.ZipFile(path) as z:
            return read_labels_text(z.read(LABELS_FILE).decode("utf-8"))
    except (zipfile.BadZipFile, KeyError):
        beside = Path(path).with_suffix(".labels.txt")  # what a tool that cannot keep the zip may write
        return read_labels_text(beside.read_text("utf-8")) if beside.is_file() else None


class SavedModelRuntime(Runtime):
    format = "savedmodel"

    def __init__(self, path):
        super().__init__(path)
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))
        self._loaded = loaded  # keeps the variables alive
        self.fn = loaded.signatures["serving_default"]
        specs = self.fn.structured_input_signature[1]
        self.input_name, spec = next(iter(specs.items()))
        ((self.output_name, out),) = self.fn.structured_outputs.items()
        labels = Path(path) / "assets" / LABELS_FILE
        labels = read_labels_text(labels.read_text("utf-8")) if labels.is_file() else None
        self._set_input([-1 if d is None else d for d in spec.shape.as_list()], out.shape[-1], labels)

    def run(self, batch):
        return self.fn(**{self.input_name: batch})[self.output_name].numpy()


class OpenVINORuntime(Runtime):
    format = "openvino"

    def __init__(self, path):
        super().__init__(path)
        ov = require_openvino("Running OpenVINO models")
        core = ov.Core()
        model = core.read_model(str(Path(path) / _OPENVINO_XML))
        labels = Path(path) / LABELS_FILE
        labels = read_labels_text(labels.read_text("utf-8")) if labels.is_file() else None
        shape = [d.get_length() if d.is_static else -1 for d in model.inputs[0].get_partial_shape()]
        # The CPU plugin computes in bfloat16 where the CPU has bf16 units unless asked for float32: 1e-3 off the
        # Keras answers on such a CPU (measured), 7e-8 with the hint
        self.compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        self.lock = threading.Lock()
        self._set_input(shape, model.outputs[0].get_partial_shape()[-1].get_length(), labels)

    def run(self, batch):
        with self.lock:
            return np.asarray(self.compiled(batch)[0])


_RUNTIMES = {"onnx": OnnxRuntime, "litert": LiteRTRuntime, "savedmodel": SavedModelRuntime, "openvino": OpenVINORuntime}


def open_runtime(path, format=None):
    """Loads an exported model in its own runtime.

    Args:
        path: a `.onnx` file, a `.tflite` file, a SavedModel directory or an
            OpenVINO directory (written by `cnnzoo.export`).
        format: optional, one of `FORMATS`; found from the path by default.

    Returns:
        A `Runtime`.

    Raises:
        MissingExtraError: the runtime's package is not installed.
        IntegrityError: the file (or directory) does not match its `<path>.sha256` written by
            `cnnzoo.export`; nothing was loaded from it.

    Example:

    >>> runtime = open_runtime("digits.onnx")  # doctest: +SKIP
    >>> runtime(np.zeros((2, 8, 8, 1), "float32")).shape  # doctest: +SKIP
    (2, 10)
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataNotFoundError(
            f"`model` must be an existing exported model (.onnx, .tflite, a SavedModel "
            f"directory). Received: model={str(path)!r} (no such file)."
        )
    format = format or format_of(path)
    integrity.verify(path, "exported model", fix=f"export it again with cnnzoo.export (or `cnnzoo export`) to {path}")
    if format not in _RUNTIMES:
        raise ConfigError(
            f"`model` must be a .keras, .onnx or .tflite file, a SavedModel directory or an "
            f"OpenVINO directory (model.xml). Received: model={str(path)!r}."
        )
    return _RUNTIMES[format](path)
