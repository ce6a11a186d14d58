"""`cnnzoo finetune NAME DATA_DIR`: fine-tune a zoo model on an image folder.

Prints Keras progress bars while training, then a summary: validation
accuracy, the saved model and the plots in the run directory. Rerunning the
same command after a crash resumes it.
"""

__all__ = ["add_arguments", "run", "given_recipe_options"]


def add_arguments(parser):
    from cnnzoo.cli.args import parse_shape

    # Recipe options take their defaults from the dataclass (the only place they are written); the flags given
    # are recorded (`given_recipe_options`), and only they reach `finetune`, where they override --recipe.
    parser.add_argument("name", help="zoo model name (see `cnnzoo list`), or a saved .keras model to fine-tune further")
    parser.add_argument("data_dir", help="image folder: DATA_DIR/<class>/<image>")
    parser.add_argument(
        "--recipe",
        default=None,
        metavar="RECIPE_JSON",
        help="repeat a run: the recipe.json a run wrote (flags given as well override its options)",
    )
    parser.add_argument(
        "--input-shape",
        type=parse_shape,
        default=None,
        metavar="HxWxC",
        help="model input, e.g. 96x96x3 (default: the zoo entry's)",
    )
    parser.add_argument("--weights", default=None, help="weights for a model built by name (e.g. imagenet, or a file)")
    _add_recipe_arguments(parser)
    parser.add_argument("--out", default=None, help="run directory (default: runs/finetune/NAME)")
    parser.add_argument("--restart", action="store_true", help="start over instead of resuming the run in --out")
    parser.add_argument("--quiet", action="store_true", help="one line per epoch instead of progress bars")


def _add_recipe_arguments(parser):
    """The flags that are `Recipe` options, with its defaults; each records that it was given."""
    from cnnzoo.finetuning.recipe import Recipe

    parser = _RecipeFlags(parser)
    parser.add_argument("--epochs", type=int, help="epochs of every stage (default: from --stages)")
    parser.add_argument(
        "--stages",
        help=f"{Recipe.stages!r} (from the dataset size; the default) or e.g. 'head:5:1e-3,top2:3:1e-4,all:2:1e-5'",
    )
    parser.add_argument(
        "--lr",
        dest="learning_rate",
        metavar="RATE",
        help="learning rate of every stage: a number, LO..HI (per-unit: lowest trained unit LO, "
        "head HI) or 'auto' (the LR finder's suggestion, found per stage)",
    )
    parser.add_argument("--batch-size", type=int, help=f"default {Recipe.batch_size}")
    parser.add_argument("--validation-split", type=float, help=f"default {Recipe.validation_split}")
    parser.add_argument(
        "--augment",
        nargs="?",
        const=True,
        type=_augment,
        metavar="auto",
        help=f"default {Recipe.augment!r}: a set picked from the data size, without flips (docs/finetune.md, "
        "Regularisation); `--augment` alone: random flips, rotations, zooms, contrast",
    )
    parser.add_argument("--no-augment", dest="augment", action="store_false", help="train on the images as they are")
    _add_regularisation_arguments(parser)
    parser.add_argument(
        "--no-feature-cache",
        dest="cache_features",
        action="store_false",
        help="train frozen stages through the backbone instead of on cached features",
    )
    parser.add_argument("--seed", type=int, help=f"default {Recipe.seed}")


def _add_regularisation_arguments(parser):
    from cnnzoo.finetuning.recipe import Recipe

    parser.add_argument("--label-smoothing", type=float, help=f"default {Recipe.label_smoothing}; 0 turns it off")
    parser.add_argument("--mixup", type=float, metavar="ALPHA", help=f"MixUp alpha, e.g. 0.2 (default {Recipe.mixup})")
    parser.add_argument(
        "--cutmix", type=float, metavar="ALPHA", help=f"CutMix alpha, e.g. 1.0 (default {Recipe.cutmix})"
    )
    parser.add_argument(
        "--ema",
        nargs="?",
        const=True,
        type=float,
        metavar="MOMENTUM",
        help="validate and save a moving average of the weights (momentum from the stage length, "
        f"or the one given, e.g. 0.99; default {Recipe.ema})",
    )


class _RecipeFlags:
    """Adds arguments whose dest is a `Recipe` field: default from `Recipe`, and a record when given."""

    def __init__(self, parser):
        self.parser = parser

    def add_argument(self, *args, **kwargs):
        from cnnzoo.finetuning.recipe import Recipe

        action = self.parser.add_argument(*args, **kwargs)
        action.default = getattr(Recipe, action.dest)
        base = type(action)

        def record(self, parser, namespace, values, option_string=None):
            given = set(getattr(namespace, GIVEN, ())) | {self.dest}
            setattr(namespace, GIVEN, given)
            base.__call__(self, parser, namespace, values, option_string)

        action.__class__ = type(f"Recorded{base.__name__}", (base,), {"__call__": record})
        return action


GIVEN = "recipe_flags_given"  # the namespace attribute: the Recipe fields whose flags were given


def given_recipe_options(args):
    """`{field: value}` for the `Recipe` flags given on the command line (not their defaults)."""
    return {name: getattr(args, name) for name in sorted(getattr(args, GIVEN, ()))}


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
    given = given_recipe_options(args)
    result = transfer.finetune(
        model,
        args.data_dir,
        input_shape=args.input_shape,
        weights=args.weights,
        out=args.out,
        resume=not args.restart,
        verbose=2 if args.quiet else "auto",
        recipe=args.recipe,
        **given,  # the recipe flags given: they override --recipe's options
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
