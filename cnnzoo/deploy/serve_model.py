"""What `cnnzoo serve` runs: the model it was given, loaded once, and the forward pass that answers `/predict`.

A `.keras` path runs its verified ONNX export under `runtime="auto"`
(`cnnzoo.deploy.fast_runtime`), the Keras model kept for `/explain`; an exported
file runs in its own runtime; a `keras.Model` runs its compiled Keras call.
`runtime_facts` says which, for `/info` and the page.
"""

from pathlib import Path

from cnnzoo.errors import ConfigError

__all__ = ["load_model", "runtime_facts"]


def load_model(model, runtime="auto"):
    """`(keras model or None, forward, class names, (h, w), channels, facts for /info)` of what `create_app` got."""
    from cnnzoo.deploy.fast_runtime import fast_runtime, normalise_runtime
    from cnnzoo.deploy.inference import predictor
    from cnnzoo.deploy.runtimes import OnnxRuntime, usable_cores

    runtime, exported, source = normalise_runtime(runtime), None, None
    if isinstance(model, (str, Path)):
        from cnnzoo.deploy.runtimes import format_of, open_runtime

        path = Path(model).expanduser()
        source = str(path)
        kind = format_of(path)
        if kind not in (None, "keras"):  # an exported file, in its own runtime (cnnzoo.deploy.runtimes)
            runtime = open_runtime(path)
            facts = {
                "model": path.stem if path.is_file() else path.name,
                "file": source,
                "parameters": None,
                "runtime": runtime.format,
            }
            return None, runtime, list(runtime.class_names), runtime.input_size, runtime.channels, facts
        if path.suffix.lower() != ".keras":
            raise ConfigError(
                f"`model` must be a keras.Model, a saved .keras file or an exported model "
                f"(.onnx, .tflite, a SavedModel directory). Received: model={source!r}."
            )
        from cnnzoo.deploy.inference import _load

        exported = fast_runtime(path, runtime)  # runtime="auto": the verified ONNX export, else None (Keras)
        model = _load(path)  # the Keras model still answers /explain (Grad-CAM)
    elif runtime in ("onnx", "litert"):
        exported = fast_runtime(model, runtime)
    from cnnzoo.zoo.layers import class_names_of

    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or None in shape[1:] or shape[3] not in (1, 3):
        raise ConfigError(
            f"`model` must take fixed-size images [batch, height, width, 1 or 3]. Received: model input shape {shape}."
        )
    from cnnzoo.backend import name as backend_name

    facts = {"model": model.name, "file": source, "parameters": int(model.count_params()), "runtime": backend_name()}
    facts.update(runtime_facts(exported, backend_name()))
    if exported is not None and exported.format == "onnx":  # no spinning, the usable cores: measured (bench_serve.py)
        verified, exported = exported.verified, OnnxRuntime(exported.path, threads=usable_cores(), spinning=False)
        exported.verified = verified
    forward = exported or predictor(model)
    return model, forward, list(class_names_of(model)), (int(shape[1]), int(shape[2])), int(shape[3]), facts


def runtime_facts(exported, backend):
    """`/info`'s `runtime`, `verified` and `runtime_note` (what the page shows) for an exported runtime or Keras."""
    if exported is None:
        return {"runtime": backend, "verified": None, "runtime_note": f"Keras ({backend}, compiled call)"}
    v = exported.verified or {}
    verified = {k: v.get(k) for k in ("max_abs_diff", "top1_agreement", "images", "verified_on")}
    note = (
        f"{'ONNX Runtime' if exported.format == 'onnx' else exported.format}, verified against Keras on "
        f"{v.get('images')} images (max abs difference {v.get('max_abs_diff', float('nan')):.1g}, "
        f"top-1 agreement {v.get('top1_agreement', float('nan')):.1%})"
    )
    return {"runtime": exported.format, "verified": verified, "runtime_note": note}
