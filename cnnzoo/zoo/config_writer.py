"""Zoo configs back to TOML: `dumps(spec)` writes what `cnnzoo.zoo.config.loads` reads back."""

from cnnzoo.zoo.config import ModelSpec, to_dict

__all__ = ["dumps"]


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")


def dumps(spec_or_raw):
    """Writes a `ModelSpec` (or its raw dict) as zoo TOML that `loads` reads back."""
    raw = to_dict(spec_or_raw) if isinstance(spec_or_raw, ModelSpec) else spec_or_raw
    lines, tables = [], []
    for k, v in raw.items():
        if k in ("blocks", "stages"):
            tables.extend((f"[[{k}]]", b) for b in v)
        elif isinstance(v, dict):
            tables.append((f"[{k}]", v))
        else:
            lines.append(f"{k} = {_toml_value(v)}")
    for header, body in tables:
        if header == "[weights]":  # one sub-table per weights name
            for wname, wtable in body.items():
                lines += ["", f"[weights.{wname}]"] + [f"{k} = {_toml_value(x)}" for k, x in wtable.items()]
            continue
        lines += ["", header] + [f"{k} = {_toml_value(x)}" for k, x in body.items()]
    return "\n".join(lines) + "\n"
