"""keras-hub presets as zoo models: an image classifier or backbone preset, a zoo model's anatomy around it.

`from_keras_hub` loads a preset directory that keras-hub's `save_to_preset` wrote, with keras-hub's
own `from_preset`, and builds the zoo model `cnnzoo.finetune` knows how to train:

    image (raw 0-255 pixels) -> preprocess -> backbone (the keras-hub Backbone) -> head (ClassifierHead)

- `preprocess` is the preset's image converter (`image_converter.json`: `scale` and `offset`):
  cnnzoo's `Preprocess` where it is one of its modes, else `keras.layers.Rescaling`; a backbone
  preset without a converter gets none, as keras-hub's default converter does nothing.
- The input size is `input_shape` when given (the backbone is built at it), else the converter's
  `image_size`, else the backbone's own `image_shape`.
- An `ImageClassifier` preset's head (its pooling, dropout and `predictions` weights) becomes the
  `ClassifierHead`; its softmax gives the probabilities of keras-hub's logits. Another
  `num_classes`, or a backbone preset, gets a new, randomly initialised head.

`keras_hub` is the `keras_hub` extra (`pip install 'cnnzoo[keras_hub]'`).
"""

import json
import logging
import math

import keras

from cnnzoo.errors import ConfigError, WeightsError
from cnnzoo.utils.extras import require
from cnnzoo.zoo.layers import ClassifierHead, Preprocess

__all__ = ["from_keras_hub", "preprocess_layer", "TASK_FILE", "IMAGE_CONVERTER_FILE"]

log = logging.getLogger("cnnzoo")

TASK_FILE = "task.json"  # keras-hub's task config, beside the backbone's config.json
IMAGE_CONVERTER_FILE = "image_converter.json"
_MODES = {(1 / 255, 0.0): "rescale_0_1", (1 / 127.5, -1.0): "rescale_-1_1", (1.0, 0.0): "none"}


def from_keras_hub(path, source, num_classes=None, input_shape=None, head_required=True):
    """A zoo model from a keras-hub image classifier or backbone preset directory (module docstring).

    Args:
        path: `Path` of the preset directory.
        source: where it came from (`cnnzoo.zoo.presets.Source`: `argument`, `name`), for messages.
        num_classes: optional int; required for a backbone preset unless `head_required` is False.
        input_shape: optional (height, width, channels).
        head_required: False gives a backbone preset without `num_classes` a one-class placeholder head.

    Returns:
        An uncompiled Functional `keras.Model` named `source.name`.

    Example:

    >>> from_keras_hub(Path("resnet_tiny"), Source("resnet_tiny"), num_classes=10).output_shape  # doctest: +SKIP
    (None, 10)
    """
    keras_hub = require("keras_hub", "keras_hub", f"Loading the keras-hub preset {str(source.reference)!r}")
    task = _task(path, source)
    converter = _read(path / IMAGE_CONVERTER_FILE, source).get("config", {})
    config = _read(path / "config.json", source).get("config", {})
    shape = _shape(input_shape, converter, config, source)
    loader = keras_hub.models.ImageClassifier if task else keras_hub.models.Backbone
    try:
        loaded = loader.from_preset(str(path), image_shape=shape)
    except (ValueError, KeyError, TypeError) as e:
        raise WeightsError(
            f"`{source.argument}` is a keras-hub preset that keras-hub cannot load at input {shape}: "
            f"{str(e).splitlines()[0]} Check that its weights belong to its config.json (save it again with "
            f"save_to_preset), or pass another `input_shape`. Received: {source}."
        ) from e
    backbone = _fresh(loaded.backbone) if task else loaded
    _check_image_backbone(backbone, source)
    if task is None and num_classes is None and head_required:
        raise ConfigError(
            f"`num_classes` must be given for a keras-hub backbone preset (it has no classifier; keras-hub's "
            f"ImageClassifier.from_preset needs it too), e.g. cnnzoo.get(path, num_classes=10). "
            f"Received: num_classes=None for {source}."
        )
    classes = num_classes or (loaded.num_classes if task else 1)
    head = ClassifierHead(
        classes,
        pooling=getattr(loaded, "pooling", "avg") if task else "avg",
        dropout=getattr(loaded, "dropout", 0.0) if task else 0.0,
        pretrained=True,  # the backbone holds the preset's weights
        name="head",
    )
    inputs = keras.Input(shape=shape, name="image")
    x = preprocess_layer(converter.get("scale"), converter.get("offset"))(inputs)
    model = keras.Model(inputs, head(backbone(x)), name=source.name)
    if task and classes == loaded.num_classes:
        head.steps[-1].set_weights(loaded.get_layer("predictions").get_weights())
    elif task:
        log.info("%s: a new %d-class head replaces the preset's %d classes", source.name, classes, loaded.num_classes)
    return model


def _fresh(backbone):
    """A copy of a backbone the task's graph has called: fine-tuning reads the zoo model's chain from each layer's
    first call (`cnnzoo.finetuning.freezing.anatomy`), which must be in the zoo model."""
    copy = type(backbone).from_config(backbone.get_config())
    copy.set_weights(backbone.get_weights())
    return copy


def _task(path, source):
    """The task config of a classifier preset, None for a backbone preset; other tasks are refused."""
    if not (path / TASK_FILE).is_file():
        return None
    task = _read(path / TASK_FILE, source)
    import keras_hub

    cls = keras.saving.get_registered_object(str(task.get("registered_name")))
    if not (isinstance(cls, type) and issubclass(cls, keras_hub.models.ImageClassifier)):
        raise ConfigError(
            f"`{source.argument}` must be a keras-hub image classifier or backbone preset; its {TASK_FILE} is a "
            f"{task.get('class_name')!r} task. Load it with keras-hub itself. Received: {source}."
        )
    return task


def _read(path, source):
    """A JSON file of the preset as a dict ({} when it is absent); a clear error when it is not JSON."""
    if not path.is_file():
        return {}
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"`{source.argument}` is a keras-hub preset whose {path.name} cannot be read as JSON ({e}). Save it "
            f"again with save_to_preset. Received: {source}."
        ) from e
    return content if isinstance(content, dict) else {}


def _shape(input_shape, converter, config, source):
    channels = (config.get("image_shape") or [None, None, 3])[-1] or 3
    if input_shape is not None:
        shape = tuple(input_shape)
    elif converter.get("image_size"):
        shape = (*converter["image_size"], channels)
    else:
        shape = tuple(config.get("image_shape") or (None, None, None))
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ConfigError(
            f"`input_shape` must be given for this keras-hub preset, which fixes no image size (no "
            f"{IMAGE_CONVERTER_FILE} image_size, backbone image_shape {config.get('image_shape')}), e.g. "
            f"input_shape=(224, 224, 3). Received: input_shape={input_shape!r} for {source}."
        )
    return shape


def _check_image_backbone(backbone, source):
    outputs = backbone.outputs if isinstance(backbone, keras.Model) else []
    if len(outputs) != 1 or len(outputs[0].shape) != 4:
        raise ConfigError(
            f"`{source.argument}` must be a keras-hub image backbone with one feature-map output [batch, height, "
            f"width, channels]; {type(backbone).__name__} gives {[tuple(t.shape) for t in outputs]}. "
            f"Received: {source}."
        )


def preprocess_layer(scale=None, offset=None):
    """The `preprocess` layer for a keras-hub converter's `scale` and `offset`: `Preprocess` or `Rescaling`.

    Args:
        scale: None, a float, or one float per channel.
        offset: None, a float, or one float per channel.

    Returns:
        A Keras layer named `preprocess` that runs in float32.

    Example:

    >>> preprocess_layer(1 / 255).mode
    'rescale_0_1'
    """
    key = (1.0 if scale is None else scale, 0.0 if offset is None else offset)
    for (s, o), mode in _MODES.items():
        if all(isinstance(v, (int, float)) for v in key) and math.isclose(key[0], s) and math.isclose(key[1], o):
            return Preprocess(mode, name="preprocess", dtype="float32")
    return keras.layers.Rescaling(scale=key[0], offset=key[1], name="preprocess", dtype="float32")
