"""Runs every benchmark script in turn (`make bench`); each writes its section of docs/benchmarks.md.

The scripts: bench_backends_predict (cnnzoo.predict's forward pass on TensorFlow, JAX and PyTorch),
bench_core, bench_data (reading a JPEG folder vs `image_dataset_from_directory`), bench_defaults
(finetune's defaults against the RBF SVM), bench_finetune, bench_memory (peak RSS with and without a
cache budget), bench_predict, bench_tuning (every `bench_*.py` here, in name order), except
bench_fastai, which needs the fastai venv: `make bench-fastai`.

Benchmarks are not tests: they print ratios measured side by side and assert nothing.
Run them on an otherwise idle machine: the ratios are only as good as the quiet.
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEPARATE = {"bench_fastai.py"}  # `make bench-fastai`: torch and fastai in .venv-fastai


def main():
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        if script.name in SEPARATE:
            continue
        print(f"== {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script)]).returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
