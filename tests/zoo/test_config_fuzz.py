"""A seeded fuzzer over the real zoo configs: every mutated TOML text gives a `ConfigError` that names
the key, or a spec whose stats work and whose model (when small) predicts probabilities.

Mutations: wrong types, negatives, zeros, huge numbers, NaN/inf, empty lists and tables, unknown
keys, missing keys, deleted and duplicated tables, truncated text, random byte flips.
"""

import copy
import math
import random
import re
import time
from collections import Counter

import numpy as np
import pytest

import cnnzoo
from cnnzoo.zoo import config, stats
from conftest import REPO

try:
    import tomllib
except ImportError:  # pragma: no cover
    import tomli as tomllib

SMALL = ("lenet5", "digits_cnn", "mnist_cnn", "cifar10_cnn", "tiny_vgg", "bird_classifier")
SEED = 20240508
CASES = 600
MAX_PARAMS = 2_000_000
MAX_FLOPS = 50_000_000  # one forward pass stays cheap
MAX_BUILDS = 15  # distinct specs built (the rest are checked up to their stats)

BAD_VALUES = [
    "x",
    "",
    "relu",
    "valid",
    True,
    False,
    0,
    -1,
    -7,
    1,
    2,
    3,
    1024,
    1025,
    65536,
    65537,
    10**6,
    2**31 - 1,
    2**31,
    2**63 - 1,
    -(2**63),
    0.0,
    -0.5,
    0.5,
    1.5,
    1e308,
    -1e308,
    math.nan,
    math.inf,
    -math.inf,
    [],
    [0],
    [-1],
    [1, 2, 3],
    ["a", "b"],
    [1.5],
    [[1]],
    [True],
    {},
    {"min": 1},
    {"min": 3, "max": 1},
    {"a": 1},
]
BLOCK_KEYS = [
    "filters",
    "convs",
    "kernel_size",
    "strides",
    "padding",
    "activation",
    "batch_norm",
    "bn_momentum",
    "pool",
    "pool_size",
    "pool_strides",
    "pool_padding",
    "dropout",
]
HEAD_KEYS = ["pooling", "dense", "dropout", "activation"]
UNKNOWN_KEYS = ["filterz", "Kernel_size", "units", "dense", "weights", "blocks", "name", "x y"]


# ------------------------------------------------------------------ a small TOML writer (NaN/inf included)


def _value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def _key(k):
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else '"' + k + '"'


def _dumps(raw):
    lines, tables = [], []
    for k, v in raw.items():
        if isinstance(v, list) and v and all(isinstance(t, dict) for t in v) and k == "blocks":
            tables += [(f"[[{k}]]", t) for t in v]
        elif isinstance(v, dict) and v and all(isinstance(t, dict) for t in v.values()) and k == "weights":
            tables += [(f"[{k}.{_key(name)}]", t) for name, t in v.items()]
        elif isinstance(v, dict) and k in ("head", "search", "train", "backbone"):
            tables.append((f"[{k}]", v))
        else:
            lines.append(f"{_key(k)} = {_value(v)}")
    for header, body in tables:
        lines += ["", header] + [f"{_key(k)} = {_value(x)}" for k, x in body.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------- mutations


def _paths(node, prefix=()):
    """Every (path, value) below `node`: table keys and list items."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        yield prefix + (k,), v
        yield from _paths(v, prefix + (k,))


def _parent(raw, path):
    node = raw
    for k in path[:-1]:
        node = node[k]
    return node


def _mutate_value(raw, rng):
    path, _ = rng.choice(list(_paths(raw)))
    parent = _parent(raw, path)
    parent[path[-1]] = copy.deepcopy(rng.choice(BAD_VALUES))
    if path[0] == "blocks" and len(path) == 3 and rng.random() < 0.5:
        # "same" padding keeps a feature map alive through huge kernels, strides and pools, so the model
        # gets built: a max-pool of 2**31 used to abort the process inside TensorFlow
        parent.setdefault("padding", "same")
        parent.setdefault("pool_padding", "same")
    return path


def _set_known_key(raw, rng):
    """Sets a key the schema knows (present in the file or not) in a block or the head to a bad value."""
    blocks = raw.get("blocks")
    usable = [i for i, b in enumerate(blocks) if isinstance(b, dict)] if isinstance(blocks, list) else []
    if rng.random() < 0.75 and usable:
        i = rng.choice(usable)
        table, path = blocks[i], ("blocks", i, rng.choice(BLOCK_KEYS))
        if rng.random() < 0.5:
            table.update(padding="same", pool_padding="same", pool="max")
    else:
        if not isinstance(raw.get("head"), dict):
            raw["head"] = {}
        table, path = raw["head"], ("head", rng.choice(HEAD_KEYS))
    table[path[-1]] = copy.deepcopy(rng.choice(BAD_VALUES))
    return path


def _delete_key(raw, rng):
    path, _ = rng.choice(list(_paths(raw)))
    parent = _parent(raw, path)
    if isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent.pop(path[-1])
    return None


def _add_unknown_key(raw, rng):
    tables = [(), *(p for p, v in _paths(raw) if isinstance(v, dict))]
    path = rng.choice(tables)
    node = _parent(raw, path + ("",)) if path else raw
    node[rng.choice(UNKNOWN_KEYS)] = copy.deepcopy(rng.choice(BAD_VALUES[:12]))
    return None


def _delete_required(raw, rng):
    raw.pop(rng.choice(["name", "description", "input_shape", "num_classes", "blocks"]), None)
    return None


def _text_mutation(text, rng):
    kind = rng.choice(["truncate", "flip", "flip", "drop_table", "dup_table", "dup_line"])
    data = bytearray(text.encode())
    if kind == "truncate":
        return bytes(data[: rng.randrange(len(data))]).decode("utf-8", "replace")
    if kind == "flip":
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(data))
            data[i] = rng.choice([data[i] ^ (1 << rng.randrange(8)), rng.randrange(256)])
        return bytes(data).decode("utf-8", "replace")
    sections = re.split(r"(?m)^(?=\[)", text)
    if kind == "drop_table" and len(sections) > 1:
        sections.pop(rng.randrange(1, len(sections)))
        return "".join(sections)
    if kind == "dup_table" and len(sections) > 1:
        i = rng.randrange(1, len(sections))
        sections.insert(i, sections[i] if sections[i].endswith("\n") else sections[i] + "\n")
        return "".join(sections)
    lines = text.splitlines(keepends=True)
    i = rng.randrange(len(lines))
    return "".join(lines[: i + 1] + [lines[i]] + lines[i + 1 :])


def _cases(bases, n, seed):
    """(label, mutated path or None, TOML text) for `n` seeded mutations of the base configs."""
    rng = random.Random(seed)
    structural = [_mutate_value] * 3 + [_set_known_key] * 3 + [_delete_key, _add_unknown_key, _delete_required]
    for i in range(n):
        name = SMALL[i % len(SMALL)]
        text = bases[name]
        if rng.random() < 0.3:
            yield name, None, _text_mutation(text, rng)
            continue
        raw = tomllib.loads(text)
        count = 1 if rng.random() < 0.7 else rng.randint(2, 3)
        paths = [rng.choice(structural)(raw, rng) for _ in range(count)]
        yield name, (paths[0] if count == 1 else None), _dumps(raw)


def _bases():
    bases = {name: (REPO / "zoo_configs" / f"{name}.toml").read_text() for name in SMALL}
    bases["bird_classifier"] = bases["bird_classifier"].replace(
        "input_shape = [224, 224, 3]", "input_shape = [32, 32, 3]"
    )
    return bases


# ------------------------------------------------------------------------------------------ the test


def _keys_named(message):
    return re.findall(r"`([^`]+)`", message)


def test_mutated_configs_give_config_errors_or_working_models(reliability):
    t0 = time.perf_counter()
    bases = _bases()
    for name, text in bases.items():  # the unmutated texts are valid and parse into what they say
        assert config.loads(text, f"{name}.toml").name == name
    outcome = Counter()
    built = {}
    leaf_errors = named = 0
    for i, (name, path, text) in enumerate(_cases(bases, CASES, SEED)):
        what = f"case {i} ({name}, mutated {path}):\n{text}"
        try:
            spec = config.loads(text, f"fuzz_{i}.toml")
        except cnnzoo.ConfigError as e:
            message = str(e)
            assert _keys_named(message), f"no key in backticks: {message}\n{what}"
            assert "Received:" in message or "not valid TOML" in message or "but missing" in message, (
                f"no `Received:`: {message}\n{what}"
            )
            outcome["config_error"] += 1
            if path is not None and isinstance(path[-1], str):
                leaf_errors += 1
                named += any(path[-1] in re.split(r"[.\[\]]", k) for k in _keys_named(message))
            continue
        except Exception as e:  # noqa: BLE001 - the point of the test
            pytest.fail(f"config.loads raised {type(e).__name__}: {e}\n{what}")
        outcome["spec"] += 1
        try:
            rows = stats.layer_stats(spec)
        except cnnzoo.ConfigError as e:
            assert "Received:" in str(e) and _keys_named(str(e)), str(e)
            outcome["stats_error"] += 1
            continue
        except Exception as e:  # noqa: BLE001
            pytest.fail(f"layer_stats raised {type(e).__name__}: {e}\n{what}")
        params, flops = sum(r.params for r in rows), sum(r.flops for r in rows)
        assert params > 0 and flops >= 0
        small = params < MAX_PARAMS and flops < MAX_FLOPS and math.prod(spec.input_shape) <= 256 * 256 * 3
        key = repr(spec)
        if not small or key in built:
            outcome["stats_only" if not small else "duplicate"] += 1
            continue
        if len(built) >= MAX_BUILDS:
            outcome["not_built"] += 1
            continue
        built[key] = _check_model(spec, params, what)
        outcome["model"] += 1
    seconds = time.perf_counter() - t0
    print(
        f"config fuzz: {CASES} cases in {seconds:.1f} s: {dict(outcome)}; "
        f"{named}/{leaf_errors} single-key errors name the key"
    )
    reliability.record(
        "mutated zoo configs (seeded fuzzer)",
        cases=CASES,
        config_errors=outcome["config_error"],
        specs=outcome["spec"],
        models_built_and_run=outcome["model"],
        other_exceptions=0,
        errors_naming_the_mutated_key=f"{named}/{leaf_errors}",
    )
    # not vacuous: many of each kind
    assert outcome["config_error"] >= CASES // 4
    assert outcome["spec"] >= CASES // 10
    assert outcome["model"] >= 12
    assert named >= 0.6 * leaf_errors


def _check_model(spec, params, what):
    import keras

    from cnnzoo.zoo import builders

    try:
        model = builders.build(spec)
    except cnnzoo.ConfigError as e:
        assert "Received:" in str(e), str(e)
        return "config_error"
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"build raised {type(e).__name__}: {e}\n{what}")
    assert isinstance(model, keras.Model) and model.count_params() == params, what
    image = np.zeros((1, *spec.input_shape), dtype="float32")
    probs = np.asarray(model(image, training=False))
    assert probs.shape == (1, spec.num_classes), what
    assert np.all(np.isfinite(probs)) and np.all(probs >= 0) and abs(probs.sum() - 1) < 1e-4, what
    keras.backend.clear_session()
    return "model"


@pytest.mark.parametrize(
    "key, value",
    [
        ("pool_size", 2**31),
        ("pool_strides", 2**63 - 1),
        ("strides", 2**31),
        ("kernel_size", 65537),
        ("convs", 2**63 - 1),
    ],
)
def test_sizes_tensorflow_cannot_hold_are_config_errors(key, value):
    """Found by the fuzzer: a max-pool of 2**31 with "same" padding aborted the process inside TensorFlow,
    and `convs = 2**63 - 1` exhausted memory while parsing."""
    text = (
        f'name = "t"\ndescription = "d"\ninput_shape = [16, 16, 3]\nnum_classes = 2\n[[blocks]]\nfilters = 4\n'
        f'padding = "same"\npool_padding = "same"\n{key} = {value}\n'
    )
    rule = rf"`blocks\[0\]\.{key}` must be an integer >= \d+ and <= .*Received: "
    with pytest.raises(cnnzoo.ConfigError, match=rule):
        config.loads(text)
