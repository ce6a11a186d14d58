"""The winner of a search: its model rebuilt from its checkpoint, and `register_best`, its config as a zoo entry.

`register_best` writes `NAME.toml` next to the search (in its project
directory) unless told where (`out=`), and registers it in the running process,
so `cnnzoo.get(NAME)` builds the winner at once while `cnnzoo.list_models()`
in other processes stays as it was. Another session finds it with
`cnnzoo.register(path)` or `CNNZOO_CONFIG_PATH`; `out=$CNNZOO_HOME/configs`
(`cnnzoo tune --register`) makes it a zoo entry everywhere. Run again, the same
search replaces the file it wrote before, so a notebook can run twice.
"""

import logging
from pathlib import Path

from cnnzoo import _compat
from cnnzoo.errors import ConfigError
from cnnzoo.tuning.records import TuneResult
from cnnzoo.utils.files import atomic_write_text
from cnnzoo.utils.renames import renamed_arguments
from cnnzoo.zoo import config, config_writer, registry

__all__ = ["register_best", "with_best", "load_trial_model", "HEADER"]

log = logging.getLogger("cnnzoo.tuning")

HEADER = "# Written by cnnzoo.register_best from {directory}"  # the first line of a config it writes


def with_best(result, project_dir, hm, load_best):
    """Fills in the result's best trial, its hyperparameters and spec, and (with `load_best`) its model."""
    ranked = [t for t in result.ranked() if t.score is not None]
    if ranked:
        trial_module = _compat.kt_module("engine.trial")
        best = ranked[0]
        trial = trial_module.Trial.load(str(project_dir / f"trial_{best.trial_id}" / "trial.json"))
        result.best_trial = best
        result.best_hyperparameters = trial.hyperparameters
        result.best_spec = hm.spec_for(trial.hyperparameters.values)
        if load_best:
            result.best_model = load_trial_model(project_dir, best.trial_id, result.best_spec, hm.dtype)
    return result


def load_trial_model(project_dir, trial_id, spec, dtype=None):
    """Rebuilds a trial's model and loads its best checkpoint, optimizer state left out."""
    from cnnzoo.zoo import builders

    path = Path(project_dir) / f"trial_{trial_id}" / "checkpoint.weights.h5"
    if not path.is_file():
        log.warning("trial %s has no checkpoint at %s; best_model is None", trial_id, path)
        return None
    model = builders.build(spec, dtype=dtype)  # uncompiled: the checkpoint's optimizer variables are skipped silently
    model.load_weights(path)
    return builders.compile_model(model, spec.train)


@renamed_arguments(directory="out")
def register_best(result, name, out=None, overwrite=False, description=None):
    """Writes the best trial of a search as a zoo config, and registers it in this process.

    Args:
        result: a `TuneResult` from `cnnzoo.tune`.
        name: lower_snake_case name for the new entry; must be free.
        out: the directory to write `NAME.toml` into; default the search's
            own directory (`result.directory`, beside its trials), so nothing
            is written outside the search and other processes' zoo is
            unchanged. `cnnzoo.get(name)` builds the winner in this process at
            once; another process finds the file with `cnnzoo.register(path)`
            or `CNNZOO_CONFIG_PATH=<out>`. `out=cnnzoo.zoo.registry.home() /
            "configs"` (`$CNNZOO_HOME/configs`, which every process scans; what
            `cnnzoo tune --register` does) adds it to the zoo everywhere.
            (cnnzoo 0.1 wrote there by default.) Was `directory` (still
            accepted until cnnzoo 0.3, with a `DeprecationWarning`).
        overwrite: bool; replace a `NAME.toml` in `out` that another search
            or a person wrote. The file this search wrote there before (the
            same call run again) is replaced without it.
        description: one line; default names the search and its score.

    Returns:
        The `Path` of the written config.

    Example:

    >>> path = cnnzoo.register_best(result, "my_bird_net")  # beside the search, e.g. runs/tune/bird_classifier/
    >>> model = cnnzoo.get("my_bird_net")
    >>> cnnzoo.register(path)  # in a later session  # doctest: +SKIP
    """
    _check(result, name)
    path = (Path(out) if out is not None else Path(result.directory)) / f"{name}.toml"
    header = HEADER.format(directory=result.directory)
    if path.exists() and not overwrite and not _first_line(path) == header:
        raise ConfigError(
            f"`name` is taken: {path} exists (not written by this search). Received: name={name!r}. "
            f"Pick another name or pass overwrite=True."
        )
    if name in registry.list_models() and registry.entry(name).path != path.resolve():  # another entry's name
        raise ConfigError(
            f"`name` must be free, and `{name}` is already a registered model "
            f"({registry.entry(name).source}). Received: name={name!r}. Pick another name."
        )
    text = f"{header}\n# best hyperparameters: {result.best_trial.hyperparameters}\n" + config_writer.dumps(
        _raw(result, name, description)
    )
    config.loads(text, str(path))  # validate before writing
    atomic_write_text(path, text)
    registry.refresh()
    registry.register(path)  # this process: at once (a directory the registry scans has it already)
    log.info("registered `%s` for this process: %s", name, path)
    return path


def _check(result, name):
    if not isinstance(result, TuneResult) or result.best_spec is None:
        raise ConfigError(
            f"`result` must be a `TuneResult` with a completed trial. "
            f"Received: result={type(result).__name__}"
            f"{' without a completed trial' if isinstance(result, TuneResult) else ''}."
        )
    if not isinstance(name, str) or not config.NAME_RE.match(name):
        raise ConfigError(
            f"`name` must be lower_snake_case (a-z, 0-9, _; starting with a letter). Received: name={name!r}."
        )


def _first_line(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().rstrip("\n")
    except (OSError, UnicodeDecodeError):
        return None


def _raw(result, name, description):
    """The config dict of the winner, named `name`."""
    best = result.best_trial
    raw = config.to_dict(result.best_spec)
    raw["name"] = name
    raw["description"] = description or (
        f"`{result.name}` tuned by cnnzoo.tune: {result.tuner} search, {len(result.trials)} trials, "
        f"best {result.objective} {best.score:.4f} (trial {best.trial_id})."
    )
    raw.pop("weights", None)  # named weights of the original entry do not fit a new architecture
    return raw
