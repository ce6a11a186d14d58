"""The README's snippets run as written and do what their comments say.

A doctest-like harness: the README's Python blocks run in order in one namespace, in a fresh
directory, and its `cnnzoo ...` command lines run as real subprocesses in the same place, after
the placeholders they name are made real and small:

- `my_birds/` and `my_birds_test/`: image folders of three classes written by Pillow (32x32 JPEGs);
  `new_photo.jpg`, `photo.jpg` and `photos/birds/`: photos of the same kind;
- `weights="imagenet"` becomes `weights=None` (tests never download);
- `hf://someone/birds@v1` becomes the preset directory the block before it wrote;
- `max_trials=20` becomes 2.

A line whose comment starts with a number (`cnnzoo.list_models()  # 17 entries`, `.params  # 138357544`)
is checked: the expression's value (its length, for a list) must be that number. Not run: `make`,
`pip install`, `cnnzoo serve` (a server that runs until stopped: tests/deploy/ start it) and the
backend block's `KERAS_BACKEND=jax` line (tests/backend/ run each workflow on each backend).
"""

import ast
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PLACEHOLDERS = {
    'weights="imagenet"': "weights=None",
    '"hf://someone/birds@v1"': '"presets/birds"',
    "max_trials=20": "max_trials=2",
}
NUMBER_COMMENT = re.compile(r"#\s*([\d,]+)\b")
SKIPPED_COMMANDS = ("make ", "pip ", "cnnzoo serve", "KERAS_BACKEND=")


def snippets(text):
    """`(kind, code)` for each fenced block of the README in order: kind "python" or "shell"."""
    out = []
    for fence, body in re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M):
        out.append(("python" if fence == "python" else "shell", body))
    return out


def write_photos(root, classes=("owl", "robin", "wren"), per_class=8, seed=0):
    """32x32 JPEGs whose class sets a bright square's place (learnable, and Grad-CAM has a place to look)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.normal(60, 15, size=(32, 32, 3))
            pixels[2 + 10 * k : 10 + 10 * k, 4:28] += 150
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / name / f"{i}.jpg", quality=95)
    return root


def run_python(code, namespace, where):
    """Runs one block statement by statement, checking the values that number comments state."""
    for statement in ast.parse(code).body:
        line = code.splitlines()[statement.end_lineno - 1]
        claim = NUMBER_COMMENT.match(line[line.index("#") :]) if "#" in line else None
        if isinstance(statement, ast.Expr) and claim:
            value = eval(compile(ast.Expression(statement.value), where, "eval"), namespace)
            got = len(value) if isinstance(value, (list, tuple)) else int(value)
            assert got == int(claim.group(1).replace(",", "")), f"README says `{line.strip()}`; it gives {got}"
        else:
            exec(compile(ast.Module([statement], type_ignores=[]), where, "exec"), namespace)


def run_command(line, cwd):
    argv = shlex.split(line.split(" #", 1)[0])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "cnnzoo"), *argv[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"`{line}` failed:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr
    return proc


@pytest.mark.slow
def test_every_readme_snippet_runs_as_written(tmp_path, monkeypatch):
    for folder in ("my_birds", "my_birds_test", "photos/birds"):
        write_photos(tmp_path / folder, seed=len(folder))
    for photo in ("new_photo.jpg", "photo.jpg"):
        (tmp_path / photo).write_bytes((tmp_path / "my_birds_test" / "wren" / "0.jpg").read_bytes())
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme"}
    ran = {"python": 0, "shell": 0}
    for n, (kind, code) in enumerate(snippets((REPO / "README.md").read_text(encoding="utf-8"))):
        for placeholder, real in PLACEHOLDERS.items():
            code = code.replace(placeholder, real)
        start = time.perf_counter()
        if kind == "python":
            run_python(code, namespace, f"README.md block {n}")
            print(f"block {n}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
            ran["python"] += 1
            continue
        for line in code.splitlines():
            if line.startswith("cnnzoo ") and not line.startswith(SKIPPED_COMMANDS):
                run_command(line, tmp_path)
                ran["shell"] += 1
                print(f"block {n} `{line[:40]}`: {time.perf_counter() - start:.0f} s", file=sys.stderr)
                start = time.perf_counter()
    assert ran["python"] >= 5 and ran["shell"] >= 4, ran
    assert (tmp_path / "evaluated").is_dir() and (tmp_path / "top_losses.png").stat().st_size > 0
    assert (tmp_path / "where_it_looked.png").stat().st_size > 0 and (tmp_path / "birds.onnx").is_file()
