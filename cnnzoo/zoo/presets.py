"""Presets: a model as a directory in keras-hub's preset layout, written and read back.

`save_preset(model, preset_dir)` writes the files keras-hub's `save_to_preset` writes for a
backbone, under the same names, so `keras_hub.upload_preset` publishes the directory:

- `config.json`: the model's Keras config (`keras.saving.serialize_keras_object`), without its
  build config, as keras-hub writes a backbone's; it keeps the compile config of a compiled model,
  so `cnnzoo.load` restores the compile state as it does from a `.keras` file;
- `model.weights.h5`: its weights (`model.save_weights`), with `model.weights.h5.sha256` beside them
  (`cnnzoo.utils.integrity`): a damaged weights file raises `IntegrityError` naming it, never loads;
- `metadata.json`: keras-hub's fields (`keras_version`, `keras_hub_version`, `parameter_count`,
  `date_saved`, `tasks`) and cnnzoo's (`cnnzoo_version`, `name`, `input_shape`, `num_classes`,
  `class_names`, `preprocessing`);
- `image_converter.json`: a keras-hub `ImageConverter` config, what a raw image needs before it
  enters the model: a resize to its input size (a zoo model rescales pixels itself).

`load_preset(reference)` reads one back (`cnnzoo.get` and `cnnzoo.load` call it for a directory or
an `hf://owner/repo[@revision]` handle, which `cnnzoo.zoo.hub` fetches): a cnnzoo preset as it was
saved, or a keras-hub image classifier or backbone preset as a zoo model (`cnnzoo.zoo.kerashub`).
"""

import datetime
import json
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras

from cnnzoo import _compat
from cnnzoo.errors import ConfigError, UnsafeModelError, WeightsError, WeightsNotFoundError
from cnnzoo.utils import integrity
from cnnzoo.utils.extras import require
from cnnzoo.utils.files import atomic_save_dir, check_room
from cnnzoo.zoo import hub, registry
from cnnzoo.zoo.layers import ClassifierHead, Preprocess, class_names_of
from cnnzoo.zoo.precision import check_dtype, with_dtype

__all__ = [
    "save_preset",
    "load_preset",
    "is_reference",
    "preset_kind",
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "METADATA_FILE",
    "IMAGE_CONVERTER_FILE",
    "CNNZOO_VERSION",
    "Source",
]

log = logging.getLogger("cnnzoo")

# keras-hub's file names (keras_hub.src.utils.preset_utils)
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
SHARDED_WEIGHTS_FILE = "model.weights.json"  # keras-hub's index of sharded weights (`model_*.weights.h5`)
METADATA_FILE = "metadata.json"
IMAGE_CONVERTER_FILE = "image_converter.json"
CNNZOO_VERSION = "0.1.0"  # written to metadata.json; equals `cnnzoo.__version__` (tests/zoo/test_presets.py)
_KERAS_HUB_PREFIX = "keras_hub>"


def save_preset(model, preset_dir):
    """Saves a model as a preset directory in keras-hub's layout (module docstring).

    The directory is written beside its place and moved there once complete; a preset
    already there is replaced, any other non-empty directory is refused.

    Args:
        model: a `keras.Model` with a fixed input size (a zoo model, a fine-tuned one).
        preset_dir: str or `Path` of the directory to write.

    Returns:
        The `Path` of the preset directory.

    Example:

    >>> cnnzoo.save_preset(result.model, "presets/birds")  # doctest: +SKIP
    >>> cnnzoo.get("presets/birds")  # the same model, weights included  # doctest: +SKIP
    """
    if not isinstance(model, keras.Model):
        raise ConfigError(
            f"`model` must be a keras.Model (e.g. from `cnnzoo.get` or a fine-tuning result's `model`). "
            f"Received: model of type {type(model).__name__}."
        )
    shape = _input_shape(model)
    unsafe = [layer.name for layer in _compat.flatten_layers(model) if isinstance(layer, keras.layers.Lambda)]
    if unsafe:
        raise UnsafeModelError(
            f"`model` holds Python code (Lambda layers {unsafe}), which a preset cannot carry: cnnzoo loads presets "
            f"in Keras safe mode. Rebuild the model from cnnzoo's or Keras' layers. Received: model={model.name!r}."
        )
    target = _checked_target(preset_dir)
    config = keras.saving.serialize_keras_object(model)
    config.pop("build_config", None)
    files = {
        CONFIG_FILE: config,
        METADATA_FILE: _metadata(model, shape),
        IMAGE_CONVERTER_FILE: _image_converter(shape),
    }
    check_room(target / WEIGHTS_FILE, 2 * 4 * model.count_params() + 2**20)  # h5py cannot survive a failed write

    def write(tmp):
        tmp = Path(tmp)
        tmp.mkdir(parents=True)
        model.save_weights(tmp / WEIGHTS_FILE)
        integrity.write_sidecar(tmp / WEIGHTS_FILE)  # model.weights.h5.sha256, checked before the weights load
        for name, content in files.items():
            (tmp / name).write_text(json.dumps(content, indent=4) + "\n", encoding="utf-8")

    atomic_save_dir(target, write)
    log.info("saved %s as a preset in %s", model.name, target)
    return target


def _input_shape(model):
    shape = tuple(model.inputs[0].shape[1:]) if len(getattr(model, "inputs", None) or []) == 1 else None
    if shape is None or len(shape) != 3 or None in shape:
        raise ConfigError(
            f"`model` must take one fixed-size image input (height, width, channels) to be saved as a preset. "
            f"Received: model {model.name!r} with inputs {[tuple(t.shape) for t in model.inputs]}."
        )
    return tuple(int(d) for d in shape)


def _checked_target(preset_dir):
    target = Path(preset_dir).expanduser()
    if target.exists() and not target.is_dir():
        raise ConfigError(
            f"`preset_dir` must be a directory to write the preset into. Received: preset_dir={str(target)!r}, "
            f"which is a file."
        )
    if target.is_dir() and any(target.iterdir()) and not (target / CONFIG_FILE).is_file():
        raise ConfigError(
            f"`preset_dir` must be a new or empty directory, or a preset to replace: {str(target)!r} holds other "
            f"files ({', '.join(sorted(p.name for p in target.iterdir())[:5])}). Choose another directory. "
            f"Received: preset_dir={str(target)!r}."
        )
    return target


def _metadata(model, shape):
    """keras-hub's metadata fields, then cnnzoo's."""
    import importlib.metadata

    try:
        keras_hub_version = importlib.metadata.version("keras-hub")
    except importlib.metadata.PackageNotFoundError:
        keras_hub_version = None
    heads = [layer for layer in model.layers if isinstance(layer, ClassifierHead)]
    preprocess = [layer for layer in model.layers if isinstance(layer, Preprocess)]
    output = tuple(model.outputs[0].shape) if len(model.outputs) == 1 else ()
    return {
        "keras_version": keras.version(),
        "keras_hub_version": keras_hub_version,
        "parameter_count": model.count_params(),
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
        "tasks": ["ImageClassifier"] if heads else [],
        "cnnzoo_version": CNNZOO_VERSION,
        "name": model.name,
        "input_shape": list(shape),
        "num_classes": heads[-1].num_classes if heads else (int(output[-1]) if len(output) == 2 else None),
        "class_names": class_names_of(model) if heads else None,
        "preprocessing": preprocess[0].mode if preprocess else None,
    }


def _image_converter(shape):
    """keras-hub's `ImageConverter` config for raw images into this model: a resize, no rescaling."""
    return {
        "module": "keras_hub.layers",
        "class_name": "ImageConverter",
        "config": {
            "name": "image_converter",
            "trainable": True,
            "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}},
            "image_size": [shape[0], shape[1]],
            "scale": None,  # the model rescales 0-255 pixels itself (its `preprocess` layer)
            "offset": None,
            "interpolation": "bilinear",
            "antialias": False,
            "crop_to_aspect_ratio": False,  # cnnzoo's pipelines resize without cropping
            "pad_to_aspect_ratio": False,
            "bounding_box_format": "yxyx",
        },
        "registered_name": "keras_hub>ImageConverter",
    }


def is_reference(value):
    """True for what `load_preset` reads: an `hf://` handle or a directory, not a zoo name or a `.keras` file.

    A `Path`, or a str with a path separator, that is not a file counts even when it does not exist
    (`load_preset` then says so); a registered zoo name never does.

    Example:

    >>> is_reference("hf://someone/birds"), is_reference("lenet5"), is_reference("runs/x/lenet5.keras")
    (True, False, False)
    """
    if isinstance(value, str) and "://" in value:
        return True
    if not isinstance(value, (str, os.PathLike)):
        return False
    text = os.fspath(value)
    if text.endswith((".keras", ".h5")) or Path(text).expanduser().is_file():
        return False
    if isinstance(value, str) and value in registry.list_models():
        return False
    return not isinstance(value, str) or "/" in text or os.sep in text or Path(text).expanduser().is_dir()


def load_preset(
    reference, num_classes=None, input_shape=None, dtype=None, compile=False, head_required=True, argument="name"
):
    """Loads a preset directory or `hf://owner/repo[@revision]` handle as a zoo model.

    Args:
        reference: str or `Path`: a directory `cnnzoo.save_preset` or keras-hub's
            `save_to_preset` wrote, or an `hf://` handle of a Hugging Face Hub repository
            holding one (fetched into the Hugging Face cache: `cnnzoo.zoo.hub`).
        num_classes: optional int. A cnnzoo preset must keep its own; a keras-hub classifier
            gets a new head with another count; a keras-hub backbone needs it.
        input_shape: optional (height, width, channels). A cnnzoo preset must keep its own;
            a keras-hub backbone is built at it.
        dtype: optional precision policy (`cnnzoo.zoo.precision.check_dtype`).
        compile: bool; restore the compile state a cnnzoo preset saved.
        head_required: False gives a keras-hub backbone without `num_classes` a one-class
            placeholder head (`cnnzoo.finetune` gives it the data's head).
        argument: the caller's argument name, for messages.

    Returns:
        The `keras.Model`, its weights loaded.

    Example:

    >>> load_preset("hf://someone/birds@v1").name  # doctest: +SKIP
    'birds'
    """
    policy = check_dtype(dtype)
    source = Source(reference, argument)
    path = _local(source)
    kind = preset_kind(path, source)
    if kind == "keras_hub":
        from cnnzoo.zoo import kerashub

        model = kerashub.from_keras_hub(path, source, num_classes, input_shape, head_required)
    else:
        model = _load_cnnzoo(path, source, compile)
        _check_same(model, source, num_classes, input_shape)
    return with_dtype(model, policy)


@dataclass(frozen=True)
class Source:
    """Where a preset comes from, for messages: `reference` as the caller gave it, under `argument`."""

    reference: object
    argument: str = "name"

    def __str__(self):
        return f"{self.argument}={str(self.reference)!r}"

    @property
    def name(self):
        """A Keras model name for it: `hf://someone/Birds-v2@main` -> `birds_v2`."""
        text = str(self.reference).split("://", 1)[-1].split("@", 1)[0].rstrip("/\\")
        name = re.sub(r"[^0-9a-zA-Z_]+", "_", re.split(r"[/\\]", text)[-1]).strip("_").lower()
        return name or "preset"


def _local(source):
    if isinstance(source.reference, str) and "://" in source.reference:
        return hub.fetch(source, _check_listing)
    path = Path(source.reference).expanduser()
    if not path.is_dir():
        raise WeightsNotFoundError(
            f"`{source.argument}` names no preset directory: {str(path)!r} does not exist. Give a preset directory "
            f"(cnnzoo.save_preset writes one) or an hf://owner/repo handle. Received: {source}."
        )
    return path


def _check_listing(files, source):
    """Refuses a Hub repository that holds no preset, before anything of it is downloaded."""
    files = set(files)
    if CONFIG_FILE not in files or not files & {WEIGHTS_FILE, SHARDED_WEIGHTS_FILE}:
        raise ConfigError(
            f"`{source.argument}` must be a cnnzoo or keras-hub preset, with {CONFIG_FILE} and {WEIGHTS_FILE} (as "
            f"cnnzoo.save_preset and keras-hub's save_to_preset write them); the repository holds "
            f"{sorted(files)[:8]}. Publish a preset directory there. Received: {source}."
        )


def _json(path, source):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"`{source.argument}` is a preset whose {path.name} cannot be read as JSON ({e}). Save the preset "
            f"again. Received: {source}."
        ) from e


def preset_kind(path, source=None):
    """`"cnnzoo"` or `"keras_hub"`: which library wrote the preset directory at `path`; clear errors otherwise.

    Args:
        path: str or `Path` of the directory.
        source: optional `Source`, for messages.

    Returns:
        `"cnnzoo"` or `"keras_hub"`.

    Example:

    >>> preset_kind("presets/birds")  # doctest: +SKIP
    'cnnzoo'
    """
    path = Path(path)
    source = source or Source(path)
    present = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    if CONFIG_FILE not in present:
        raise WeightsNotFoundError(
            f"`{source.argument}` must be a preset directory holding {CONFIG_FILE}, {WEIGHTS_FILE} and "
            f"{METADATA_FILE} (as cnnzoo.save_preset and keras-hub's save_to_preset write them); it has no "
            f"{CONFIG_FILE}. Received: {source} with files {present[:8]}."
        )
    config = _json(path / CONFIG_FILE, source)
    metadata = _json(path / METADATA_FILE, source) if METADATA_FILE in present else {}
    registered = str(config.get("registered_name")) if isinstance(config, dict) else ""
    if registered.startswith(_KERAS_HUB_PREFIX):
        kind = "keras_hub"
    elif isinstance(metadata, dict) and "cnnzoo_version" in metadata and registered == "Functional":
        kind = "cnnzoo"
    else:
        raise ConfigError(
            f"`{source.argument}` must be a cnnzoo or keras-hub preset, and {_looks_like(config, metadata)}. "
            f"Save it with cnnzoo.save_preset or keras-hub's save_to_preset (another library's files need its "
            f"own loader). Received: {source}."
        )
    if WEIGHTS_FILE not in present and SHARDED_WEIGHTS_FILE not in present:
        raise WeightsNotFoundError(
            f"`{source.argument}` is a {kind} preset without its weights: {WEIGHTS_FILE} is missing. Copy or "
            f"save the whole preset directory again. Received: {source} with files {present[:8]}."
        )
    return kind


def _looks_like(config, metadata):
    """What a preset that is neither cnnzoo's nor keras-hub's holds, for the error."""
    if isinstance(config, dict) and "model_type" in config:
        return f"its {CONFIG_FILE} is a Transformers config (model_type={config['model_type']!r})"
    if isinstance(config, dict) and "architecture" in config:
        return f"its {CONFIG_FILE} is a timm config (architecture={config['architecture']!r})"
    if isinstance(metadata, dict) and metadata and "cnnzoo_version" not in metadata:
        return f"its {METADATA_FILE} was written by another library (fields {sorted(metadata)[:6]})"
    if not metadata:
        return f"it has no {METADATA_FILE} naming cnnzoo, and its {CONFIG_FILE} is no keras-hub model"
    registered = config.get("registered_name") if isinstance(config, dict) else None
    return f"its {CONFIG_FILE} describes {registered!r}, not a Functional zoo model"


def _load_cnnzoo(path, source, compile):
    fix = f"save it again with cnnzoo.save_preset, or copy the preset again from where it came from ({source})"
    integrity.verify(path / WEIGHTS_FILE, "preset's weights file", fix=fix)  # before anything is built from it
    config = _json(path / CONFIG_FILE, source)
    if not compile:
        config.pop("compile_config", None)
    if _KERAS_HUB_PREFIX in json.dumps(config):  # a fine-tuned keras-hub backbone: its classes must be registered
        require("keras_hub", "keras_hub", f"Loading the preset {str(source.reference)!r} (a keras-hub backbone)")
    try:
        model = keras.saving.deserialize_keras_object(config, safe_mode=True)
    except (ValueError, TypeError, KeyError) as e:
        if "safe_mode" in str(e):
            raise UnsafeModelError(
                f"`{source.argument}` is a preset holding Python code (e.g. a Lambda layer), and cnnzoo loads "
                f"presets in Keras safe mode: it never runs code from a file. Received: {source}."
            ) from e
        raise ConfigError(
            f"`{source.argument}` is a preset whose {CONFIG_FILE} does not describe a Keras model ({e}). Save it "
            f"again with cnnzoo.save_preset. Received: {source}."
        ) from e
    try:
        with warnings.catch_warnings():  # a compiled model's file holds its optimizer's step count and rate
            warnings.filterwarnings("ignore", message=r"Skipping variable loading for optimizer")
            model.load_weights(path / WEIGHTS_FILE)
    except (ValueError, KeyError, OSError) as e:
        raise WeightsError(
            f"`{source.argument}` is a preset whose {WEIGHTS_FILE} does not match its {CONFIG_FILE} "
            f"({model.count_params():,} parameters): {str(e).splitlines()[0]} Save the model and its weights "
            f"together with cnnzoo.save_preset. Received: {source}."
        ) from e
    return model


def _check_same(model, source, num_classes, input_shape):
    shape = tuple(model.inputs[0].shape[1:])
    if input_shape is not None and tuple(input_shape) != shape:
        raise ConfigError(
            f"`input_shape` must be the preset's {shape} (its weights are for that size), or be left out. "
            f"Received: input_shape={tuple(input_shape)!r} for {source}."
        )
    classes = int(model.outputs[0].shape[-1])
    if num_classes is not None and num_classes != classes:
        raise ConfigError(
            f"`num_classes` must be the preset's {classes}, or be left out: to train it on other classes, "
            f"fine-tune it (`cnnzoo.finetune(preset, data)` gives it a head for the data's classes). "
            f"Received: num_classes={num_classes!r} for {source}."
        )
