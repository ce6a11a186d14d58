"""Shared test set-up: quiet TensorFlow, an isolated cnnzoo home, tiny images."""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
OTHER_BACKENDS = ("jax", "torch")  # the backend matrix: the rest of the suite runs on TensorFlow


# The longest test files (seconds of one `make test` run on 2 cores, 2026-12-05), longest first: with
# `--dist loadfile` each file goes whole to the next free worker, so starting with the long ones keeps both
# workers busy to the end instead of leaving one to finish a long file alone (the suite's tail).
LONGEST_FIRST = (
    "test_readme.py",  # ~85 s
    "backend/test_training.py",  # ~77 s
    "zoo/test_zoo.py",  # ~67 s
    "backend/test_gradients.py",  # ~66 s
    "tuning/test_tuning.py",  # ~64 s
    "finetuning/test_faults.py",  # ~58 s
    "zoo/test_families.py",  # ~53 s
    "backend/test_export_process.py",  # ~48 s
    "finetuning/test_distributed_finetune.py",  # ~47 s
    "finetuning/test_batchnorm.py",  # ~45 s
    "backend/test_across_backends.py",  # ~40 s
    "zoo/test_feature_pyramid.py",  # ~38 s
    "cli/test_cli_workflows.py",  # ~38 s
    "finetuning/test_process_safety.py",  # ~37 s
    "finetuning/test_default_recipe.py",  # ~34 s
    "cli/test_cli_export.py",  # ~32 s
)


def pytest_collection_modifyitems(session, config, items):
    """Runs the files of `LONGEST_FIRST` first, in that order; the rest keep their order (a stable sort)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    tests = Path(__file__).resolve().parent

    def key(item):
        try:
            return rank.get(Path(str(item.fspath)).resolve().relative_to(tests).as_posix(), len(rank))
        except ValueError:  # not under tests/
            return len(rank)

    items.sort(key=key)


def on_backend(backend, code, cwd=None, timeout=420):
    """Runs Python `code` in a subprocess under `KERAS_BACKEND=backend`; returns its last stdout line as JSON.

    The code can `from conftest import ...` (tests/ is on its path). A failure shows the subprocess's stderr.
    """
    import json
    import subprocess
    import textwrap

    path = os.pathsep.join(p for p in (str(REPO / "tests"), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": path}
    done = subprocess.run(
        [PYTHON, "-c", textwrap.dedent(code)], cwd=cwd or REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"under KERAS_BACKEND={backend}:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def require_backend(name):
    """Fails (not skips) when the `name` backend's library is missing: `make test` installs it."""
    import importlib.util

    if importlib.util.find_spec(name) is None:
        pytest.fail(f"the {name} backend is not installed: pip install -e '.[{name}]' (make test does)")
    return name


@pytest.fixture(params=OTHER_BACKENDS)
def other_backend(request):
    """Each Keras backend besides TensorFlow; its library must be installed (`make test` installs both)."""
    return require_backend(request.param)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own CNNZOO_HOME, no user config path or offline flag, and leaves no registered model."""
    home = tmp_path_factory.mktemp("cnnzoo_home")
    # The verified ONNX exports (`runtime="auto"`) are keyed by the model file's SHA-256 and built under a lock:
    # one directory per test worker lets tests that predict on the same file share them (the cache's own tests
    # damage and rebuild entries of models only they make).
    shared = tmp_path_factory.getbasetemp() / "shared_exports"
    shared.mkdir(exist_ok=True)
    (home / "exports").symlink_to(shared, target_is_directory=True)
    monkeypatch.setenv("CNNZOO_HOME", str(home))
    monkeypatch.delenv("CNNZOO_CONFIG_PATH", raising=False)
    monkeypatch.delenv("CNNZOO_OFFLINE", raising=False)
    from cnnzoo.zoo import registry

    registry.refresh()
    before = set(registry._code_entries)
    yield home
    for name in set(registry._code_entries) - before:  # what the test registered (register, register_best)
        registry.unregister(name)
    registry.refresh()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def write_image_folder(root, classes=("a", "b"), per_class=6, size=(12, 12), fmt="PNG", seed=0):
    """Writes a real image folder with Pillow: root/<class>/<i>.<fmt>; returns root.

    Each class gets a distinct mean colour so that a tiny model can learn it.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        base = np.array([40 + 180 * (k % 2), 40 + 90 * (k % 3), 200 - 150 * (k % 2)], dtype=np.float64)
        for i in range(per_class):
            pixels = np.clip(base + rng.normal(0, 20, size=(*size, 3)), 0, 255).astype(np.uint8)
            ext = {"JPEG": "jpg"}.get(fmt, fmt.lower())
            Image.fromarray(pixels).save(root / name / f"{i}.{ext}", fmt)
    return root


def brightness_blobs(n=48, classes=3, seed=0, size=12):
    """`(x, y)`: float32 RGB images `size`x`size` whose class sets their brightness (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = np.clip(rng.normal(0, 20, (n, size, size, 3)) + 40 + 70 * y[:, None, None, None], 0, 255)
    return x.astype("float32"), y


def crash_at(epoch):
    """A Keras callback raising `RuntimeError("simulated crash")` when `epoch` begins (kill/resume tests)."""
    import keras

    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, current, logs=None):
            if current == epoch:
                raise RuntimeError("simulated crash")

    return Crash()


@pytest.fixture
def image_folder(tmp_path):
    """A two-class folder of 12 real 12x12 PNG images."""
    return write_image_folder(tmp_path / "images")


class ReliabilityRecorder:
    """Figures of fault and bad-input tests, for docs/reliability.md.

    `make reliability` runs those tests with `CNNZOO_RELIABILITY_OUT` set to a JSON-lines file and
    `benchmarks/reliability.py` turns it into the report; in a plain test run nothing is written.
    """

    def __init__(self, test):
        self.test = test
        self.path = os.environ.get("CNNZOO_RELIABILITY_OUT")

    def record(self, case, **figures):
        """One row of the report: `case` (what was done) and its counts, e.g. cases=600, crashes=0."""
        if not self.path:
            return
        import json

        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"test": self.test, "case": case, **figures}, default=str) + "\n")


@pytest.fixture
def reliability(request):
    return ReliabilityRecorder(request.node.nodeid)
