"""Loading: a saved `.keras` model (in Keras safe mode) and weights files into a built model.

`load` reads a model file and never runs code from it; `as_model` takes a model
or the path of one, as the workflows' `model` argument does;
`load_weights_into` fills a built model from a `.weights.h5` or `.keras` file
and `load_named_weights` from the named weights an entry declares (found,
fetched and checked by `cnnzoo.zoo.weights`). `cnnzoo.zoo.builders` builds the
models these fill.
"""

import warnings
from pathlib import Path

import keras

from cnnzoo.errors import ConfigError, DataNotFoundError, UnsafeModelError, WeightsError, WeightsNotFoundError
from cnnzoo.zoo import (
    layers,  # noqa: F401  (registers the cnnzoo> layers: a .keras file names them)
    presets,
)
from cnnzoo.zoo import weights as weights_lib
from cnnzoo.zoo.layers import expose_class_names

__all__ = ["load", "as_model", "load_weights_into", "load_named_weights"]


def load(path, compile=True):
    """Loads a `.keras` model saved from a zoo model, in Keras safe mode, or a preset.

    Args:
        path: str or `Path` of a `.keras` file; or a preset directory (`cnnzoo.save_preset`,
            or keras-hub's `save_to_preset` of an image classifier) or an
            `hf://owner/repo[@revision]` handle (`cnnzoo.zoo.presets.load_preset`).
        compile: bool; restore the optimizer and compile state as saved (a keras-hub
            preset has none: `cnnzoo.get(path)` compiles one).

    Returns:
        The `keras.Model`.

    Example:

    >>> model.save("birds.keras"); model = cnnzoo.load("birds.keras")  # doctest: +SKIP
    """
    if presets.is_reference(path):
        return presets.load_preset(path, compile=compile, argument="path")
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"`path` must be an existing .keras file. Received: path={str(path)!r}.")
    check_archive(path)
    with warnings.catch_warnings():
        # A model saved before its first training step has an unbuilt optimizer (2 scalar
        # variables; 4 with mixed_float16's loss scaling); Keras warns about that harmless case, which every
        # fresh `get()` hits.
        warnings.filterwarnings(
            "ignore", message=r"Skipping variable loading for optimizer .* saved optimizer has [24] variables"
        )
        try:
            model = keras.saving.load_model(path, compile=compile, safe_mode=True, custom_objects=_optimizers())
            return expose_class_names(model)  # `model.class_names`, from its head
        except ValueError as e:
            if "safe_mode" not in str(e):
                raise
            raise UnsafeModelError(
                f"`path` holds Python code (e.g. a Lambda layer), and cnnzoo loads models in Keras safe mode: it "
                f"never runs code from a model file. Rebuild the model from cnnzoo's layers (they serialize "
                f"without code), or, only if you trust whoever made the file, load it with "
                f"keras.saving.load_model(path, safe_mode=False). Received: path={str(path)!r}."
            ) from e


def check_archive(path):
    """Raises `WeightsError` unless `path` is a whole `.keras` archive (a zip holding config.json and weights).

    Keras reads a truncated or damaged file as "File not found" (for a file that exists); this says what is
    wrong with it. Every member's CRC is checked (the whole file is read once, as loading reads it anyway).
    """
    import zipfile

    fix = "Copy or save the model again. Received: path="
    try:
        with zipfile.ZipFile(path) as archive:
            names, bad = set(archive.namelist()), archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as e:
        raise WeightsError(
            f"`path` must be a whole .keras file (a zip archive); this one is truncated or is not one ({e}). "
            f"{fix}{str(path)!r}."
        ) from e
    if bad is not None:
        raise WeightsError(
            f"`path` is a damaged .keras file: its member {bad!r} fails its CRC check. {fix}{str(path)!r}."
        )
    missing = sorted({"config.json", "model.weights.h5"} - names)
    if missing:
        raise WeightsError(
            f"`path` must be a .keras file as Keras saves it, with config.json and model.weights.h5; this archive "
            f"lacks {', '.join(missing)}. {fix}{str(path)!r}."
        )


def _optimizers():
    """The optimizers a zoo model is compiled with, by the names a saved file gives them, as this backend's classes.

    A model compiled on PyTorch saves its optimizer as the class in Keras's private PyTorch optimizer module;
    Keras on another backend imports that module, hence PyTorch, to read it (with TensorFlow loaded, importing
    PyTorch's triton crashes the process). Keras looks the registered name up in `custom_objects` first, so the
    public classes given here are used on every backend: the file's optimizer state loads as it was saved.
    """
    return {
        "Adam": keras.optimizers.Adam,
        "AdamW": keras.optimizers.AdamW,
        "SGD": keras.optimizers.SGD,
        "RMSprop": keras.optimizers.RMSprop,
        "Nadam": keras.optimizers.Nadam,
    }


def as_model(model_or_path, argument="model", error=ConfigError):
    """A `keras.Model`, loading a `.keras` path in safe mode (uncompiled); clear errors otherwise.

    Args:
        model_or_path: a `keras.Model`, the str/`Path` of a `.keras` file, or a preset
            directory or `hf://` handle (`cnnzoo.zoo.presets.load_preset`).
        argument: the caller's argument name, for messages.
        error: the `cnnzoo.errors` class raised for an object that is neither.

    Returns:
        The `keras.Model`.

    Example:

    >>> as_model("runs/birds/bird_classifier.keras").name  # doctest: +SKIP
    'bird_classifier'
    """
    if presets.is_reference(model_or_path):
        return presets.load_preset(model_or_path, argument=argument)
    if isinstance(model_or_path, (str, Path)):
        path = Path(model_or_path).expanduser()
        if not path.is_file():
            raise DataNotFoundError(
                f"`{argument}` must be a keras.Model or an existing .keras file. "
                f"Received: {argument}={str(path)!r} (no such file)."
            )
        return load(path, compile=False)
    if not isinstance(model_or_path, keras.Model):
        raise error(
            f"`{argument}` must be a keras.Model or the path of a .keras file. Received: an object of "
            f"type {type(model_or_path).__name__}."
        )
    return model_or_path


def load_weights_into(model, path):
    """Loads weights from a `.weights.h5` or `.keras` file into `model`.

    Raises `WeightsNotFoundError` for a missing file and `WeightsError` when
    the file's shapes do not match, naming both.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(
            f"`weights` must be None, a registered weights name or an existing "
            f".weights.h5/.keras file. Received: weights={str(path)!r} (no such file)."
        )
    try:
        if path.name.endswith(".keras"):
            source = load(path, compile=False)
            model.set_weights(source.get_weights())
        else:
            model.load_weights(path)
    except (ValueError, KeyError) as e:
        raise WeightsError(
            f"`weights` file {str(path)!r} does not match `{model.name}` "
            f"({model.count_params():,} parameters): {e}. Build the model with the "
            f"same num_classes/input_shape/overrides as when the weights were saved."
        ) from e


def load_named_weights(model, spec, name):
    """Loads the weights an entry declares under `name` (fetched and verified by `cnnzoo.weights`).

    A `target = "backbone"` source (ImageNet weights of a keras.applications
    backbone) goes into `model.get_layer("backbone")`; a `"model"` source into
    the whole model.

    Args:
        model: the `keras.Model` built from `spec`.
        spec: its `ModelSpec`.
        name: str, a key of `spec.weights` (e.g. `"digits"`, `"imagenet"`).

    Returns:
        The `Path` of the file that was loaded.

    Example:

    >>> model = cnnzoo.get("digits_cnn", weights="digits")  # calls load_named_weights(model, spec, "digits")
    """
    source = weights_lib.named_source(spec, name)
    path = weights_lib.resolve(source, spec.name)
    target = model
    if source.target == "backbone":
        try:
            target = model.get_layer("backbone")
        except ValueError:
            raise WeightsError(
                f"`weights={name!r}` of `{spec.name}` holds backbone weights, and the model has no "
                f"layer named `backbone`. Build it with `cnnzoo.get({spec.name!r})`. "
                f"Received: weights={name!r}."
            ) from None
    load_weights_into(target, path)
    return path
