"""`cnnzoo export MODEL OUT`: a saved model as ONNX, LiteRT, SavedModel or OpenVINO, checked in its runtime.

Prints what was written, its size, and how it compares with the Keras model
on real images (max abs difference, top-1 agreement, accuracy where the
images have labels); `--json` prints the same as JSON. A file that disagrees
beyond `--tolerance` is not kept and the command fails.
"""

__all__ = ["add_arguments", "run"]

FORMATS = ("onnx", "litert", "savedmodel", "openvino")  # cnnzoo.deploy.runtimes.FORMATS (no import here)


def add_arguments(parser):
    parser.add_argument("model", help="a saved .keras model (e.g. from `cnnzoo finetune`)")
    parser.add_argument("out", help="the file to write (.onnx, .tflite) or a directory (savedmodel, openvino)")
    parser.add_argument(
        "--format", choices=FORMATS, default=None, help="default: from OUT's suffix (.onnx: onnx, .tflite: litert)"
    )
    parser.add_argument(
        "--quantize",
        choices=("int8", "float16"),
        default=None,
        help="int8: post-training, calibrated on --images (onnx, litert); float16: litert",
    )
    parser.add_argument(
        "--images",
        default=None,
        metavar="DIR",
        help="images to check and calibrate on (default: held-out UCI digits + synthetic images)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="max abs difference allowed (default 1e-4, float16 1e-2); int8: the fraction of "
        "top-1 labels that may differ (default 0.02)",
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
