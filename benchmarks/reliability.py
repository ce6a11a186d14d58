"""`make reliability`: runs the fault and bad-input tests for real and writes docs/reliability.md.

The tests (listed in `TESTS`) record their figures through the `reliability` fixture of
tests/conftest.py when `CNNZOO_RELIABILITY_OUT` names a file; this script runs them with pytest
(slow ones included), reads those records and writes the report: what cnnzoo promises, then one
row per scenario with the counts of that run. Nothing in the report is typed by hand.
"""

import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
TESTS = [
    "tests/zoo/test_config_fuzz.py",
    "tests/data/test_image_fuzz.py",
    "tests/zoo/test_safe_loading.py",
    "tests/zoo/test_weights.py::test_wrong_hash_fails_clearly_and_leaves_nothing",
    "tests/zoo/test_weights.py::test_truncated_transfer_fails_clearly_and_leaves_nothing",
    "tests/zoo/test_weights.py::test_server_down_fails_clearly_and_leaves_nothing",
    "tests/utils/test_locks.py",
    "tests/finetuning/test_process_safety.py",
    "tests/finetuning/test_faults.py",
    "tests/finetuning/test_finetune.py::test_kill_9_mid_epoch_then_resume_loses_at_most_one_epoch",
    "tests/tuning/test_concurrent_search.py",
    "tests/tuning/test_process_state.py",
    "tests/tuning/test_tuning.py::test_resume_after_a_killed_search_skips_finished_trials",
    "tests/tuning/test_tuning.py::test_distributed_chief_and_two_workers_survive_a_killed_worker",
    "tests/finetuning/test_checksums.py",
    "tests/finetuning/test_byte_flips.py",
]

PROMISES = """\
# Reliability

What cnnzoo promises, and the figures of the last real run of the tests that check it
(`make reliability` reruns them and rewrites this page; nothing here is typed by hand).

- **Nothing saved is lost.** Checkpoints, run state, models, plots, search records, configs and
  downloaded weights are written to a temporary file and renamed into place: a crash, `kill -9`
  or a full disk leaves the previous file or the new one, never half of one. A killed
  fine-tuning run or search resumes where it stopped, losing at most the epoch or trial in
  flight.
- **One process per run.** A fine-tuning run directory and a search project are locked by the
  process that uses them (an OS lock the kernel frees however the process ends); a second one is
  refused with the holder's pid and host, and touches nothing.
- **No code runs from a model file.** Models load in Keras safe mode: a file holding Python code
  (a Lambda layer) is refused with `cnnzoo.UnsafeModelError`.
- **Files prove they are whole.** Every file cnnzoo writes and later trusts (epoch and stage
  checkpoints, the run state, feature caches, the final model, exports, a preset's weights) has a
  SHA-256 sidecar (`<file>.sha256`, `sha256sum -c` reads it), checked before the file is used: a
  flipped byte is reported by name and nothing is loaded from that file. A run resumes from the
  previous epoch's checkpoint (two are kept) or `state.previous.json`; a feature cache is computed
  again; a damaged export or preset raises `cnnzoo.IntegrityError` naming it and the fix.
- **Downloads are checked.** Weights are fetched only with a published sha256 (or md5), verified
  before they enter the cache; a bad or cut-off download leaves nothing behind.
- **Bad input is reported, not fatal.** Broken image files are skipped with a reason and listed;
  a broken config is a `cnnzoo.ConfigError` naming the key, the file and what was received.
- **The caller's process is left as it was.** Random state, matplotlib's backend, `gc` and
  threads are restored after a run, even one that raised.
"""


def main():
    out = Path(tempfile.mkdtemp(prefix="cnnzoo-reliability-")) / "records.jsonl"
    env = {**os.environ, "CNNZOO_RELIABILITY_OUT": str(out), "TF_CPP_MIN_LOG_LEVEL": "3"}
    tests = [t for t in TESTS if (ROOT / t.split("::")[0]).is_file()]
    start = datetime.datetime.now()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = (datetime.datetime.now() - start).total_seconds()
    summary = [line for line in proc.stdout.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    summary = summary[-1].strip("= ") if summary else "pytest printed no summary"
    records = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    print(proc.stdout[-3000:] if proc.returncode else summary)
    DOC.write_text(render(records, summary, seconds, proc.returncode, len(tests)))
    print(f"wrote {DOC} ({len(records)} scenarios)")
    return proc.returncode


def render(records, summary, seconds, returncode, groups):
    import keras
    import tensorflow as tf

    lines = [PROMISES, "## The last run", ""]
    status = "all passed" if returncode == 0 else "SOME FAILED: see the pytest output"
    lines.append(
        f"{datetime.date.today().isoformat()}, {platform.machine()} with {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}: "
        f"{groups} test groups in {seconds:.0f} s, {summary} ({status})."
    )
    lines += ["", "| scenario | figures | test |", "|---|---|---|"]
    for r in records:
        figures = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in r.items() if k not in ("test", "case"))
        lines.append(f"| {r['case']} | {figures} | `{r['test']}` |")
    if not records:
        lines.append("| (no scenario recorded) | | |")
    lines += byte_flips(records)
    return "\n".join(lines) + "\n"


def byte_flips(records):
    """The byte-flip scenarios as one table: detected / resumed (or rebuilt, refused) / lost per kind of file."""
    flips = [r for r in records if "byte flips in" in r["case"]]
    if not flips:
        return []
    lines = [
        "",
        "## Byte flips",
        "",
        "One bit flipped at a seeded random offset in a fresh copy of each file, then read by the code that",
        "reads it in a run (tests/finetuning/test_byte_flips.py); one full run resumed after a flip per kind",
        "of run file is in tests/finetuning/test_checksums.py (rows above). *Recovered*: resumed from the",
        "previous checkpoint or state, the cache computed again, or (export, preset) an `IntegrityError`",
        "naming the file and the fix. *Lost*: loaded from a damaged file. *Silent without sha256*: flips the",
        "format's own reader accepts once the sidecar is removed, what went unnoticed before it.",
        "",
        "| file | flips | detected | recovered | lost | silent without sha256 |",
        "|---|---|---|---|---|---|",
    ]
    for r in flips:
        recovered = r.get("resumed", r.get("rebuilt", r.get("refused")))
        kind = r["case"].split("byte flips in ", 1)[1]
        lines.append(
            f"| {kind} | {r['flips']} | {r['detected']} | {recovered} | {r['lost']} | {r['silent_without_sha256']} |"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
