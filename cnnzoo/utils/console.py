"""What cnnzoo leaves on the console: TensorFlow's start-up lines filtered out, progress that suits the output.

TensorFlow prints its start-up notices while `import tensorflow` loads its
libraries: the absl header "All log messages before absl::InitializeLog() is
called are written to STDERR", oneDNN and CPU-instruction notices, "Could not
find cuda drivers", and then, at the first device use on a machine without a
GPU driver, "failed call to cuInit: ... (303)". `TF_CPP_MIN_LOG_LEVEL` silences
TensorFlow's later lines, but these are written before TensorFlow reads it
(tensorflow/tensorflow#100442), and no other setting reaches them.

So `import cnnzoo` installs `QuietTensorFlowImport`, an import hook that acts
once, when TensorFlow is first imported in the process (by cnnzoo or by the
caller):

- `TF_CPP_MIN_LOG_LEVEL` is 2 while TensorFlow loads (TensorFlow reads it then
  and keeps it), unless the caller set it; the variable is restored afterwards,
  so child processes see the caller's environment;
- file descriptor 2 (stderr) goes to a temporary file that a thread follows,
  for the length of the import only: each line is forwarded at once unless it
  is a start-up line the level hides (severity below it, the absl header, the
  known duplicate-registration and no-driver cuInit errors); everything else,
  Python warnings included, goes through unchanged and in order;
- where TensorFlow reports no CUDA driver, its devices are listed inside that
  window, so the cuInit error it then logs is filtered too. A GPU is never
  hidden: where a driver exists, nothing about devices is touched.

`TF_CPP_MIN_LOG_LEVEL=0` set by the caller, or `cnnzoo --verbose`
(`uninstall()`), shows every line again.

`keras_verbose("auto")` is the Keras `fit` verbosity for where stdout goes:
progress bars (1) on a terminal or in a notebook, one line per epoch (2) in a
file or pipe, where a progress bar would be raw `\\r` and ANSI codes.
"""

import importlib.util
import os
import re
import sys

__all__ = ["QuietTensorFlowImport", "install", "uninstall", "keras_verbose", "is_startup_noise", "LEVEL_VARIABLE"]

LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
DEFAULT_LEVEL = "2"  # INFO and WARNING hidden: what the Makefile and the tests set

# A C++ log line of TensorFlow, absl's format ("I0000 00:00:1796406767.904001   12225 port.cc:153] ...") or
# TensorFlow's older one ("2025-09-17 14:44:05.157831: I external/.../cudart_stub.cc:32] ...").
_RECORD = re.compile(r"^(?:([IWEF])\d{4} \d\d:\d\d:[\d.]+\s+\d+ |\d{4}-\d\d-\d\d [\d:.]+: ([IWEF]) )\S+:\d+\] (.*)")
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}
_HEADER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_CONTINUATION = re.compile(r"^To enable the following instructions: .* rebuild TensorFlow with the appropriate")
_NO_DRIVER = "Could not find cuda drivers on your machine"
_CUINIT = "failed call to cuInit"
# errors TensorFlow's GPU wheels log on every import, harmless (tensorflow/tensorflow#62075)
_DUPLICATE = re.compile(r"Unable to register cu\w+ factory: Attempting to register factory for plugin")


def keras_verbose(verbose):
    """The Keras `fit` verbosity for `verbose`: `"auto"` is 1 on a terminal or in a notebook, else 2.

    Keras 3 draws progress bars whenever it runs on a POSIX system, so in a
    log file "auto" would leave raw `\\r` and ANSI codes; 2 writes one line per
    epoch instead. Other values are returned as they are.

    Args:
        verbose: `"auto"`, 0, 1 or 2 (Keras's values).

    Returns:
        `verbose`, with `"auto"` replaced by 1 or 2.

    Example:

    >>> keras_verbose("auto")  # under `python script.py > log.txt`  # doctest: +SKIP
    2
    """
    if not (isinstance(verbose, str) and verbose == "auto"):
        return verbose
    return 1 if _interactive(sys.stdout) else 2


def _interactive(stream):
    if "ipykernel" in sys.modules or "PYCHARM_HOSTED" in os.environ:  # notebooks and IDE consoles draw bars
        return True
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def is_startup_noise(line, level, no_driver=False):
    """Whether a line TensorFlow writes while it starts is hidden at `TF_CPP_MIN_LOG_LEVEL=level`.

    Args:
        line: one line of stderr, without its newline.
        level: int, the log level in effect (0 shows everything).
        no_driver: bool; TensorFlow reported that it found no CUDA driver, so
            its cuInit error says nothing more.

    Returns:
        bool.

    Example:

    >>> is_startup_noise("I0000 00:00:17.9   12 port.cc:153] oneDNN custom operations are on.", 2)
    True
    """
    if level <= 0:
        return False
    if line.startswith(_HEADER) or _CONTINUATION.match(line):
        return True
    record = _RECORD.match(line)
    if record is None:
        return False
    severity = _SEVERITY[record.group(1) or record.group(2)]
    message = record.group(3)
    if severity < level:
        return True
    return bool(_DUPLICATE.search(message) or (no_driver and _CUINIT in message))


class _StderrFilter:
    """File descriptor 2 sent to an unlinked temporary file that a thread follows: each line is forwarded at
    once to the real stderr unless it is start-up noise.

    A file rather than a pipe: a writer never waits for the reader, even while the main thread holds the GIL
    in a library's static initialisers, so no amount of output can stall the import.
    """

    def __init__(self, level):
        import threading  # here, not at the top: `import cnnzoo` stays light

        self.level = level
        self.no_driver = False
        self.offset = 0  # bytes of the file read so far (the thread's)
        self.pending = b""
        self.stop = threading.Event()

    def __enter__(self):
        import tempfile
        import threading

        sys.stderr.flush()
        self.saved = os.dup(2)
        self.file = tempfile.TemporaryFile()
        os.dup2(self.file.fileno(), 2)
        self.thread = threading.Thread(target=self._follow, name="cnnzoo-stderr", daemon=True)
        self.thread.start()
        return self

    def sync(self, timeout=5.0):
        """Waits until the thread has read every byte written so far (`no_driver` is then up to date)."""
        import time

        sys.stderr.flush()
        size = os.fstat(self.file.fileno()).st_size
        deadline = time.monotonic() + timeout
        while self.offset < size and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)

    def __exit__(self, *exc):
        try:
            sys.stderr.flush()
        finally:
            os.dup2(self.saved, 2)
            self.stop.set()
            self.thread.join(5.0)
            if self.pending:
                self._line(self.pending, newline=b"")
            os.close(self.saved)
            self.file.close()
        return False

    def _follow(self):
        fd = self.file.fileno()
        while True:
            stopping = self.stop.is_set()  # read before the last look: every byte written before it is seen
            chunk = os.pread(fd, 65536, self.offset)
            if chunk:
                *lines, self.pending = (self.pending + chunk).split(b"\n")
                for line in lines:
                    self._line(line)
                self.offset += len(chunk)
            elif stopping:
                return
            else:
                self.stop.wait(0.01)

    def _line(self, raw, newline=b"\n"):
        text = raw.decode("utf-8", "replace")
        if _NO_DRIVER in text:
            self.no_driver = True
        if not is_startup_noise(text, self.level, self.no_driver):
            os.write(self.saved, raw + newline)


def _level(value):
    """TensorFlow's reading of `TF_CPP_MIN_LOG_LEVEL`: the leading integer, 0 when there is none."""
    found = re.match(r"\s*([+-]?\d+)", value or "")
    return int(found.group(1)) if found else 0


class QuietTensorFlowImport:
    """A `sys.meta_path` finder that imports TensorFlow once with its start-up lines filtered (see the module).

    It removes itself when TensorFlow is imported (a mere `importlib.util.find_spec("tensorflow")`, as
    PyTorch's dynamo does, leaves it in place) and leaves every other import alone.
    """

    finding = False  # inside its own search for TensorFlow's spec

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow" or self.finding:
            return None
        self.finding = True
        try:
            spec = importlib.util.find_spec("tensorflow")  # by the other finders
        finally:
            self.finding = False
        given = os.environ.get(LEVEL_VARIABLE)
        level = _level(given if given is not None else DEFAULT_LEVEL)
        if level <= 0 or spec is None or not hasattr(getattr(spec, "loader", None), "exec_module"):
            return spec
        if not hasattr(os, "pread") or not _stderr_is_a_file_descriptor():
            return spec
        exec_module = spec.loader.exec_module

        def exec_quietly(module):
            uninstall()  # TensorFlow is imported once
            if given is None:
                os.environ[LEVEL_VARIABLE] = DEFAULT_LEVEL
            try:
                with _StderrFilter(level) as stderr:
                    exec_module(module)
                    stderr.sync()
                    if stderr.no_driver:  # the cuInit error comes with the first device use: have it now
                        _list_devices(module)
            finally:
                if given is None:
                    os.environ.pop(LEVEL_VARIABLE, None)

        spec.loader.exec_module = exec_quietly
        return spec


def _stderr_is_a_file_descriptor():
    try:
        os.fstat(2)
        return True
    except OSError:  # no stderr at all (a detached process): nothing to filter
        return False


def _list_devices(tensorflow):
    try:
        tensorflow.config.list_physical_devices("GPU")
    except Exception:  # a failure here is TensorFlow's to report at its own first device use
        pass


def install():
    """Puts `QuietTensorFlowImport` first in `sys.meta_path` (once), unless TensorFlow is already imported.

    First: a finder before it that removes itself while the import system walks the list would make that walk
    skip the next finder.
    """
    uninstall()
    if "tensorflow" not in sys.modules:
        sys.meta_path.insert(0, QuietTensorFlowImport())


def uninstall():
    """Removes `QuietTensorFlowImport` from `sys.meta_path`: TensorFlow then starts with all its lines."""
    sys.meta_path[:] = [f for f in sys.meta_path if not _is_hook(f)]


def _is_hook(finder):
    # by name: a reloaded module's class is another object, and one hook is enough
    return type(finder).__name__ == QuietTensorFlowImport.__name__
