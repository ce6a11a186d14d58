"""`cnnzoo serve MODEL`: the model behind HTTP on 127.0.0.1:8000 (a page, a JSON API, Grad-CAM).

`POST /predict` takes an image (raw body or multipart `file`) and answers the
top-k labels; `GET /` is a page to drop photos on; `GET /health`, `GET /info`;
`POST /explain` answers a Grad-CAM overlay PNG. Concurrent requests share
forward passes (`--max-batch`, `--max-delay-ms`). Needs the `serve` extra.

`--api-key` (or `CNNZOO_API_KEY`) makes every route but the page need
`Authorization: Bearer <key>`; a host other than loopback refuses to start
without one unless `--insecure` is given (`cnnzoo.cli.serve_options`).
"""

import gc

from cnnzoo.cli.args import defaults_of
from cnnzoo.cli.serve_options import add_guard_arguments, guard_options

__all__ = ["add_arguments", "run", "gradcam_explainer", "build_app"]


def add_arguments(parser):
    from cnnzoo.deploy.fast_runtime import RUNTIMES
    from cnnzoo.deploy.serve import create_app, serve

    app, server = defaults_of(create_app), defaults_of(serve)
    parser.add_argument("model", help="a saved .keras model (e.g. from `cnnzoo finetune`)")
    parser.add_argument(
        "--host",
        default=server["host"],
        help="address to listen on (default %(default)s: this machine only; 0.0.0.0 opens it to the network "
        "and then needs --api-key or --insecure)",
    )
    parser.add_argument("--port", type=int, default=server["port"], help="port (default %(default)s)")
    parser.add_argument(
        "--top-k",
        type=int,
        default=app["top_k"],
        help="labels per answer (default %(default)s, or the number of classes)",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=app["max_batch"],
        help="most concurrent images per forward pass (default %(default)s; 1 turns batching off)",
    )
    parser.add_argument(
        "--max-delay-ms",
        type=float,
        default=app["max_delay_ms"],
        help="longest wait for more requests to batch with the first (default %(default)s ms)",
    )
    parser.add_argument(
        "--max-upload-mb", type=float, default=app["max_upload_mb"], help="largest upload in MiB (default %(default)s)"
    )
    parser.add_argument("--no-explain", action="store_true", help="turn off the Grad-CAM overlay (/explain)")
    add_guard_arguments(parser)
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=app["runtime"],
        help="for a .keras model: auto (default: its verified ONNX export when the `export` extra is installed, "
        "else Keras), tensorflow/keras, onnx or litert",
    )


def gradcam_explainer(model, image, class_name=None):
    """The Grad-CAM picture of `image` (uint8 RGB) for `create_app(explain=...)`, as a uint8 RGB array: the
    heatmap over the photo, enlarged to at least 224 pixels, titled with the class and its probability, with a
    colour bar (`cnnzoo.explain.gradcam_picture`)."""
    from cnnzoo.explain.gradcam import explained_picture
    from cnnzoo.explain.gradcam_picture import figure_rgb

    return figure_rgb(explained_picture(model, image, class_index=class_name))


def build_app(model, *, explain=True, **options):
    """`cnnzoo.deploy.serve.create_app` with the Grad-CAM explainer wired in (what `cnnzoo serve` runs).

    Args:
        model: what `create_app` serves.
        explain: bool; draw Grad-CAM overlays at `/explain`.
        **options: `create_app`'s `top_k`, `max_batch`, `max_delay_ms`, `max_upload_mb`, `api_key`,
            `limits`, `runtime` (its defaults).
    """
    from cnnzoo.deploy.serve import create_app

    return create_app(model, explain=gradcam_explainer if explain else None, **options)


def run(args):
    import sys

    from cnnzoo.deploy.serve import serve
    from cnnzoo.errors import ConfigError
    from cnnzoo.utils.extras import require

    require("uvicorn", "serve", "cnnzoo serve")
    require("starlette", "serve", "cnnzoo serve")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"`--port` must be from 0 to 65535. Received: --port={args.port}.")
    guard = guard_options(args)  # refuses an open host without a key before the model is loaded
    app = build_app(
        args.model,
        top_k=args.top_k,
        max_batch=args.max_batch,
        max_delay_ms=args.max_delay_ms,
        max_upload_mb=args.max_upload_mb,
        explain=not args.no_explain,
        **guard,
        runtime=args.runtime,
    )
    # The model, TensorFlow and Keras are millions of long-lived objects: a full collection walking them
    # stalled every request for ~230 ms once every few seconds (the p99 of docs/benchmarks.md's serve
    # table). This process is the command's own, so they are moved out of the collector's sight.
    gc.collect()
    gc.freeze()
    keyed = " (API key required)" if guard["api_key"] else ""
    print(f"cnnzoo: serving {args.model} on http://{args.host}:{args.port}/{keyed} (Ctrl-C stops)", file=sys.stderr)
    serve(app, host=args.host, port=args.port)
    return 0
