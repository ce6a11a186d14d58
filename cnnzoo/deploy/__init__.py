"""Taking a model out of training: fast prediction (`cnnzoo.predict`), export, and serving over HTTP.

- `inference`: `predict`, `Prediction`, `predictor` (a cached compiled forward pass);
- `export`: `cnnzoo.export` (ONNX, LiteRT, SavedModel, OpenVINO; int8/float16), `ExportResult`, `verify`;
- `export_process`: `cnnzoo.export` from the JAX or PyTorch backend, run by a TensorFlow-backend process;
- `verify`: the verification images and the comparison with the Keras model;
- `runtimes`: exported files in their own runtimes (`open_runtime`, `Runtime`);
- `exported_cache`: a `.keras` model's verified ONNX/LiteRT export cached in `$CNNZOO_HOME/exports` by its SHA-256;
- `fast_runtime`: `runtime="auto"`, that export when it agrees with Keras, else the compiled Keras call;
- `serve`: `cnnzoo serve`'s ASGI app (`create_app`, `serve`): the page, `/predict`, `/explain`, `/health`, `/info`;
- `serve_batch`: `Batcher`, concurrent requests batched into one forward pass;
- `serve_inputs`: an upload (raw body or multipart `file`) -> image pixels, or a 4xx with the reason;
- `page.html` (package data): the page `serve` answers at `/`, plain HTML and JS.

Importing this package imports no TensorFlow.
"""
