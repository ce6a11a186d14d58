"""The layout holds: parts as subpackages, imports one way, internals in one module.

See docs/architecture.md. These read the source with `ast` (no import), except the
TensorFlow check, which imports the light modules in a fresh process.
"""

import ast
import re
import subprocess

import pytest

from conftest import PYTHON, REPO

PACKAGE = REPO / "cnnzoo"
MAX_LINES = 425  # "split a module past ~400 lines" (DESIGN.md)
MAX_FUNCTION_LINES = 60  # from the `def` line to the last, without the docstring
LONG = "# long:"  # a comment in a function's own body that says why it reads better long exempts it
MAX_PARAMETERS = 10  # self/cls, *args and **kwargs not counted

# Functions that take more parameters, each with why: public entry points whose keywords are the API.
MANY_PARAMETERS = {
    "cnnzoo.finetuning.run.finetune": "public API: cnnzoo.finetune, its keywords are the fields of cnnzoo.Recipe",
    "cnnzoo.finetuning.lr_finder.find_lr": "public API: cnnzoo.find_lr, the training keywords of cnnzoo.finetune",
    "cnnzoo.tuning.api.tune": "public API: cnnzoo.tune, its keywords mirror cnnzoo.finetune and the CLI",
    "cnnzoo.data.folders.image_folder": "public API: mirrors keras.utils.image_dataset_from_directory",
    "cnnzoo.zoo.layers.ConvBlock.__init__": "a Keras layer: its arguments are its get_config, one per Block field",
}

# Which parts each part may import (besides itself). Arrows point one way:
# base (errors, utils, _compat) -> zoo -> data -> workflows (finetuning, tuning, deploy) -> cli.
# The top-level API (`import cnnzoo`) is for users, and for the cli and the shipped-weights script.
ALLOWED = {
    "errors": set(),
    "utils": {"errors", "_compat"},
    "_compat": {"errors"},
    "backend": {"errors", "utils", "_compat"},
    "zoo": {"errors", "utils", "_compat"},
    "data": {"errors", "utils", "_compat", "zoo"},
    "deploy": {"errors", "utils", "_compat", "backend", "zoo", "data"},
    "finetuning": {"errors", "utils", "_compat", "backend", "zoo", "data", "deploy", "explain"},
    "tuning": {"errors", "utils", "_compat", "backend", "zoo", "data"},
    "explain": {"errors", "utils", "_compat", "backend", "zoo", "data", "deploy"},
    "pretrained": {"errors", "utils", "_compat", "zoo", "data", "__init__"},
    "cli": {
        "errors",
        "utils",
        "_compat",
        "backend",
        "zoo",
        "data",
        "deploy",
        "finetuning",
        "tuning",
        "explain",
        "__init__",
    },
    "__init__": {"errors", "utils", "zoo"},
}


def _modules():
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _part(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(module, path):
    """(target module, imported names, line) for every cnnzoo import, at any depth of the file."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "cnnzoo"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            if base.split(".")[0] != "cnnzoo":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub, [], node.lineno) if sub in MODULES else (base, [alias.name], node.lineno))
    return found


def test_importing_cnnzoo_and_its_light_parts_loads_no_tensorflow():
    code = (
        "import sys, cnnzoo; cnnzoo.list_models(); cnnzoo.info('vgg16')\n"
        "import cnnzoo.zoo, cnnzoo.data, cnnzoo.finetuning, cnnzoo.tuning, cnnzoo.deploy, cnnzoo.cli, cnnzoo.utils\n"
        "import cnnzoo.zoo.config, cnnzoo.zoo.registry, cnnzoo.zoo.stats, cnnzoo.zoo.config_writer\n"
        "import cnnzoo.cli.app, cnnzoo.cli.listing, cnnzoo.cli.info; cnnzoo.cli.app.build_parser()\n"
        "cnnzoo.Recipe(stages='head:1:1e-3', mixup=0.1).to_json(); cnnzoo.data.DataOptions()\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'keras_tuner') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_too_long(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module]} has {lines} lines: split it (DESIGN.md: past ~400 lines)"


def test_parts_import_one_way():
    wrong = []
    for module, path in MODULES.items():
        part = _part(module)
        for target, _, line in _imports(module, path):
            other = _part(target) if target != "cnnzoo" else "__init__"
            if other != part and other not in ALLOWED[part]:
                wrong.append(f"{path.relative_to(REPO)}:{line} ({part}) imports {target} ({other})")
    assert not wrong, "imports against the one-way arrows (docs/architecture.md):\n" + "\n".join(wrong)


def test_no_import_cycle():
    graph = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, _, _ in _imports(module, path):
            if target in MODULES and target != module:
                graph[module].add(target)
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_private_name_is_imported_across_parts():
    wrong = []
    for module, path in MODULES.items():
        for target, names, line in _imports(module, path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and _part(target) != _part(module):
                wrong.append(f"{path.relative_to(REPO)}:{line} imports {private} from {target}")
    assert not wrong, "\n".join(wrong)


def _defined_private_names():
    """Every `_name` cnnzoo itself defines: functions, classes, attributes it assigns, module globals."""
    names = set()
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
    return {n for n in names if n.startswith("_")}


def test_keras_internals_are_used_only_in_compat():
    ours = _defined_private_names()
    wrong = []
    for module, path in MODULES.items():
        if module == "cnnzoo._compat":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                wrong += [f"{where} imports {n}" for n in names if n.startswith(("keras.src", "keras_tuner.src"))]
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value.startswith(("keras.src", "keras_tuner.src"))
            ):
                wrong.append(f"{where} names {node.value!r}")
            elif (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and node.attr not in ours
            ):
                wrong.append(f"{where} uses the private attribute {node.attr}")
    assert not wrong, "Keras/keras-tuner internals outside cnnzoo/_compat.py:\n" + "\n".join(wrong)


def test_tests_mirror_the_layout():
    parts = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    tested = {p.name for p in (REPO / "tests").iterdir() if p.is_dir() and list(p.glob("test_*.py"))}
    assert parts - {"utils", "pretrained"} <= tested, sorted(parts - tested)


def test_every_test_file_has_a_row_in_the_tests_table():
    """docs/architecture.md, "## Tests": one row per tests/**/test_*.py, naming what of cnnzoo it tests."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert "\n## Tests\n" in text, "docs/architecture.md has no '## Tests' section"
    section = text.split("\n## Tests\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(tests/[^`]+)` \|", section, re.M)
    files = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "tests").rglob("test_*.py"))
    missing = [f for f in files if f not in rows]
    assert not missing, "add a row to the table in docs/architecture.md, '## Tests', for:\n" + "\n".join(missing)
    stale = sorted(set(rows) - set(files))
    assert not stale, "rows of docs/architecture.md, '## Tests', for test files that do not exist:\n" + "\n".join(stale)
    assert len(rows) == len(set(rows)), "a test file has two rows"


def _functions(tree):
    """(qualified name, node, lines of the functions nested in it) for every function and method of a module."""
    found = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                nested = {
                    line
                    for sub in ast.walk(child)
                    if sub is not child and isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                    for line in range(sub.lineno, sub.end_lineno + 1)
                }
                found.append((f"{prefix}.{child.name}", child, nested))
                visit(child, f"{prefix}.{child.name}")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}.{child.name}")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def _length(node):
    """Lines from the `def` line to the last, without the docstring."""
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def _parameters(node):
    args = node.args
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    return names[1:] if names[:1] in (["self"], ["cls"]) else names


PARTS = sorted({_part(module) for module in MODULES})


@pytest.mark.parametrize("part", PARTS)
def test_no_function_is_too_long(part):
    """Every function and method is at most 60 lines without its docstring, unless its own body (not a
    function nested in it) has a `# long: <reason>` comment."""
    wrong = []
    for module, path in MODULES.items():
        if _part(module) != part:
            continue
        source = path.read_text()
        text = source.splitlines()
        for name, node, nested in _functions(ast.parse(source)):
            own = [text[i - 1] for i in range(node.lineno, node.end_lineno + 1) if i not in nested]
            if _length(node) > MAX_FUNCTION_LINES and not any(LONG in line for line in own):
                wrong.append(f"{path.relative_to(REPO)}:{node.lineno} {module}{name}: {_length(node)} lines")
    assert not wrong, (
        f"functions longer than {MAX_FUNCTION_LINES} lines without their docstring: split them into named "
        f"parts, or say why one reads better long with a `{LONG} <reason>` comment in its body:\n" + "\n".join(wrong)
    )


@pytest.mark.parametrize("part", PARTS)
def test_no_function_takes_too_many_parameters(part):
    """At most 10 parameters (self/cls, *args and **kwargs not counted), except the public entry points of
    MANY_PARAMETERS: a helper takes an options object (a frozen dataclass) instead."""
    wrong = []
    for module, path in MODULES.items():
        if _part(module) != part:
            continue
        for name, node, _ in _functions(ast.parse(path.read_text())):
            count = len(_parameters(node))
            if count > MAX_PARAMETERS and f"{module}{name}" not in MANY_PARAMETERS:
                wrong.append(f"{path.relative_to(REPO)}:{node.lineno} {module}{name}: {count} parameters")
    assert not wrong, (
        f"functions taking more than {MAX_PARAMETERS} parameters: pass a frozen dataclass or an options "
        f"object instead (public entry points go in MANY_PARAMETERS, with the reason):\n" + "\n".join(wrong)
    )


def test_the_parameter_allowlist_names_existing_functions():
    defined = {
        f"{module}{name}" for module, path in MODULES.items() for name, _, _ in _functions(ast.parse(path.read_text()))
    }
    assert not set(MANY_PARAMETERS) - defined, sorted(set(MANY_PARAMETERS) - defined)
