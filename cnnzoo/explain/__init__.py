"""See inside a CNN: convolution by hand, feature maps, filters, Grad-CAM.

- `convolution`: `convolve` (true convolution, equal to `numpy.convolve`),
  `correlate` (deep learning's "convolution", equal to `keras.layers.Conv2D`),
  the named classic `kernels` (NumPy only);
- `features`: `feature_maps` (what each conv and pool layer outputs for an
  image) and `plot_feature_maps` (one PNG grid per layer);
- `filter_images`: `filters` (first-layer kernels as tiles, deeper filters by
  activation maximisation);
- `gradcam`: `grad_cam` (where the model looked), `overlay`, and `heatmaps` (the maps
  with how much the score depends on them: vanishing gradients warn, `cnnzoo.ExplainWarning`);
- `gradcam_picture`: Grad-CAM drawn readable (`gradcam_picture`: enlarged to 224 pixels or more,
  titled with the class and its probability, a colour bar, a note when the map is noise), and
  `overlay`;
- `interpretation`: `cnnzoo.interpret` and `Interpretation` (accuracy, per-class precision and
  recall, confusion matrix, most confused classes, top losses with Grad-CAM);
  `interpretation_plots` draws them and `evaluation_data` reads any labelled `data` whole;
- `receptive`: `receptive_fields` (no TensorFlow);
- `translation`: `translation_experiment`;
- `taps`: the machinery that reaches layers inside `ConvBlock`s and nested
  backbones;
- `inputs`: images taken as `cnnzoo.predict` takes them (paths, PIL images,
  arrays), as a batch at the model's input size or at their own size.

Importing this package never imports TensorFlow; each name loads its module on
first use (PEP 562).

Example:

>>> from cnnzoo import explain
>>> explain.convolve([1.0, 1.0, 1.0], [1.0, 1.0, 1.0], mode="full")
array([1., 2., 3., 2., 1.])
"""

import importlib

# name -> module that defines it; imported on first access only.
_LAZY = {
    "convolve": "cnnzoo.explain.convolution",
    "correlate": "cnnzoo.explain.convolution",
    "kernels": "cnnzoo.explain.convolution",
    "kernel": "cnnzoo.explain.convolution",
    "feature_maps": "cnnzoo.explain.features",
    "plot_feature_maps": "cnnzoo.explain.features",
    "filters": "cnnzoo.explain.filter_images",
    "grad_cam": "cnnzoo.explain.gradcam",
    "interpret": "cnnzoo.explain.interpretation",
    "Interpretation": "cnnzoo.explain.interpretation",
    "overlay": "cnnzoo.explain.gradcam_picture",
    "receptive_fields": "cnnzoo.explain.receptive",
    "translation_experiment": "cnnzoo.explain.translation",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'cnnzoo.explain' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
