"""The `cnnzoo` command: argument parsing over the library functions, one module per command.

- `app`: the parser and `main`; `args`: the argument helpers the commands share (`parse_shape`);
- `__main__`: `python -m cnnzoo.cli`;
- `listing` (`cnnzoo list`) and `info` (`cnnzoo info`): registry only, no TensorFlow;
- `demo`, `finetune`, `predict`, `evaluate` (accuracy, confusion matrix and top losses on a
  labelled folder), `tune`, `explain` (predictions, Grad-CAM and feature maps of images),
  `export` (a saved model to ONNX, LiteRT, SavedModel or OpenVINO) and `serve` (the model
  behind HTTP): each has `add_arguments(parser)` and `run(args) -> int`, and imports
  TensorFlow only inside `run`;
- `serve_options`: `serve`'s `--api-key`, `--insecure`, time-out and queue options, and the
  refusal to open a host other than loopback without a key.
"""


def main(argv=None):
    """Runs the `cnnzoo` command line; returns the exit status (see `cnnzoo.cli.app.main`)."""
    from cnnzoo.cli.app import main as run

    return run(argv)
