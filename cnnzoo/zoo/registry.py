"""The registry: model name -> spec (data) or builder (code).

Sources, all checked for clashing names:
1. the built-in `zoo_configs/*.toml` packaged with cnnzoo;
2. `*.toml` files in the directories of `CNNZOO_CONFIG_PATH` (os.pathsep-separated)
   and in `$CNNZOO_HOME/configs` (default `~/.cnnzoo/configs`, where
   `cnnzoo tune --register` writes);
3. functions decorated with `@cnnzoo.register("name")`, and configs registered
   for the running process with `cnnzoo.register(path_or_spec)` (what
   `cnnzoo.register_best` does with the config it writes);
4. the `"cnnzoo.models"` entry-point group of installed packages. An entry point
   names a builder function, a `ModelSpec`, a config dict or a `.toml` path; it
   is imported only when that model is asked for, never to list the zoo.

Like timm's registry, nothing here imports a model file or TensorFlow.
"""

import fnmatch
import functools
import importlib.metadata
import inspect
import os
from dataclasses import dataclass
from pathlib import Path

from cnnzoo.errors import ConfigError, DuplicateModelError, PluginError, UnknownModelError, closest
from cnnzoo.zoo import config, config_variants, families, stats

__all__ = ["Entry", "ModelInfo", "list_models", "spec", "info", "register", "entry", "refresh", "home"]

ENTRY_POINT_GROUP = "cnnzoo.models"


@dataclass
class Entry:
    """One registered model: where it came from and how to build it."""

    name: str
    source: str
    spec: object = None  # ModelSpec, for data entries
    builder: object = None  # callable, for code entries
    entry_point: object = None  # importlib.metadata.EntryPoint, not loaded yet
    description: str = ""
    failure: str = None  # why a plugin failed to load: raised again at every use
    path: Path = None  # the .toml file of a config entry, where there is one

    def resolve(self):
        """Loads an entry point (once) into `spec` or `builder`.

        A plugin that fails raises `PluginError` naming the entry point and its
        package, at this call and at every later one (the failure is remembered,
        the import is not retried), and never affects the other entries.
        """
        if self.failure is not None:
            raise PluginError(self.failure)
        if self.entry_point is None:
            return self
        ep = self.entry_point
        try:
            self._load(ep)
        except Exception as e:  # a broken plugin must say which plugin, every time
            self.spec = self.builder = None
            self.entry_point = None
            if isinstance(e, PluginError):
                self.failure = str(e)
            else:
                self.failure = (
                    f"The {self.source} failed to load: {type(e).__name__}: {e}. Fix or uninstall "
                    f"the package that provides it."
                )
            raise PluginError(self.failure) from e
        self.entry_point = None
        return self

    def _load(self, ep):
        obj = ep.load()
        if isinstance(obj, config.ModelSpec):
            self.spec = obj
        elif isinstance(obj, dict):
            self.spec = config.parse(obj, self.source)
        elif isinstance(obj, (str, os.PathLike)):
            self.spec = config.load(obj)
        elif callable(obj):
            self.builder = obj
            self.description = _doc_summary(obj)
        else:
            raise PluginError(
                f"The {self.source} must name a builder function, a ModelSpec, a config dict or "
                f"a .toml path. Received: {type(obj).__name__}."
            )
        if self.spec is not None:
            if self.spec.name != self.name:
                raise PluginError(
                    f"The {self.source} provides a config named `{self.spec.name}`. Use the same "
                    f"name for both. Received: name={self.spec.name!r}."
                )
            self.description = self.spec.description


@dataclass(frozen=True)
class ModelInfo:
    """What `cnnzoo.info` returns (and `cnnzoo info --json` prints).

    Each row of `layers` has `name`, `kind`, `output_shape`, `params`, `flops`
    and `receptive_field` (`{"size", "jump", "start"}`, see
    `cnnzoo.zoo.stats.ReceptiveField`; None where unknown).
    """

    name: str
    kind: str
    description: str
    reference: str
    source: str
    input_shape: tuple
    num_classes: int
    params: int
    flops: int
    layers: list
    search: dict

    @property
    def receptive_field(self):
        """Receptive field size (px) of the last conv or pool layer; None when unknown or code-built."""
        spatial = [r for r in self.layers if len(r["output_shape"]) == 3]
        return spatial[-1]["receptive_field"]["size"] if spatial else None

    def to_dict(self):
        import dataclasses

        return dataclasses.asdict(self)


_code_entries = {}


def home():
    """The cnnzoo home directory: `$CNNZOO_HOME`, default `~/.cnnzoo`."""
    return Path(os.environ.get("CNNZOO_HOME") or Path.home() / ".cnnzoo").expanduser()


def _builtin_dir():
    here = Path(__file__).resolve().parents[1]  # the cnnzoo package
    for candidate in (here / "zoo_configs", here.parent / "zoo_configs"):  # installed wheel, source checkout
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"The built-in zoo_configs/ directory is missing next to {here}; reinstall cnnzoo.")


def _config_dirs():
    dirs = [("built-in", _builtin_dir())]
    for d in os.environ.get("CNNZOO_CONFIG_PATH", "").split(os.pathsep):
        if d.strip():
            dirs.append(("CNNZOO_CONFIG_PATH", Path(d).expanduser()))
    dirs.append(("CNNZOO_HOME", home() / "configs"))
    return dirs


def _add(entries, new):
    old = entries.get(new.name)
    if old is not None:
        raise DuplicateModelError(
            f"The model name `{new.name}` is registered twice: by {old.source} and by {new.source}. "
            f"Rename one of them (the config's `name`, the `register` name or the entry-point name) "
            f"or remove it."
        )
    entries[new.name] = new


@functools.lru_cache(maxsize=1)
def _scanned():
    entries = {}
    for label, directory in _config_dirs():
        if not directory.is_dir():
            if label == "CNNZOO_CONFIG_PATH":
                raise ConfigError(
                    f"`CNNZOO_CONFIG_PATH` must list existing directories. "
                    f"Received: {str(directory)!r}, which does not exist."
                )
            continue
        for path in sorted(directory.glob("*.toml")):
            specs = config_variants.load_all(path)  # a family file holds one spec per `[variants.NAME]`
            where = f"zoo_configs/{path.name} (built-in)" if label == "built-in" else f"{path} ({label})"
            for spec in specs:
                _add(entries, Entry(spec.name, where, spec=spec, description=spec.description, path=path.resolve()))
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        dist_name = f" of package {dist.name}" if dist is not None else ""
        _add(
            entries,
            Entry(
                ep.name,
                f"entry point `{ep.name} = {ep.value}` (group `{ENTRY_POINT_GROUP}`){dist_name}",
                entry_point=ep,
            ),
        )
    return entries


def _entries():
    entries = dict(_scanned())
    for e in _code_entries.values():
        _add(entries, e)
    return entries


def refresh():
    """Forgets the scanned configs and entry points; the next call rescans them.

    Call it after changing `CNNZOO_CONFIG_PATH` or installing a plugin in the
    running process.
    """
    _scanned.cache_clear()


def list_models(pattern="*", family=None, pretrained=None):
    """Lists registered model names, sorted.

    Args:
        pattern: optional shell-style pattern, e.g. `"vgg*"`.
        family: optional family name, e.g. `"resnet"`: only its members (see `cnnzoo.zoo.families`).
        pretrained: optional; True lists only the entries with named weights, False those without.

    Returns:
        A list of names. Importing TensorFlow is never needed.

    Example:

    >>> import cnnzoo
    >>> "vgg16" in cnnzoo.list_models("vgg*")
    True
    >>> cnnzoo.list_models(family="convnext")[0]
    'convnext_base'
    """
    entries = _entries()
    names = sorted(n for n in entries if fnmatch.fnmatchcase(n, pattern))
    return families.select(entries, names, family, pretrained)


def entry(name):
    """Returns the resolved `Entry` for `name`; raises `UnknownModelError`."""
    entries = _entries()
    if name not in entries:
        if not isinstance(name, str):
            raise UnknownModelError(f"`name` must be a string naming a zoo model. Received: name={name!r}.")
        raise UnknownModelError(
            f"`name` must be a registered model; `{name}` is not one.{closest(name, entries)} "
            f"See `cnnzoo list` for all {len(entries)} models. Received: name={name!r}."
        )
    return entries[name].resolve()


def spec(name):
    """Returns the validated `ModelSpec` of a data entry.

    Args:
        name: a registered model name.

    Returns:
        A `ModelSpec`.

    Example:

    >>> cnnzoo.spec("lenet5").input_shape
    (32, 32, 1)
    """
    e = entry(name)
    if e.spec is None:
        raise ConfigError(
            f"`{name}` is built by code ({e.source}) and has no config to read. "
            f"Build it with `cnnzoo.get({name!r})` instead."
        )
    return e.spec


def info(name, input_shape=None, num_classes=None):
    """Describes a model without building it (no TensorFlow import).

    Args:
        name: a registered model name.
        input_shape: optional (height, width, channels) to compute the numbers for.
        num_classes: optional class count to compute the numbers for.

    Returns:
        A `ModelInfo` with description, reference, input shape, classes,
        parameter count, forward FLOPs per image, the layer table (with each
        layer's receptive field) and the search space. Code-built entries have `params` and `flops` of None.

    Example:

    >>> cnnzoo.info("vgg16").params
    138357544
    """
    e = entry(name)
    if e.spec is None:
        return ModelInfo(name, "code", e.description, "", e.source, None, None, None, None, [], {})
    s = e.spec
    numbers = stats.summary(s, tuple(input_shape) if input_shape else None, num_classes)
    search = config.to_dict(s).get("search", {})
    return ModelInfo(
        name=s.name,
        kind=s.kind,
        description=s.description,
        reference=s.reference,
        source=e.source,
        input_shape=tuple(input_shape or s.input_shape),
        num_classes=num_classes or s.num_classes,
        params=numbers["params"],
        flops=numbers["flops"],
        layers=numbers["layers"],
        search=search,
    )


def _doc_summary(fn):
    doc = inspect.getdoc(fn) or ""
    return doc.strip().split("\n")[0]


def register(name=None, *, description=None):
    """Decorator that adds a builder function to the zoo under `name`; or registers a config.

    `cnnzoo.get(name, ...)` calls it with the arguments the caller gave and no
    others: `num_classes`, `input_shape` and `weights` only when they are not
    None, plus any `**overrides`; the function's own defaults apply to the rest.
    It must return a `keras.Model`.

    Given a `.toml` path or a `ModelSpec` instead of a name, `register` adds
    that config to the zoo of the running process (under the config's own
    name) and returns its `ModelSpec`: a config that `cnnzoo.register_best`
    wrote, in a later session, without `CNNZOO_CONFIG_PATH`. Registering the
    same file again replaces the entry (after the file was rewritten).

    Args:
        name: the model name (lower_snake_case); defaults to the function name.
            Or a `.toml` path (str or `os.PathLike`) or a `ModelSpec` to register.
        description: one line for `cnnzoo list`; defaults to the docstring's first line.

    Returns:
        The decorator; it returns the function unchanged. For a config: its `ModelSpec`.

    Example:

    >>> @cnnzoo.register("my_net")
    ... def my_net(num_classes=10, input_shape=(32, 32, 3), weights=None):
    ...     '''A tiny custom network.'''
    ...     ...
    >>> cnnzoo.register("runs/tune/my_digits_net.toml").name  # doctest: +SKIP
    'my_digits_net'
    """
    if isinstance(name, (config.ModelSpec, os.PathLike)) or (isinstance(name, str) and name.endswith(".toml")):
        return _register_config(name, description)

    def decorator(fn):
        model_name = name or fn.__name__
        if not config.NAME_RE.match(model_name):
            raise ConfigError(f"`name` must be lower_snake_case. Received: name={model_name!r}.")
        if not callable(fn):
            raise ConfigError(f"`register` decorates a builder function. Received: {fn!r}.")
        module = getattr(fn, "__module__", "?")
        new = Entry(
            model_name,
            f"@register in module {module} ({fn.__qualname__})",
            builder=fn,
            description=description or _doc_summary(fn),
        )
        _add(_entries(), new)  # raises DuplicateModelError naming both sources
        _code_entries[model_name] = new
        return fn

    if callable(name):  # used bare: @register
        fn, name = name, None
        return decorator(fn)
    return decorator


def _register_config(spec_or_path, description):
    """`register` given a config: adds a data entry for this process; returns its `ModelSpec`."""
    if isinstance(spec_or_path, config.ModelSpec):
        spec, path, source = spec_or_path, None, "cnnzoo.register (a ModelSpec)"
    else:
        path = Path(spec_or_path).expanduser().resolve()
        spec, source = config.load(path), f"{path} (cnnzoo.register)"
    entries = _entries()
    old = entries.get(spec.name)
    if old is not None and path is not None and old.path == path:
        if old.source.endswith("(cnnzoo.register)"):
            _code_entries.pop(spec.name)  # the same file again: its new content replaces the entry
        else:
            return spec  # a directory the registry scans already has it
    new = Entry(spec.name, source, spec=spec, description=description or spec.description, path=path)
    _add(_entries(), new)  # raises DuplicateModelError naming both sources
    _code_entries[spec.name] = new
    return spec


def unregister(name):
    """Removes a model added with `register` (for tests and notebooks)."""
    _code_entries.pop(name, None)
