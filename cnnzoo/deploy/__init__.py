"""Taking a model out of training: fast in-process prediction (`cnnzoo.predict`).

- `inference`: `predict`, `Prediction`, `predictor` (a cached compiled forward pass).

Importing this package imports no TensorFlow.
"""
