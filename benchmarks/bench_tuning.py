"""Tuning benchmarks (issue 4): search overhead, memory across trials, accuracy gained.

One random search of `digits_cnn` on the UCI digits (8x8, 20 trials, up to 8 epochs each,
early stopping), then, in the same process:

1. Search overhead: the search's wall time / the summed time of fitting the same 20 trial
   configurations (same epochs each trial actually trained) in a bare build-compile-fit
   loop (goal <= 1.15). The search creates optimizer and metric variables before `fit`
   (`tuning_space.prebuild`, for memory); a second bare loop does the same, to show the
   search's own overhead apart from that.
2. Memory: resident set size after trial 20 / after trial 2 (goal <= 1.2).
3. Accuracy: test accuracy of the best trial's model against the zoo default trained with
   the same epochs budget (trial 0 of the search is the default; a bare-loop rerun too).

Run: `.venv/bin/python benchmarks/bench_tuning.py` (writes its section of docs/benchmarks.md).
"""

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402

TRIALS = 20
MAX_EPOCHS = 8
PATIENCE = 3
BATCH = 32


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def replay(result, x, y, xv, yv, digits, prebuilt):
    """Fits every trial's configuration for the epochs it trained.

    Returns (total seconds, trial-0 test accuracy, seconds per trial).
    """
    import keras

    from cnnzoo.tuning import space as tuning_space
    from cnnzoo.zoo import builders

    seconds, default_acc, each = 0.0, None, []
    for record in result.trials:
        spec = result.hypermodel.spec_for(record.hyperparameters)
        keras.backend.clear_session()  # untimed, as between trials of the search
        start = time.perf_counter()
        model = builders.compile_model(builders.build(spec), spec.train)
        if prebuilt:
            tuning_space.prebuild(model, spec)
        model.fit(x, y, validation_data=(xv, yv), epochs=record.epochs, batch_size=BATCH, verbose=0)
        each.append(time.perf_counter() - start)
        seconds += each[-1]
        if default_acc is None:
            default_acc = float(model.evaluate(digits.x_test, digits.y_test, verbose=0)[1])
    return seconds, default_acc, each


def main():
    import keras
    import numpy as np

    import cnnzoo
    from cnnzoo.tuning import api as tuning

    digits = cnnzoo.data.digits(seed=0)
    order = np.random.default_rng(0).permutation(len(digits.x_train))
    n_val = len(order) // 5
    x, y = digits.x_train[order[n_val:]], digits.y_train[order[n_val:]]
    xv, yv = digits.x_train[order[:n_val]], digits.y_train[order[:n_val]]

    # warm TensorFlow up once, so that neither side pays the first-graph cost
    warm = cnnzoo.get("digits_cnn")
    warm.fit(x[:256], y[:256], epochs=1, batch_size=BATCH, verbose=0)
    keras.backend.clear_session()

    rss = {}

    def progress(record):
        rss[len(rss) + 1] = rss_mib()
        print(
            f"  trial {record.trial_id:>2}: val_accuracy={record.score:.4f} epochs={record.epochs} "
            f"{record.seconds:.1f}s  rss={rss[len(rss)]:.0f} MiB",
            flush=True,
        )

    with tempfile.TemporaryDirectory() as tmp:
        print(f"search: random, {TRIALS} trials of digits_cnn, up to {MAX_EPOCHS} epochs", flush=True)
        result = tuning.tune(
            "digits_cnn",
            (x, y, xv, yv),
            tuner="random",
            max_trials=TRIALS,
            max_epochs=MAX_EPOCHS,
            out=tmp,
            overwrite=True,
            seed=0,
            batch_size=BATCH,
            early_stopping=PATIENCE,
            verbose=progress,
        )
        search_s = result.seconds
        trial0 = tuning._load_trial_model(
            result.directory, result.trials[0].trial_id, result.hypermodel.spec_for(result.trials[0].hyperparameters)
        )
        default_acc = float(trial0.evaluate(digits.x_test, digits.y_test, verbose=0)[1])
        best_acc = float(result.best_model.evaluate(digits.x_test, digits.y_test, verbose=0)[1])

        print("bare loops: the same configurations, build + compile + fit", flush=True)
        bare_s, bare_default_acc, _ = replay(result, x, y, xv, yv, digits, prebuilt=False)
        prebuilt_s, _, prebuilt_each = replay(result, x, y, xv, yv, digits, prebuilt=True)
        per_trial = statistics.median(t.seconds - b for t, b in zip(result.trials, prebuilt_each))
        outside = search_s - sum(t.seconds for t in result.trials)

    overhead = search_s / bare_s
    memory = rss[TRIALS] / rss[2]
    best = result.best_trial
    lines = [
        "## Tuning: search overhead, memory, accuracy",
        "",
        f"Machine: {machine()}, CPU only. Script: `benchmarks/bench_tuning.py`. Random search of `digits_cnn` "
        f"on the UCI digits (8x8; {len(x)} training, {len(xv)} validation, {len(digits.x_test)} test images), "
        f"{TRIALS} trials, up to {MAX_EPOCHS} epochs each, early stopping (patience {PATIENCE}).",
        "",
        "| measurement | value | goal |",
        "| --- | --- | --- |",
        f"| search wall time, {TRIALS} trials | {search_s:.1f} s | |",
        f"| same {TRIALS} configurations, bare build + compile + fit loop | {bare_s:.1f} s | |",
        f"| ratio search / bare loop | **{overhead:.3f}** | <= 1.15 |",
        f"| same loop, optimizer and metric variables pre-built as the search does | {prebuilt_s:.1f} s | |",
        f"| ratio search / pre-built bare loop | {search_s / prebuilt_s:.3f} | (the search's own overhead) |",
        f"| median per trial: search's trial time - same configuration pre-built bare | {per_trial * 1000:+.0f} ms | |",
        f"| search time outside the trials (oracle, records, session clearing), all {TRIALS} | {outside:.1f} s | |",
        f"| RSS after trial 2 | {rss[2]:.0f} MiB | |",
        f"| RSS after trial {TRIALS} | {rss[TRIALS]:.0f} MiB | |",
        f"| ratio RSS trial {TRIALS} / trial 2 | **{memory:.3f}** | <= 1.2 |",
        f"| test accuracy, zoo default (trial 0 of the search) | {default_acc:.2%} | |",
        f"| test accuracy, zoo default (bare-loop rerun, {result.trials[0].epochs} epochs) | {bare_default_acc:.2%} | |",
        f"| test accuracy, best trial ({best.trial_id}, val_accuracy {best.score:.4f}) | **{best_acc:.2%}** | |",
        "",
        f"Best trial's hyperparameters: `{best.hyperparameters}` (ties on val_accuracy go to the lower val_loss).",
        "",
        f"Memory: RSS grows by {(rss[TRIALS] - rss[2]) / (TRIALS - 2):.1f} MiB per trial here. That is "
        "TensorFlow 2.21 keeping each trained step's graph after its model is gone (a plain Keras "
        "build-compile-fit loop shows it too); creating the optimizer and metric variables before `fit` "
        '(which the search does) cuts it by about two thirds. See docs/tuning.md, "Speed and memory".',
    ]
    markdown = "\n".join(lines)
    print("\n" + markdown)
    print(f"\nwrote {write_section('tuning', markdown)}")


if __name__ == "__main__":
    main()
