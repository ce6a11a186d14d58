"""`cnnzoo serve MODEL`: the model behind HTTP on 127.0.0.1:8000 (a page, a JSON API, Grad-CAM).

`POST /predict` takes an image (raw body or multipart `file`) and answers the
top-k labels; `GET /` is a page to drop photos on; `GET /health`, `GET /info`;
`POST /explain` answers a Grad-CAM overlay PNG. Concurrent requests share
forward passes (`--max-batch`, `--max-delay-ms`). Needs the `serve` extra.
"""

__all__ = ["add_arguments", "run", "gradcam_explainer", "build_app"]


def add_arguments(parser):
    parser.add_argument("model", help="a saved .keras model (e.g. from `cnnzoo finetune`)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)",
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--top-k", type=int, default=5, help="labels per answer (default 5, or the number of classes)")
    parser.add_argument(
        "--max-batch",
        type=int,
        default=32,
        help="most concurrent images per forward pass (default 32; 1 turns batching off)",
    )
    parser.add_argument(
        "--max-delay-ms",
        type=float,
        default=2.0,
        help="longest wait for more requests to batch with the first (default 2 ms)",
    )
    parser.add_argument("--max-upload-mb", type=float, default=10.0, help="largest upload in MiB (default 10)")
    parser.add_argument("--no-explain", action="store_true", help="turn off the Grad-CAM overlay (/explain)")


def gradcam_explainer(model, image, class_name=None):
    """A Grad-CAM overlay of `image` (uint8 RGB) for `create_app(explain=...)`: `cnnzoo.explain` drawn over it."""
    from cnnzoo.explain.gradcam import grad_cam, overlay

    return overlay(image, grad_cam(model, image, class_index=class_name))


def build_app(model, top_k=5, max_batch=32, max_delay_ms=2.0, max_upload_mb=10.0, explain=True):
    """`cnnzoo.deploy.serve.create_app` with the Grad-CAM explainer wired in (what `cnnzoo serve` runs)."""
    from cnnzoo.deploy.serve import create_app

    return create_app(
        model,
        top_k=top_k,
        max_batch=max_batch,
        max_delay_ms=max_delay_ms,
        max_upload_mb=max_upload_mb,
        explain=gradcam_explainer if explain else None,
    )


def run(args):
    import sys

    from cnnzoo.deploy.serve import serve
    from cnnzoo.errors import ConfigError
    from cnnzoo.utils.extras import require

    require("uvicorn", "serve", "cnnzoo serve")
    require("starlette", "serve", "cnnzoo serve")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"`--port` must be from 0 to 65535. Received: --port={args.port}.")
    app = build_app(
        args.model,
        top_k=args.top_k,
        max_batch=args.max_batch,
        max_delay_ms=args.max_delay_ms,
        max_upload_mb=args.max_upload_mb,
        explain=not args.no_explain,
    )
    print(f"cnnzoo: serving {args.model} on http://{args.host}:{args.port}/ (Ctrl-C stops)", file=sys.stderr)
    serve(app, host=args.host, port=args.port)
    return 0
