"""`cnnzoo finetune NAME DATA_DIR`: fine-tune a zoo model on an image folder.

Prints Keras progress bars while training, then a summary: validation
accuracy, the saved model and the plots in the run directory. Rerunning the
same command after a crash resumes it.
"""

__all__ = ["add_arguments", "run"]


def add_arguments(parser):
    from cnnzoo.cli.args import parse_shape

    parser.add_argument("name", help="zoo model name (see `cnnzoo list`), or a saved .keras model to fine-tune further")
    parser.add_argument("data_dir", help="image folder: DATA_DIR/<class>/<image>")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of every stage (default: from --stages)")
    parser.add_argument(
        "--stages", default="auto", help="'auto' (from the dataset size) or e.g. 'head:5:1e-3,top2:3:1e-4,all:2:1e-5'"
    )
    parser.add_argument(
        "--lr",
        default=None,
        metavar="RATE",
        help="learning rate of every stage: a number, LO..HI (per-unit: lowest trained unit LO, "
        "head HI) or 'auto' (the LR finder's suggestion, found per stage)",
    )
    parser.add_argument(
        "--input-shape",
        type=parse_shape,
        default=None,
        metavar="HxWxC",
        help="model input, e.g. 96x96x3 (default: the zoo entry's)",
    )
    parser.add_argument("--weights", default=None, help="weights for a model built by name (e.g. imagenet, or a file)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--validation-split", type=float, default=0.2)
    parser.add_argument(
        "--augment",
        nargs="?",
        const=True,
        default="auto",
        type=_augment,
        metavar="auto",
        help="default `auto`: a set picked from the data size, without flips (docs/finetune.md, "
        "Regularisation); `--augment` alone: random flips, rotations, zooms, contrast",
    )
    parser.add_argument("--no-augment", dest="augment", action="store_false", help="train on the images as they are")
    parser.add_argument("--label-smoothing", type=float, default=0.1, help="default 0.1; 0 turns it off")
    parser.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA", help="MixUp alpha, e.g. 0.2 (default 0)")
    parser.add_argument("--cutmix", type=float, default=0.0, metavar="ALPHA", help="CutMix alpha, e.g. 1.0 (default 0)")
    parser.add_argument(
        "--ema",
        nargs="?",
        const=True,
        default=False,
        type=float,
        metavar="MOMENTUM",
        help="validate and save a moving average of the weights (momentum from the stage length, "
        "or the one given, e.g. 0.99)",
    )
    parser.add_argument(
        "--no-feature-cache",
        action="store_true",
        help="train frozen stages through the backbone instead of on cached features",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="run directory (default: runs/finetune/NAME)")
    parser.add_argument("--restart", action="store_true", help="start over instead of resuming the run in --out")
    parser.add_argument("--quiet", action="store_true", help="one line per epoch instead of progress bars")


def _augment(text):
    import argparse

    if text != "auto":
        raise argparse.ArgumentTypeError(f"must be 'auto' or nothing (the default set). Received: {text!r}")
    return text


def run(args):
    """Fine-tunes with cnnzoo's progress messages on stderr, for this call only (no global logging set-up)."""
    import logging

    log = logging.getLogger("cnnzoo")
    handler, level = logging.StreamHandler(), log.level
    handler.setFormatter(logging.Formatter("cnnzoo: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        return _run(args)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def _run(args):
    import time
    from pathlib import Path

    from cnnzoo.finetuning import run as transfer

    model = Path(args.name) if Path(args.name).is_file() else args.name
    start = time.perf_counter()
    result = transfer.finetune(
        model,
        args.data_dir,
        stages=args.stages,
        epochs=args.epochs,
        input_shape=args.input_shape,
        weights=args.weights,
        batch_size=args.batch_size,
        validation_split=args.validation_split,
        augment=args.augment,
        label_smoothing=args.label_smoothing,
        mixup=args.mixup,
        cutmix=args.cutmix,
        ema=args.ema,
        cache_features=False if args.no_feature_cache else "auto",
        seed=args.seed,
        out=args.out,
        resume=not args.restart,
        verbose=2 if args.quiet else "auto",
        learning_rate=args.lr,
    )
    print(
        f"\n{result.model.name} fine-tuned on {args.data_dir} ({len(result.class_names)} classes) "
        f"in {time.perf_counter() - start:.0f} s{' (resumed)' if result.resumed else ''}"
    )
    for s in result.stages:
        last = {k: v[-1] for k, v in s.history.items() if v}
        metrics = "  ".join(f"{k} {v:.4f}" for k, v in sorted(last.items()))
        how = ", cached features" if s.feature_cache else ""
        print(f"  stage {s.index} {s.stage} ({len(s.history.get('loss', []))} epochs{how}): {metrics}")
    if result.val_accuracy is not None:
        print(f"validation accuracy: {result.val_accuracy:.2%} (best epoch {result.best_val_accuracy:.2%})")
    if result.skipped:
        print(f"skipped {len(result.skipped)} unreadable files, e.g. {result.skipped[0][0]}: {result.skipped[0][1]}")
    print(f"saved: {result.model_path}")
    for name, path in result.plots.items():
        print(f"{name.replace('_', ' ')}: {path}")
    print(f"predict with: cnnzoo predict {result.model_path} IMAGE...")
    return 0
