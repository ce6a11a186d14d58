"""Family files: one TOML holding a family's shared tables and a `[variants.NAME]` table per member.

A family file (`zoo_configs/resnet.toml`) names its `family` (equal to the file name) and holds
what every member shares (`input_shape`, `preprocessing`, `[head]`, `[search]`, ...); each
`[variants.NAME]` table holds what is the member's own (`description`, `[backbone]`,
`[weights.imagenet]`, ...). A member is the shared tables with its own merged in, table by table,
and is validated like any other config (`cnnzoo.zoo.config.parse`) under its variant name.

```toml
family = "resnet"
description = "ResNet v1 (He et al. 2015), keras.applications."
input_shape = [224, 224, 3]
num_classes = 1000
preprocessing = "caffe"

[head]
pooling = "avg"

[variants.resnet50]
description = "ResNet-50 ..."
backbone = { application = "ResNet50", params = 23587712, channels = 2048 }
```

Like `config`, this module imports no other zoo module but `config` and no TensorFlow.
"""

from pathlib import Path

import tomllib

from cnnzoo.errors import ConfigError
from cnnzoo.zoo import config
from cnnzoo.zoo.config_rules import fail, where

__all__ = ["is_family", "expand", "load_all"]


def is_family(raw):
    """Whether a raw config mapping is a family file (it has `[variants.*]` tables)."""
    return isinstance(raw, dict) and "variants" in raw


def _merged(base, own):
    """`base` with `own` merged in: tables merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in own.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def expand(raw, source="<memory>"):
    """The member specs of a family mapping, in file order.

    Args:
        raw: dict, a family file as read from TOML (with `family` and `[variants.NAME]` tables).
        source: str, where it came from; named in every error.

    Returns:
        A list of `ModelSpec`, one per variant, each with `family` set.

    Example:

    >>> raw = {"family": "tiny", "description": "d", "input_shape": [8, 8, 1], "num_classes": 2,
    ...        "variants": {"tiny_a": {"blocks": [{"filters": 4}]}}}
    >>> [s.name for s in expand(raw)]
    ['tiny_a']
    """
    family = raw.get("family")
    if not isinstance(family, str) or not config.NAME_RE.match(family):
        fail(where(source), "family", "must name the family in lower_snake_case in a file with `[variants]`", family)
    variants = raw["variants"]
    if not isinstance(variants, dict) or not variants:
        fail(where(source), "variants", "must hold one `[variants.NAME]` table per member", variants)
    shared = {k: v for k, v in raw.items() if k != "variants"}
    specs = []
    for name, own in variants.items():
        if not isinstance(own, dict):
            fail(where(source), f"variants.{name}", "must be a table of the member's own keys", own)
        if "name" in own or "family" in own:
            fail(where(source), f"variants.{name}", "takes its name from the table (no `name` or `family` key)", own)
        specs.append(config.parse({**_merged(shared, own), "name": name}, f"{source} [variants.{name}]"))
    return specs


def load_all(path):
    """The specs of one zoo TOML file in a registry directory: a family file's members, or the one config.

    A single config's `name` must equal the file name, a family file's `family` likewise.

    Args:
        path: str or `Path` of a `.toml` file.

    Returns:
        A list of `ModelSpec`.

    Example:

    >>> [s.name for s in load_all("zoo_configs/convnext.toml")][:2]  # doctest: +SKIP
    ['convnext_tiny', 'convnext_small']
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"`path` must be an existing TOML file. Received: path={str(path)!r}.") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"`{path}` is not valid TOML: {e}. Fix the file or remove it from the config path.") from None
    if not is_family(raw):
        spec = config.parse(raw, str(path))
        if spec.name != path.stem:
            raise ConfigError(
                f"`name` must equal the file name `{path.stem}` (in {path}). "
                f"Received: name={spec.name!r}. Rename the file or the model."
            )
        return [spec]
    if raw.get("family") != path.stem:
        fail(where(str(path)), "family", f"must equal the file name `{path.stem}`", raw.get("family"))
    return expand(raw, str(path))
