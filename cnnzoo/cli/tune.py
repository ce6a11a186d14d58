"""`cnnzoo tune NAME DATA_DIR`: search a zoo entry's `[search]` space with keras-tuner.

Prints a progress line per trial and the final table sorted by score, writes
a PNG of the score against each searched value, saves the best model
(`.keras`) and its config (`.toml`, loadable with `cnnzoo.get`), and prints
their paths. `--json` prints one JSON document instead (progress goes to
stderr). Running the same command again resumes the search in `--out`.
"""

import json
import sys
from pathlib import Path

from cnnzoo.cli.args import defaults_of

__all__ = ["add_arguments", "run"]


def add_arguments(parser):
    from cnnzoo.data import DataOptions
    from cnnzoo.tuning.api import TUNERS, tune

    default = defaults_of(tune)
    parser.add_argument("name", help="zoo model to search (see `cnnzoo list`)")
    parser.add_argument(
        "data_dir",
        metavar="DATA_DIR",
        help="image folder (one sub-folder per class), or `digits` for the built-in UCI digits",
    )
    parser.add_argument("--tuner", choices=TUNERS, default=default["tuner"])
    parser.add_argument("--max-trials", type=int, default=default["max_trials"], metavar="N")
    parser.add_argument(
        "--max-epochs",
        type=int,
        default=default["max_epochs"],
        metavar="N",
        help="epochs per trial (default %(default)s)",
    )
    parser.add_argument(
        "--out",
        default="runs/tune",
        metavar="DIR",
        help="directory for the search, the plot, the best model and its config",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        metavar="PX",
        help="square side images are resized to (default: the entry's input size)",
    )
    parser.add_argument("--batch-size", type=int, default=DataOptions.batch_size)
    parser.add_argument("--validation-split", type=float, default=DataOptions.validation_split)
    parser.add_argument("--objective", default=default["objective"])
    parser.add_argument("--seed", type=int, default=default["seed"])
    parser.add_argument("--save-as", default=None, metavar="NAME", help="name of the new config (default NAME_tuned)")
    parser.add_argument(
        "--register",
        action="store_true",
        help="write the config to $CNNZOO_HOME/configs so `cnnzoo.get(NAME)` finds it anywhere",
    )
    parser.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def _data(args, spec):
    from cnnzoo import data as data_lib
    from cnnzoo.errors import DataError

    channels = spec.input_shape[2]
    size = args.image_size or None
    if args.data_dir == "digits" and not Path(args.data_dir).exists():
        if channels not in (1, 3):
            raise DataError(
                f"`digits` are grayscale and `{spec.name}` takes {channels} channels. "
                f"Received: DATA_DIR='digits'. Use a 1- or 3-channel model."
            )
        hw = (size, size) if size else tuple(spec.input_shape[:2])
        digits = data_lib.digits(seed=args.seed, image_size=None if hw == (8, 8) else hw, channels=channels)
        return digits, (*hw, channels)
    input_shape = (size, size, channels) if size else None
    return args.data_dir, input_shape


def run(args):
    from cnnzoo.tuning import api as tuning
    from cnnzoo.zoo import registry

    spec = registry.spec(args.name)
    data, input_shape = _data(args, spec)
    out = Path(args.out)
    stream = sys.stderr if args.json else sys.stdout
    result = tuning.tune(
        args.name,
        data,
        tuner=args.tuner,
        max_trials=args.max_trials,
        max_epochs=args.max_epochs,
        out=out / "search",
        objective=args.objective,
        overwrite=args.overwrite,
        input_shape=input_shape,
        batch_size=args.batch_size,
        seed=args.seed,
        verbose=lambda record: print(record.line(args.objective), file=stream, flush=True),
        validation_split=args.validation_split,
    )
    plot = result.plot(out / f"{args.name}_scores.png")
    model_path, config_path = _save_winner(args, result, out)
    if args.json:
        print(
            json.dumps(
                {
                    **result.to_dict(),
                    "plot": str(plot),
                    "model": str(model_path) if model_path else None,
                    "config": str(config_path) if config_path else None,
                },
                indent=2,
                default=str,
            )
        )
        return 0 if result.best_trial else 1
    return _print_summary(args, result, plot, model_path, config_path)


def _save_winner(args, result, out):
    """Saves the best model (`.keras`) and registers its config; `(model path, config path)`, or Nones."""
    import cnnzoo
    from cnnzoo.zoo import registry

    if result.best_model is None:
        return None, None
    new_name = args.save_as or f"{args.name}_tuned"
    model_path = out / f"{new_name}.keras"
    result.best_model.save(model_path)
    config_path = cnnzoo.register_best(
        result,
        new_name,
        out=registry.home() / "configs" if args.register else out,
        overwrite=True if not args.register else args.overwrite,
    )
    return model_path, config_path


def _print_summary(args, result, plot, model_path, config_path):
    """Prints the table and what was written; returns the exit status."""
    print(
        f"\n{args.name}: {args.tuner} search, {len(result.trials)} trials in {result.directory} "
        f"({result.seconds:.0f} s this run)\n"
    )
    print(result.table())
    print(f"\nscores plot: {plot}")
    if model_path is None:
        print("no trial completed: nothing saved")
        return 1
    print(f"best model:  {model_path}   (cnnzoo.load({str(model_path)!r}))")
    hint = "" if args.register else f"   (CNNZOO_CONFIG_PATH={config_path.parent} cnnzoo info {config_path.stem})"
    print(f"best config: {config_path}{hint}")
    return 0
