"""Families of zoo entries: which entries belong together, and the filters of `list_models`.

An entry's family is the `family` of its config (every member of a family file has it; a single
config may declare one, as `vgg16.toml` does). `cnnzoo.list_models(family="resnet")` and
`cnnzoo list --family resnet` keep the members of one family; `pretrained=True` keeps the entries
with named weights (`[weights.NAME]` tables). Nothing here imports TensorFlow or builds a model.
"""

from cnnzoo.errors import UnknownModelError, closest

__all__ = ["family_of", "families", "select", "smallest_members"]


def family_of(entry):
    """The family name of a registry `Entry` ("" when it has none or is built by code)."""
    spec = getattr(entry, "spec", None)
    return spec.family if spec is not None else ""


def families(entries):
    """`{family: [names]}` of a registry's entries (name -> `Entry`), names sorted."""
    out = {}
    for name in sorted(entries):
        fam = family_of(entries[name])
        if fam:
            out.setdefault(fam, []).append(name)
    return dict(sorted(out.items()))


def select(entries, names, family=None, pretrained=None):
    """`names` kept by the `family` and `pretrained` filters of `list_models`.

    Args:
        entries: the registry, name -> `Entry`.
        names: the names to filter (already matched by the glob pattern).
        family: None for all, or a family name; an unknown one raises `UnknownModelError`.
        pretrained: None for all, True for entries with named weights, False for those without.

    Returns:
        A list of names, in the order given.

    Example:

    >>> select(registry._entries(), ["resnet50", "lenet5"], family="resnet")  # doctest: +SKIP
    ['resnet50']
    """
    if family is not None:
        known = families(entries)
        if family not in known:
            raise UnknownModelError(
                f"`family` must be one of the zoo's families ({', '.join(known) or 'none'}); `{family}` is not "
                f"one.{closest(family, known)} See the README's families table or `cnnzoo list --json` "
                f"(each entry's `family`). Received: family={family!r}."
            )
        names = [n for n in names if family_of(entries[n]) == family]
    if pretrained is not None:
        if not isinstance(pretrained, bool):
            raise ValueError(
                f"`pretrained` must be None, True (entries with named weights) or False. "
                f"Received: pretrained={pretrained!r}."
            )
        names = [n for n in names if _has_weights(entries[n]) == pretrained]
    return names


def _has_weights(entry):
    spec = getattr(entry, "spec", None)
    return bool(spec is not None and spec.weights)


def smallest_members(specs):
    """The smallest member (fewest backbone parameters) of each family, and every entry without one.

    The tiering rule of the registry-driven tests: every entry is built and counted; the expensive
    steps (save and reload, a forward pass, training) run for these.

    Args:
        specs: `{name: ModelSpec}`.

    Returns:
        A set of names.

    Example:

    >>> "resnet50" in smallest_members({n: cnnzoo.spec(n) for n in cnnzoo.list_models()})  # doctest: +SKIP
    True
    """
    keep, best = set(), {}
    for name, spec in specs.items():
        if spec.backbone is None or not spec.family:
            keep.add(name)
            continue
        if spec.family not in best or spec.backbone.params < specs[best[spec.family]].backbone.params:
            best[spec.family] = name
    return keep | set(best.values())
