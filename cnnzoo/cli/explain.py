"""`cnnzoo explain MODEL IMAGE... --out DIR`: what a saved model predicts, where it looked, what it saw.

For each image: the top-k prediction (as `cnnzoo predict` prints it), a
Grad-CAM picture of the predicted class (`DIR/<image>/gradcam.png`: enlarged to
at least 224 pixels, titled with the class and its probability, with a colour
bar; noted when the gradients vanish) and one PNG grid of feature maps
per layer (`DIR/<image>/feature_maps/<layer>.png`). By default the layers are
the first convolution and the last conv or pool layer at each resolution (one
per block); `--layers all` draws every conv and pool layer. A directory
argument stands for every image file under it. Prints each file it writes
(`--json`: one object per image, for scripts).
"""

__all__ = ["add_arguments", "run", "default_layers"]


def add_arguments(parser):
    parser.add_argument("model", help="a saved .keras model (e.g. from `cnnzoo finetune`)")
    parser.add_argument("images", nargs="+", help="image files, or directories of them")
    parser.add_argument("--out", required=True, help="directory to write the pictures into")
    parser.add_argument(
        "--layers",
        nargs="+",
        default=None,
        metavar="LAYER",
        help="feature-map layers to draw (default: the first conv and one per block; 'all': every conv and pool layer)",
    )
    parser.add_argument(
        "--top-k",
        type=int,
        default=None,
        help="labels to show per image (default 3, or the number of classes when fewer)",
    )
    parser.add_argument("--max-channels", type=int, default=32, help="channels drawn per feature-map grid")
    parser.add_argument(
        "--gradcam-layer", default=None, help="layer Grad-CAM reads (default: the last convolution's feature map)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def default_layers(model):
    """The first convolution, then the last conv or pool layer at each feature-map resolution."""
    from cnnzoo.explain.taps import taps

    found = [t for t in taps(model) if t.kind in ("conv", "pool")]
    chosen = [found[0].name] if found else []
    for i, tap in enumerate(found):
        if i + 1 == len(found) or found[i + 1].shape[:2] != tap.shape[:2]:
            chosen.append(tap.name)
    return list(dict.fromkeys(chosen))


def _folders(sources):
    """One output folder name per image: its file stem, with its folder's name (then a number) on a clash."""
    import re
    from pathlib import Path

    def clean(text):
        return re.sub(r"[^A-Za-z0-9_.-]", "_", text) or "image"

    names = [clean(Path(s).stem) for s in sources]
    clashing = {n for n in names if names.count(n) > 1}
    names = [f"{clean(Path(s).parent.name)}_{n}" if n in clashing else n for s, n in zip(sources, names)]
    clashing = {n for n in names if names.count(n) > 1}
    return [f"{i}_{n}" if n in clashing else n for i, n in enumerate(names)]


def run(args):
    import json
    from pathlib import Path

    from cnnzoo.cli.predict import _expand as expand_images  # same part: the one way to list images
    from cnnzoo.deploy.inference import predict
    from cnnzoo.errors import ConfigError, DataError
    from cnnzoo.explain.features import feature_maps, plot_feature_maps
    from cnnzoo.explain.gradcam import grad_cam
    from cnnzoo.explain.inputs import resolve_model

    images = expand_images(args.images)
    if not images:
        raise DataError(f"`images` must name image files or folders holding some. Received: images={args.images!r}.")
    if args.max_channels < 1:
        raise ConfigError(f"`--max-channels` must be a positive int. Received: --max-channels={args.max_channels}.")
    model = resolve_model(args.model)
    layers = args.layers
    if layers is None:
        layers = default_layers(model)
    elif layers == ["all"]:
        layers = None
    top_k = min(3, int(model.outputs[0].shape[-1])) if args.top_k is None else args.top_k
    predictions = predict(model, images, top_k=top_k)
    out = Path(args.out)
    rows = []
    for image, prediction, folder in zip(images, predictions, _folders(images)):
        where = out / folder
        heat_path = where / "gradcam.png"
        grad_cam(model, image, layer=args.gradcam_layer, out=heat_path)
        maps = feature_maps(model, image, layers=layers)
        said = f"{Path(image).name}: predicted {prediction.label} ({prediction.probability:.1%})"
        written = plot_feature_maps(maps, where / "feature_maps", max_channels=args.max_channels, title=said)
        rows.append(
            {
                **prediction.to_dict(),
                "gradcam": str(heat_path),
                "feature_maps": {name: str(path) for name, path in written.items()},
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['source']}: " + "   ".join(f"{t['label']} {t['probability']:.1%}" for t in row["top_k"]))
        print(f"  wrote {row['gradcam']}")
        for path in row["feature_maps"].values():
            print(f"  wrote {path}")
    print(f"{len(rows)} image{'s' if len(rows) != 1 else ''} explained in {out}")
    return 0
