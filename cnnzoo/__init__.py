"""cnnzoo: a Keras 3 model zoo of classic CNNs, with transfer learning and search.

The public API. Importing cnnzoo is cheap and never imports TensorFlow: the
functions that build models load Keras on first use (PEP 562 `__getattr__`).
The parts live in subpackages (docs/architecture.md): `zoo` (configs,
registry, layers, builders, loading, weights), `data`, `finetuning`, `tuning`,
`deploy` and `cli`.

Example:

>>> import cnnzoo
>>> cnnzoo.list_models("vgg*")
['vgg11', 'vgg13', 'vgg16', 'vgg19']
>>> model = cnnzoo.get("bird_classifier", num_classes=12)  # a compiled keras.Model
"""

import importlib

from cnnzoo.errors import (  # noqa: F401  (cheap, no TensorFlow)
    BackendError,
    CnnzooError,
    ConfigError,
    DataError,
    DataNotFoundError,
    DataWarning,
    DiskFullError,
    DuplicateModelError,
    ExplainWarning,
    ExportError,
    IntegrityError,
    MissingExtraError,
    PluginError,
    RunLockedError,
    TrainingWarning,
    UnknownModelError,
    UnknownWeightsError,
    UnsafeModelError,
    WeightsDownloadError,
    WeightsError,
    WeightsNotFoundError,
)
from cnnzoo.utils import console as _console
from cnnzoo.zoo.registry import info, list_models, register, spec  # noqa: F401

__version__ = "0.1.0"

# name -> module that defines it; imported on first access only.
_LAZY = {
    "get": "cnnzoo.zoo.builders",
    "build": "cnnzoo.zoo.builders",
    "load": "cnnzoo.zoo.loading",
    "save_preset": "cnnzoo.zoo.presets",
    "reset_classifier": "cnnzoo.zoo.heads",
    "features_model": "cnnzoo.zoo.features",
    "feature_info": "cnnzoo.zoo.features",
    "FeatureInfo": "cnnzoo.zoo.features",
    "finetune": "cnnzoo.finetuning.run",
    "Stage": "cnnzoo.finetuning.stages",
    "Recipe": "cnnzoo.finetuning.recipe",
    "find_lr": "cnnzoo.finetuning.lr_finder",
    "evaluate": "cnnzoo.finetuning.results",
    "data": "cnnzoo.data",
    "predict": "cnnzoo.deploy.inference",
    # "module:attribute" where a function is named like its module (`cnnzoo.deploy.export.export`)
    "export": "cnnzoo.deploy.export:export",
    "ExportResult": "cnnzoo.deploy.export",
    "hypermodel": "cnnzoo.tuning.space",
    "tune": "cnnzoo.tuning.api",
    "register_best": "cnnzoo.tuning.best",
    "explain": "cnnzoo.explain",
    "interpret": "cnnzoo.explain.interpretation",
    "Interpretation": "cnnzoo.explain.interpretation",
    # modules, as attributes (`cnnzoo.layers.ConvBlock`, `cnnzoo.weights.file_hash`)
    "layers": "cnnzoo.zoo.layers",
    "weights": "cnnzoo.zoo.weights",
    # where these modules lived in cnnzoo 0.1 (flat layout), kept as attributes for old code
    "config": "cnnzoo.zoo.config",
    "registry": "cnnzoo.zoo.registry",
    "stats": "cnnzoo.zoo.stats",
    "builders": "cnnzoo.zoo.builders",
    "inference": "cnnzoo.deploy.inference",
    "stages": "cnnzoo.finetuning.stages",
    "freezing": "cnnzoo.finetuning.freezing",
}

__all__ = [
    "list_models",
    "info",
    "spec",
    "register",
    "get",
    "build",
    "load",
    "save_preset",
    "reset_classifier",
    "features_model",
    "feature_info",
    "FeatureInfo",
    "finetune",
    "Stage",
    "Recipe",
    "find_lr",
    "evaluate",
    "interpret",
    "Interpretation",
    "predict",
    "export",
    "ExportResult",
    "hypermodel",
    "tune",
    "register_best",
    "data",
    "explain",
    "layers",
    "weights",
    "BackendError",
    "CnnzooError",
    "ConfigError",
    "DataError",
    "DataNotFoundError",
    "DataWarning",
    "DiskFullError",
    "DuplicateModelError",
    "PluginError",
    "RunLockedError",
    "TrainingWarning",
    "ExplainWarning",
    "UnsafeModelError",
    "MissingExtraError",
    "ExportError",
    "UnknownModelError",
    "UnknownWeightsError",
    "WeightsDownloadError",
    "WeightsError",
    "WeightsNotFoundError",
    "IntegrityError",
    "__version__",
]


class _RegisterLayersAfterKeras:
    """Registers the `cnnzoo>` layers as soon as Keras is imported, so that
    `import cnnzoo` followed by plain `keras.saving.load_model(path)` works
    without importing TensorFlow before it is needed."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        import importlib.util
        import sys

        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("keras")
        if spec is not None and spec.loader is not None:
            exec_module = spec.loader.exec_module

            def exec_then_register(module):
                exec_module(module)
                importlib.import_module("cnnzoo.zoo.layers")

            spec.loader.exec_module = exec_then_register
        return spec


class _TritonBeforeTensorFlow:
    """Under `KERAS_BACKEND=torch`, loads PyTorch's triton just before TensorFlow.

    triton and TensorFlow each link their own LLVM, and loading triton after TensorFlow crashes the
    process (`import tensorflow; import triton` segfaults; PythonOT/POT#839 works around the same). On the
    PyTorch backend cnnzoo still uses TensorFlow (tf.data), and PyTorch loads triton lazily, so the first
    cnnzoo call that reads data could otherwise kill the process.
    """

    def find_spec(self, fullname, path=None, target=None):
        import sys

        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)
        if _configured_backend() == "torch" and "triton" not in sys.modules:
            import importlib.util

            if importlib.util.find_spec("triton") is not None:
                importlib.import_module("triton")
        return None  # the usual finders import TensorFlow


def _configured_backend():
    """The Keras backend a process will use, read as Keras reads it (`KERAS_BACKEND`, then keras.json)."""
    import json
    import os
    from pathlib import Path

    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    try:
        return json.loads((home / "keras.json").read_text()).get("backend")
    except (OSError, ValueError, AttributeError):
        return None


def _register_layers_with_keras():
    import sys

    def installed(kind):  # by name: after `importlib.reload(cnnzoo)` the classes are new objects
        return any(type(f).__name__ == kind.__name__ for f in sys.meta_path)

    if "keras" in sys.modules:
        importlib.import_module("cnnzoo.zoo.layers")
    elif not installed(_RegisterLayersAfterKeras):
        sys.meta_path.insert(0, _RegisterLayersAfterKeras())
    if "tensorflow" not in sys.modules and not installed(_TritonBeforeTensorFlow):
        sys.meta_path.insert(0, _TritonBeforeTensorFlow())


_register_layers_with_keras()
_console.install()  # TensorFlow's start-up lines filtered out of stderr (cnnzoo.utils.console); first in sys.meta_path


def __getattr__(name):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'cnnzoo' has no attribute {name!r}")
    module_name, _, attribute = module_name.partition(":")
    module = importlib.import_module(module_name)
    if attribute:
        value = getattr(module, attribute)
    else:
        value = module if module_name.rsplit(".", 1)[-1] == name else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
