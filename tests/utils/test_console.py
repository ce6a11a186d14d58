"""Quiet start-up (`cnnzoo/utils/console.py`) in real processes: `import cnnzoo` + a first build, `cnnzoo finetune`,
`cnnzoo serve` print no TensorFlow start-up line; `--verbose` brings them back; progress suits where stdout goes."""

import json
import os
import re
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import PYTHON, REPO, write_image_folder

# What TensorFlow 2.21 prints on start-up (issue 18): the absl header, its C++ records, the no-driver cuInit error.
STARTUP = re.compile(r"absl::InitializeLog|^[IWE]\d{4} \d\d:\d\d:\S+\s+\d+ \S+\.cc:\d+\]|cuInit|oneDNN", re.M)


def _env(level=None, **extra):
    """The test process's environment with `TF_CPP_MIN_LOG_LEVEL` as a user would have it (unset: None)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    return {**env, **extra}


def _cli(*args, level=None, timeout=300):
    return subprocess.run(
        [PYTHON, "-m", "cnnzoo.cli", *map(str, args)],
        cwd=REPO,
        env=_env(level),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """`cnnzoo finetune` under the Makefile's `TF_CPP_MIN_LOG_LEVEL=2`, stdout a pipe: (folder, model, done)."""
    root = tmp_path_factory.mktemp("console")
    folder = write_image_folder(root / "birds", per_class=6, size=(16, 16))
    done = _cli("finetune", "tiny_vgg", folder, "--input-shape", "16x16x3", "--epochs", "2", "--out", root / "run")
    return folder, root / "run" / "tiny_vgg.keras", done


def test_import_and_first_build_print_no_startup_line():
    code = textwrap.dedent(
        """
        import importlib, json, os, sys, warnings
        import cnnzoo
        importlib.reload(cnnzoo)  # a second import installs nothing twice
        model = cnnzoo.get("tiny_vgg", input_shape=(16, 16, 3), num_classes=2, class_names=["owl", "wren"])
        model.predict(__import__("numpy").zeros((1, 16, 16, 3)), verbose=0)
        print("a line of the caller's own", file=sys.stderr)
        hooks = [type(f).__name__ for f in sys.meta_path if type(f).__name__ == "QuietTensorFlowImport"]
        print(json.dumps({"level": os.environ.get("TF_CPP_MIN_LOG_LEVEL"), "hooks": hooks}))
        """
    )
    done = subprocess.run([PYTHON, "-c", code], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not STARTUP.search(done.stderr), done.stderr
    assert done.stderr == "a line of the caller's own\n"
    # the caller's environment as it was (child processes inherit it), and the hook gone once TensorFlow loaded
    assert json.loads(done.stdout.splitlines()[-1]) == {"level": None, "hooks": []}


@pytest.mark.backends
def test_quiet_under_pytorch_whose_dynamo_looks_tensorflow_up_first():
    # `import keras` on PyTorch imports torch._dynamo, which calls importlib.util.find_spec("tensorflow")
    # without importing it: the hook must still be there when tf.data is imported afterwards.
    from conftest import require_backend

    require_backend("torch")
    code = "import cnnzoo, keras, tensorflow as tf; print(keras.config.backend(), tf.constant(1).numpy())"
    env = _env(KERAS_BACKEND="torch")
    done = subprocess.run([PYTHON, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["torch", "1"] and not STARTUP.search(done.stderr), done.stderr


def test_cli_finetune_is_quiet_with_one_line_per_epoch_in_a_file(finetuned):
    _, model, done = finetuned
    assert done.returncode == 0, done.stderr[-3000:]
    assert model.is_file()
    assert not STARTUP.search(done.stderr), done.stderr
    assert "cnnzoo: stage 1/all" in done.stderr  # cnnzoo's own log lines stay
    # stdout is a pipe: Keras's verbose=2, no progress bar's carriage returns or ANSI codes
    assert "\r" not in done.stdout and "\x1b" not in done.stdout
    epochs = [line for line in done.stdout.splitlines() if re.match(r"^\d+/\d+ - \d+m?s - ", line)]
    assert done.stdout.count("Epoch ") == 2 and len(epochs) == 2, done.stdout


def test_verbose_shows_the_startup_lines_again(finetuned):
    folder, model, _ = finetuned
    done = _cli("predict", model, folder / "a" / "0.png", "--verbose")
    assert done.returncode == 0, done.stderr[-3000:]
    assert STARTUP.search(done.stderr), done.stderr  # TensorFlow as it starts without cnnzoo
    assert done.stdout.strip()


def test_cli_serve_is_quiet(finetuned):
    _, model, _ = finetuned
    with socket_port() as port:
        proc = subprocess.Popen(
            [PYTHON, "-m", "cnnzoo.cli", "serve", str(model), "--port", str(port), "--no-explain"],
            cwd=REPO,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/info", timeout=5).read()
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert "serving" in stderr and not STARTUP.search(stderr), stderr


class socket_port:
    """A free port on 127.0.0.1 (the socket is closed before the server binds it)."""

    def __enter__(self):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def __exit__(self, *exc):
        return False


def test_the_filter_drops_only_startup_noise_and_keeps_order():
    # At the file-descriptor level, as TensorFlow's C++ code writes: no TensorFlow needed to show the mechanism.
    code = textwrap.dedent(
        """
        import os, sys
        from cnnzoo.utils.console import _StderrFilter
        with _StderrFilter(2) as f:
            os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
            os.write(2, b"I0000 00:00:1796406767.904001   12225 port.cc:153] oneDNN custom operations are on.\\n")
            os.write(2, b"I0000 00:00:17.9   12225 cudart_stub.cc:31] Could not find cuda drivers on your machine\\n")
            print("python warning line", file=sys.stderr)
            os.write(2, b"E0000 00:00:1796406770.9   12225 cuda_platform.cc:52] failed call to cuInit: (303)\\n")
            os.write(2, b"E0000 00:00:1796406770.9   12225 kernel.cc:1] a real error\\nno newline")
            f.sync()
            print(f.no_driver, file=sys.stdout)
        print("after", file=sys.stderr)
        """
    )
    done = subprocess.run([PYTHON, "-c", code], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "True\n"
    assert done.stderr == (
        "python warning line\nE0000 00:00:1796406770.9   12225 kernel.cc:1] a real error\nno newlineafter\n"
    )


def test_is_startup_noise_follows_the_level():
    from cnnzoo.utils.console import is_startup_noise

    info = "I0000 00:00:1796406767.904001   12225 cpu_feature_guard.cc:227] This TensorFlow binary is optimized"
    warning = "2025-09-17 14:44:05.157831: W external/local_xla/xla/service/computation_placer.cc:177] placer"
    cuinit = "E0000 00:00:1.0   1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error (303)"
    assert is_startup_noise(info, 1) and is_startup_noise(warning, 2) and not is_startup_noise(warning, 1)
    assert not any(is_startup_noise(line, 0) for line in (info, warning, cuinit))  # 0: everything shows
    assert not is_startup_noise(cuinit, 2) and is_startup_noise(cuinit, 2, no_driver=True)  # a GPU's error stays
    assert not is_startup_noise("Traceback (most recent call last):", 3)


def test_keras_verbose_auto_follows_stdout():
    from cnnzoo.utils.console import keras_verbose

    assert [keras_verbose(v) for v in (0, 1, 2)] == [0, 1, 2]
    # a real terminal: progress bars; a pipe: one line per epoch
    code = "from cnnzoo.utils.console import keras_verbose; print(keras_verbose('auto'))"
    piped = subprocess.run([PYTHON, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert piped.stdout.strip() == "2"
    if sys.platform != "win32":
        import pty

        primary, secondary = pty.openpty()
        with subprocess.Popen([PYTHON, "-c", code], cwd=REPO, stdout=secondary, stderr=subprocess.PIPE) as proc:
            os.close(secondary)
            proc.wait(60)
            assert os.read(primary, 100).strip() == b"1"
        os.close(primary)


def test_version():
    import cnnzoo

    done = _cli("--version", timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"cnnzoo {cnnzoo.__version__}"
    assert Path(REPO / "pyproject.toml").read_text().count(f'version = "{cnnzoo.__version__}"') == 1
