"""The docs name only things that exist.

Every dotted name `cnnzoo.a.b...` in README.md and docs/*.md, inside backticks or a code block,
must resolve: the longest importable module prefix is imported, the rest is looked up with
`getattr` (so the lazy attributes of `cnnzoo`, such as `cnnzoo.finetune`, count). Every
`python -m X` must name an importable module, and every repository path in backticks
(`tests/tuning/test_tuning.py::test_x`, `cnnzoo/zoo/config.py`) and every relative link must
exist. A name in quotes (`"cnnzoo.models"`, an entry-point group) is a string, not a name.

The package's own docstrings are held to the same rule: each subpackage's `__init__` docstring
names every module of the package in backticks, and every `cnnzoo.*` name in a docstring or a
comment under cnnzoo/ resolves, with the current module path (not a 0.1 alias).

Only the modules the docs name are imported, once, in this process: TensorFlow is loaded only
because some of them (`cnnzoo.zoo.builders`, ...) need it.
"""

import ast
import importlib
import importlib.util
import io
import re
import tokenize

import pytest

from conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PACKAGE = REPO / "cnnzoo"
SUBPACKAGES = sorted(p.parent for p in PACKAGE.glob("*/__init__.py"))

_FENCE = re.compile(r"^ *(```|~~~)[^\n]*\n.*?^ *\1 *$", re.M | re.S)
_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
# not after a word character, a dot, a slash (paths, `~/.cnnzoo`) or a quote (strings)
_NAME = re.compile(r"(?<![\w.\"'/])cnnzoo(?:\.[A-Za-z_]\w*)+")
_PYTHON_M = re.compile(r"\bpython[\d.]*\s+-m\s+([A-Za-z_][\w.]*\w)")
_PATH = re.compile(
    r"(?<![\w./~-])((?:cnnzoo|tests|benchmarks|docs)/[\w./-]*?(?:\.py|\.md|\.toml|/))(?:::(\w+))?(?![\w/])"
)
_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def code_spans(text):
    """(line number, code) for each fenced block and each inline `code` span of a markdown text."""
    spans = []
    for m in _FENCE.finditer(text):
        spans.append((text.count("\n", 0, m.start()) + 1, m.group(0)))
    # blank the fences out (keeping line numbers), then read the inline spans of the prose
    prose = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for m in _SPAN.finditer(prose):
        spans.append((prose.count("\n", 0, m.start()) + 1, m.group(2)))
    return spans


def _found(pattern):
    """Sorted unique (doc, first line, *the match's groups or the match) over every doc's code."""
    first_line = {}
    for doc in DOCS:
        rel = doc.relative_to(REPO).as_posix()
        for line, code in code_spans(doc.read_text(encoding="utf-8")):
            for m in pattern.finditer(code):
                key = (rel, *(g or "" for g in m.groups() or (m.group(0),)))
                at = line + code.count("\n", 0, m.start())
                first_line[key] = min(first_line.get(key, at), at)
    return sorted((key[0], first_line[key], *key[1:]) for key in first_line)


NAMES = _found(_NAME)
MODULES_RUN = _found(_PYTHON_M)
PATHS = _found(_PATH)


def resolve(name):
    """Imports the longest importable prefix of `name` and getattr's the rest; returns the object.

    Raises LookupError naming what is missing; an import error inside an existing module is
    raised as it is (a broken module is not a stale doc).
    """
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        module_name = ".".join(parts[:i])
        if parts[i - 1] == "__main__":  # importing it would run it
            continue
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
                continue  # this prefix is not a module: try a shorter one
            raise
        for j, attr in enumerate(parts[i:], start=i):
            try:
                obj = getattr(obj, attr)
            except AttributeError:
                raise LookupError(f"`{'.'.join(parts[:j])}` (module {module_name}) has no attribute `{attr}`") from None
        return obj
    raise LookupError(f"no module `{parts[0]}`")


def _id(case):
    return f"{case[0]}:{case[2]}" + (f"::{case[3]}" if len(case) > 3 and case[3] else "")


@pytest.mark.parametrize("case", NAMES, ids=_id)
def test_dotted_name_resolves(case):
    doc, line, name = case
    try:
        resolve(name)
    except LookupError as e:
        pytest.fail(
            f"{doc}:{line} names `{name}`, which does not resolve: {e}. Update the doc to the "
            f"current module path (docs/architecture.md lists where things live)."
        )


# cnnzoo 0.1's flat modules, still attributes of `cnnzoo` for old code; the docs use the new paths
OLD_MODULE_ALIASES = ("config", "registry", "stats", "builders", "inference", "stages", "freezing")


def _old_paths(names):
    """`where:line names ...: write ...` for each (where, line, name) that uses a cnnzoo 0.1 module path."""
    import cnnzoo

    return [
        f"{where}:{line} names `{name}`: write `{cnnzoo._LAZY[name.split('.')[1]]}"
        f"{name[len('cnnzoo.') + len(name.split('.')[1]) :]}`"
        for where, line, name in names
        if name.split(".")[1] in OLD_MODULE_ALIASES
    ]


def test_docs_use_the_current_module_paths():
    old = _old_paths(NAMES)
    assert not old, "the docs use cnnzoo 0.1 module paths:\n" + "\n".join(old)


@pytest.mark.parametrize("case", MODULES_RUN, ids=_id)
def test_python_m_module_is_importable(case):
    doc, line, module = case
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        spec = None
    assert spec is not None, f"{doc}:{line} runs `python -m {module}`, but there is no module `{module}`."
    if spec.submodule_search_locations is None:
        importlib.import_module(module)
        return
    importlib.import_module(module)  # a package: `python -m` runs its __main__, which must exist
    main = importlib.util.find_spec(f"{module}.__main__")
    assert main is not None, f"{doc}:{line} runs `python -m {module}`, but the package has no __main__.py."
    compile(main.loader.get_source(main.name), main.origin, "exec")  # without running it


@pytest.mark.parametrize("case", PATHS, ids=_id)
def test_repository_path_exists(case):
    doc, line, path, test_name = case
    target = REPO / path
    assert target.exists(), f"{doc}:{line} names `{path}`, which does not exist in the repository."
    if test_name:
        defined = re.search(rf"^\s*(?:async\s+)?(?:def|class)\s+{test_name}\b", target.read_text(), re.M)
        assert defined, f"{doc}:{line} names `{path}::{test_name}`, but {path} defines no {test_name}."


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.relative_to(REPO).as_posix())
def test_relative_links_exist(doc):
    text = _FENCE.sub("", doc.read_text(encoding="utf-8"))
    broken = [
        link
        for link in _LINK.findall(text)
        if "://" not in link and not link.startswith("mailto:") and not (doc.parent / link).exists()
    ]
    assert not broken, f"{doc.relative_to(REPO)} links to missing files: {broken}"


def test_the_extraction_finds_what_the_docs_name():
    """Guards the patterns: a test over nothing would pass whatever the docs say."""
    sample = (
        "Prose cnnzoo.not_code is ignored, `cnnzoo.get(name)` and ``cnnzoo.data.prepare`` are "
        "read.\n\n```python\nfrom cnnzoo.finetuning.stages import Stage  # cnnzoo.Stage\n"
        '[project.entry-points."cnnzoo.models"]\n```\n`~/.cnnzoo/configs`, `python -m cnnzoo.cli`, '
        "`tests/tuning/test_tuning.py::test_x`\n"
    )
    code = "\n".join(c for _, c in code_spans(sample))
    assert sorted(set(_NAME.findall(code))) == [
        "cnnzoo.Stage",
        "cnnzoo.cli",
        "cnnzoo.data.prepare",
        "cnnzoo.finetuning.stages",
        "cnnzoo.get",
    ]
    assert _PYTHON_M.findall(code) == ["cnnzoo.cli"]
    assert _PATH.findall(code) == [("tests/tuning/test_tuning.py", "test_x")]
    names = {(doc, name) for doc, _, name in NAMES}
    assert ("README.md", "cnnzoo.get") in names
    assert ("docs/architecture.md", "cnnzoo.data.prepare") in names
    assert len({doc for doc, _ in names}) == len(DOCS), "a doc without any cnnzoo name: is it read?"
    assert ("docs/data_and_weights.md", "cnnzoo.pretrained.train_digits") in {(d, m) for d, _, m in MODULES_RUN}


def test_resolve_reports_what_is_missing():
    assert resolve("cnnzoo.zoo.config.SEARCH_KEYS")
    assert callable(resolve("cnnzoo.list_models"))
    with pytest.raises(LookupError, match="has no attribute `training_data`"):
        resolve("cnnzoo.training_data.prepare")
    with pytest.raises(LookupError, match="has no attribute `no_such_name`"):
        resolve("cnnzoo.zoo.registry.no_such_name")


def source_names(source):
    """(line, name) for each `cnnzoo.*` name in the docstrings and comments of Python source.

    Docstrings are those of the module, its classes and its functions (read with `ast`); other
    string literals (error messages, ...) are not read. A quoted name is a string, as in the docs.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        first = node.body[0] if node.body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            doc = first.value
            found += [(doc.lineno + doc.value.count("\n", 0, m.start()), m.group(0)) for m in _NAME.finditer(doc.value)]
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            found += [(tok.start[0], m.group(0)) for m in _NAME.finditer(tok.string)]
    return sorted(found)


def _source_found():
    """Sorted unique (file, first line, name) over every module of cnnzoo/."""
    first_line = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        for line, name in source_names(path.read_text(encoding="utf-8")):
            first_line[(rel, name)] = min(first_line.get((rel, name), line), line)
    return sorted((rel, line, name) for (rel, name), line in first_line.items())


SOURCE_NAMES = _source_found()


def package_modules(package):
    """The modules of a package directory (every .py file but `__init__`), sorted."""
    return sorted(p.stem for p in package.glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("package", SUBPACKAGES, ids=lambda p: p.name)
def test_package_docstring_names_every_module(package):
    tree = ast.parse((package / "__init__.py").read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree) or ""
    named = {code.strip() for _, code in code_spans(doc)}
    missing = [m for m in package_modules(package) if m not in named]
    assert not missing, (
        f"the docstring of cnnzoo/{package.name}/__init__.py does not name its modules {missing}: add a line "
        f"like '- `{missing[0]}`: what it holds' for each (docs/architecture.md lists where things live)."
    )


@pytest.mark.parametrize("case", SOURCE_NAMES, ids=_id)
def test_docstring_name_resolves(case):
    path, line, name = case
    try:
        resolve(name)
    except LookupError as e:
        pytest.fail(
            f"{path}:{line} names `{name}`, which does not resolve: {e}. Write the current module path "
            f"(docs/architecture.md lists where things live), or quote it if it is a string (an entry-point group)."
        )


def test_docstrings_use_the_current_module_paths():
    old = _old_paths(SOURCE_NAMES)
    assert not old, "docstrings or comments under cnnzoo/ use cnnzoo 0.1 module paths:\n" + "\n".join(old)


def test_the_source_extraction_finds_docstrings_and_comments():
    """Guards `source_names`: docstrings at every level and comments are read, other strings are not."""
    sample = (
        '"""Module: `cnnzoo.get` and cnnzoo.zoo.stats."""\n'
        "\n"
        "class A:\n"
        '    """Uses cnnzoo.data.prepare; the `\\"cnnzoo.models\\"` group is a string."""\n'
        "\n"
        "    def f(self):\n"
        '        """Line one.\n'
        "\n"
        '        >>> cnnzoo.zoo.builders.build(cnnzoo.spec("lenet5"))\n'
        '        """\n'
        '        return "cnnzoo.not_a_docstring"  # see cnnzoo.finetuning.freezing\n'
    )
    assert source_names(sample) == [
        (1, "cnnzoo.get"),
        (1, "cnnzoo.zoo.stats"),
        (4, "cnnzoo.data.prepare"),
        (9, "cnnzoo.spec"),
        (9, "cnnzoo.zoo.builders.build"),
        (11, "cnnzoo.finetuning.freezing"),
    ]
    files = {path for path, _, _ in SOURCE_NAMES}
    assert len(files) > 20, f"only {len(files)} files under cnnzoo/ name a cnnzoo name: is the source read?"
    assert len(SUBPACKAGES) >= 9 and {"zoo", "data", "finetuning"} <= {p.name for p in SUBPACKAGES}
    assert "memory" in package_modules(PACKAGE / "data") and "__init__" not in package_modules(PACKAGE / "data")
