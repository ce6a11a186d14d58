"""`cnnzoo export MODEL OUT`: a saved model as ONNX, LiteRT, SavedModel or OpenVINO, checked in its runtime.

Prints what was written, its size, and how it compares with the Keras model
on real images (max abs difference, top-1 agreement, accuracy where the
images have labels); `--json` prints the same as JSON. A file that disagrees
beyond `--tolerance` is not kept and the command fails.
"""

from cnnzoo.cli.args import defaults_of

__all__ = ["add_arguments", "run"]


def add_arguments(parser):
    from cnnzoo.deploy.export import QUANTIZATIONS, export
    from cnnzoo.deploy.runtimes import FORMATS, SUFFIXES
    from cnnzoo.deploy.verify import DEFAULT_TOLERANCE

    default = defaults_of(export)
    from_suffix = ", ".join(f"{suffix}: {fmt}" for fmt, suffix in SUFFIXES.items())
    parser.add_argument("model", help="a saved .keras model (e.g. from `cnnzoo finetune`)")
    parser.add_argument("out", help="the file to write (.onnx, .tflite) or a directory (savedmodel, openvino)")
    parser.add_argument(
        "--format", choices=FORMATS, default=default["format"], help=f"default: from OUT's suffix ({from_suffix})"
    )
    parser.add_argument(
        "--quantize",
        choices=tuple(QUANTIZATIONS),
        default=default["quantize"],
        help="int8: post-training, calibrated on --images (onnx, litert); float16: litert",
    )
    parser.add_argument(
        "--images",
        default=default["verify_with"],
        metavar="DIR",
        help="images to check and calibrate on (default: held-out UCI digits + synthetic images)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=default["tolerance"],
        help=f"max abs difference allowed (default {DEFAULT_TOLERANCE[None]:g}, float16 "
        f"{DEFAULT_TOLERANCE['float16']:g}); int8: the fraction of top-1 labels that may differ "
        f"(default {DEFAULT_TOLERANCE['int8']:g})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def run(args):
    import json

    from cnnzoo.deploy.export import export

    result = export(
        args.model, args.out, args.format, verify_with=args.images, quantize=args.quantize, tolerance=args.tolerance
    )
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.summary())
    return 0
