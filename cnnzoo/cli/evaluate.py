"""`cnnzoo evaluate MODEL DATA [--out DIR]`: how a saved model does on a labelled image folder, and its mistakes.

Scores every image of DATA (a folder of class sub-folders, e.g. a test
folder: no split) with `cnnzoo.interpret`, prints the accuracy, per-class
precision and recall, the classes most confused and the worst mistakes, and
writes `confusion_matrix.png`, `top_losses.png` (the highest losses under
their Grad-CAM) and `metrics.json` into DIR (default
`runs/evaluate/<model name>`). `--json` prints the metrics for scripts.
"""

from cnnzoo.cli.args import defaults_of

__all__ = ["add_arguments", "run", "TOP_LOSSES", "MISTAKES_LISTED"]

TOP_LOSSES = 9  # fastai's plot_top_losses shows 9
MISTAKES_LISTED = 10


def add_arguments(parser):
    from cnnzoo.deploy.fast_runtime import RUNTIMES
    from cnnzoo.explain.interpretation import interpret

    default = defaults_of(interpret)
    parser.add_argument("model", help="a saved .keras model (e.g. from `cnnzoo finetune`)")
    parser.add_argument("data", help="an image folder with one sub-folder per class (e.g. a test folder)")
    parser.add_argument(
        "--out", default=None, help="directory for the pictures and metrics.json (default runs/evaluate/<model>)"
    )
    parser.add_argument(
        "--top-losses", type=int, default=TOP_LOSSES, help="images in the top-losses grid (default %(default)s)"
    )
    parser.add_argument("--batch-size", type=int, default=default["batch_size"], help="images per forward pass")
    parser.add_argument(
        "--tta",
        action="store_true",
        help="average the probabilities of each image and its mirror image (not for digits or text)",
    )
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON for scripts")
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=default["runtime"],
        help="auto (default: the verified ONNX export when the `export` extra is installed, else Keras), "
        "tensorflow/keras, onnx or litert",
    )


def run(args):
    import json
    from pathlib import Path

    from cnnzoo.errors import ConfigError
    from cnnzoo.explain.interpretation import KEEP, interpret

    if args.top_losses < 1:
        raise ConfigError(f"`--top-losses` must be a positive int. Received: --top-losses={args.top_losses}.")
    interp = interpret(
        args.model,
        args.data,
        batch_size=args.batch_size,
        tta=args.tta,
        keep=max(KEEP, args.top_losses),
        runtime=args.runtime,
    )
    out = Path(args.out) if args.out else Path("runs") / "evaluate" / Path(args.model).stem
    written = interp.save(out, k=args.top_losses)
    if args.json:
        print(
            json.dumps(
                {**interp.to_dict(args.top_losses), "written": {k: str(p) for k, p in written.items()}}, indent=2
            )
        )
        return 0
    print(f"{interp.model.name} on {interp.description}:")
    print(interp.report())
    confused = interp.most_confused()
    if confused:
        print("most confused: " + ", ".join(f"{t} as {p} ({n})" for t, p, n in confused[:MISTAKES_LISTED]))
    mistakes = interp.mistakes
    if len(mistakes):
        print(f"mistakes, highest loss first ({min(len(mistakes), MISTAKES_LISTED)} of {len(mistakes)}):")
    losses, predicted = interp.losses, interp.predicted
    for i in mistakes[:MISTAKES_LISTED]:
        where = interp.sources[i] if interp.sources is not None else f"image {i}"
        p = int(predicted[i])
        print(
            f"  {where}: true {interp.class_names[interp.labels[i]]}, predicted {interp.class_names[p]} "
            f"({interp.probabilities[i, p]:.1%}), loss {losses[i]:.2f}"
        )
    for path in written.values():
        print(f"wrote {path}")
    return 0
