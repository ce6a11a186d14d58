"""`cnnzoo predict MODEL IMAGE...`: labels and probabilities for image files.

A directory argument stands for every image file under it. `--json` prints a
list of `{"source", "label", "probability", "top_k"}` objects for scripts.
MODEL may be an exported `.onnx` / `.tflite` file or SavedModel directory (run
in its own runtime, no TensorFlow needed for the first two). A `.keras` model
runs on its verified ONNX export, cached in `$CNNZOO_HOME/exports`, when the
`export` extra is installed (`--runtime auto`, the default; `tensorflow` forces
the compiled Keras call, `onnx` or `litert` that runtime).
"""

from cnnzoo.cli.args import defaults_of

__all__ = ["add_arguments", "run"]


def add_arguments(parser):
    from cnnzoo.deploy.inference import RUNTIMES, predict

    default = defaults_of(predict)
    parser.add_argument(
        "model",
        help="a saved .keras model (e.g. from `cnnzoo finetune`), or an exported .onnx, "
        ".tflite or SavedModel directory (`cnnzoo export`)",
    )
    parser.add_argument("images", nargs="+", help="image files, or directories of them")
    parser.add_argument(
        "--top-k", type=int, default=default["top_k"], help="labels to show per image (default %(default)s)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=default["runtime"],
        help="for a .keras model: auto (default: its verified ONNX export when the `export` extra is installed, "
        "else Keras), tensorflow/keras (the compiled Keras call), onnx or litert (that export, cached)",
    )
    parser.add_argument(
        "--tta",
        action="store_true",
        help="average the probabilities of each image and its mirror image (only where a flip "
        "keeps the class: not for digits or text)",
    )


def _expand(paths):
    from pathlib import Path

    from cnnzoo.data import IMAGE_EXTENSIONS

    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS))
        else:
            out.append(str(p))
    return out


def run(args):
    import json
    import sys
    from pathlib import Path

    from cnnzoo.deploy.inference import predict
    from cnnzoo.errors import DataError

    images = _expand(args.images)
    if not images:
        raise DataError(f"`images` must name image files or folders holding some. Received: images={args.images!r}.")
    predictions = predict(args.model, images, top_k=args.top_k, runtime=args.runtime, tta=args.tta)
    if args.json:
        print(json.dumps([p.to_dict() for p in predictions], indent=2))
        return 0
    width = max(len(p.source) for p in predictions)
    for p in predictions:
        print(f"{p.source:<{width}}  " + "   ".join(f"{label} {prob:.1%}" for label, prob in p.top_k))
    # a folder of class sub-folders is labelled: say where its accuracy is (on stderr: stdout stays data)
    folders = [d for d in args.images if Path(d).is_dir() and any(p.is_dir() for p in Path(d).iterdir())]
    if folders and str(args.model).endswith(".keras"):
        print(
            f"for the accuracy, the confusion matrix and the mistakes of a labelled folder: "
            f"cnnzoo evaluate {args.model} {folders[0]}",
            file=sys.stderr,
        )
    return 0
