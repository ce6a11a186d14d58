"""Taking a model out of training: fast in-process prediction (`cnnzoo.predict`).

- `inference`: `predict`, `Prediction`, `predictor` (a cached compiled forward pass).
- `export`: `cnnzoo.export` (ONNX, LiteRT, SavedModel, OpenVINO; int8/float16), `ExportResult`, `verify`;
- `verify`: the verification images and the comparison with the Keras model;
- `runtimes`: exported files in their own runtimes (`open_runtime`, `Runtime`);
- `exported_cache`: a `.keras` model's ONNX/LiteRT export cached beside it (`predict(runtime=...)`).

Importing this package imports no TensorFlow.
"""
