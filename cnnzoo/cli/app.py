"""The `cnnzoo` command: thin argument parsing over the library functions.

`cnnzoo list` and `cnnzoo info` never import TensorFlow; the subcommands that
train or predict import it when they run, without its start-up lines
(`cnnzoo.utils.console`; `--verbose` shows them). `cnnzoo --version` prints
the version.
"""

import argparse
import importlib
import sys

from cnnzoo.errors import CnnzooError

__all__ = ["main", "build_parser", "COMMANDS"]

# name -> (module, help). Each module has `add_arguments(parser)` and `run(args) -> int`, and
# imports TensorFlow only inside `run`, so building the parser stays cheap.
COMMANDS = {
    "list": ("cnnzoo.cli.listing", "list the zoo (no TensorFlow import)"),
    "info": ("cnnzoo.cli.info", "describe one model: parameters, FLOPs, layers (no TensorFlow import)"),
    "demo": ("cnnzoo.cli.demo", "train a zoo CNN on the built-in digits data and print its test accuracy"),
    "finetune": ("cnnzoo.cli.finetune", "fine-tune a zoo model on an image folder (resumable, staged)"),
    "predict": ("cnnzoo.cli.predict", "label image files with a saved or exported model (--json for scripts)"),
    "evaluate": (
        "cnnzoo.cli.evaluate",
        "score a saved model on a labelled image folder: accuracy, confusion matrix, top losses with Grad-CAM",
    ),
    "export": (
        "cnnzoo.cli.export",
        "export a saved model to ONNX, LiteRT, SavedModel or OpenVINO, checked in its runtime",
    ),
    "tune": ("cnnzoo.cli.tune", "search layer counts and widths with keras-tuner (the entry's [search] table)"),
    "explain": ("cnnzoo.cli.explain", "prediction, Grad-CAM overlay and feature maps of images (a saved model)"),
    "serve": ("cnnzoo.cli.serve", "serve a saved model over HTTP: a photo page, a JSON API, batched (the serve extra)"),
}


def build_parser(command=None):
    """The `cnnzoo` argument parser; building it imports no TensorFlow.

    Args:
        command: None for every command's arguments, or the one command whose
            arguments are added (`main` passes the command it runs: the others'
            defaults, read from the library's signatures, are not imported).
    """
    from cnnzoo import __version__

    parser = argparse.ArgumentParser(prog="cnnzoo", description="A Keras 3 zoo of classic CNNs.")
    parser.add_argument("--version", action="version", version=f"cnnzoo {__version__}")
    _add_verbose(parser, default=False)
    common = argparse.ArgumentParser(add_help=False)  # --verbose after the command too: `cnnzoo serve M --verbose`
    _add_verbose(common, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, parents=[common])
        p.set_defaults(command_module=module)
        if command is None or command == name:
            importlib.import_module(module).add_arguments(p)
    return parser


def _add_verbose(parser, default):
    parser.add_argument(
        "--verbose",
        action="store_true",
        default=default,
        help="show TensorFlow's start-up and C++ log lines (hidden by default)",
    )


def main(argv=None):
    """Runs the `cnnzoo` command line; returns the exit status."""
    from cnnzoo.utils import console

    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.verbose:
        console.uninstall()  # TensorFlow starts as it would without cnnzoo
    try:
        return importlib.import_module(args.command_module).run(args)
    except CnnzooError as e:
        print(f"cnnzoo: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `cnnzoo list | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
