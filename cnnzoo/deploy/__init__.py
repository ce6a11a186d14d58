"""Taking a model out of training: fast prediction (`cnnzoo.predict`), export, and serving over HTTP.

- `inference`: `predict`, `Prediction`, `predictor` (a cached compiled forward pass);
- `export`: `cnnzoo.export` (ONNX, LiteRT, SavedModel, OpenVINO; int8/float16), `ExportResult`, `verify`;
- `export_process`: `cnnzoo.export` from the JAX or PyTorch backend, run by a TensorFlow-backend process;
- `verify`: the verification images and the comparison with the Keras model;
- `runtimes`: exported files in their own runtimes (`open_runtime`, `Runtime`);
- `exported_cache`: a `.keras` model's verified ONNX/LiteRT export cached in `$CNNZOO_HOME/exports` by its SHA-256;
- `fast_runtime`: `runtime="auto"`, that export when it agrees with Keras, else the compiled Keras call;
- `serve`: `cnnzoo serve`'s ASGI app (`create_app`, `serve`): the page, `/predict`, `/explain`, `/health`, `/info`;
- `serve_model`: the model `serve` was given, loaded once, and the forward pass answering `/predict` (`runtime_facts`);
- `serve_batch`: `Batcher`, concurrent requests batched into one forward pass;
- `serve_inputs`: an upload (raw body or multipart `file`) -> image pixels, or a 4xx with the reason;
- `serve_guard`: `Guard`, the app's ASGI middleware: the API key (401), the per-client share (429),
  body time-outs (408) and the bounded fair queue (503 with Retry-After); `Limits`;
- `serve_queue`: `FairQueue`, at most N uploads at work, each client address its fair share, round-robin;
- `serve_metrics`: `Metrics`, `GET /metrics` in the Prometheus text format;
- `page.html` (package data): the page `serve` answers at `/`, plain HTML and JS.

Importing this package imports no TensorFlow.
"""
