"""Trains the shipped `digits_cnn` weights on the UCI digits and saves them.

Run `python -m cnnzoo.pretrained.train_digits`: it trains `digits_cnn` at its
default 8x8x1 input on the training split of `cnnzoo.data.digits()` (the
default `test_size=0.2, seed=0`; the 360 test images are never seen), writes
`cnnzoo/pretrained/digits_cnn_digits.weights.h5` and prints the file's sha256
(copy it into `zoo_configs/digits_cnn.toml`, `[weights.digits]`) and the
test accuracy. Everything is seeded, so a rerun on the same software gives
the same accuracy.
"""

import argparse
import time
from pathlib import Path

__all__ = ["train", "main", "SEED", "EPOCHS", "DEFAULT_OUT"]

SEED = 0
EPOCHS = 40
BATCH_SIZE = 32
DEFAULT_OUT = Path(__file__).resolve().parent / "digits_cnn_digits.weights.h5"


def train(out=DEFAULT_OUT, seed=SEED, epochs=EPOCHS, verbose=0):
    """Trains `digits_cnn` on the digits training split and saves its weights.

    Args:
        out: str or `Path` of the `.weights.h5` file to write.
        seed: int, for the weights, the shuffling and the Keras RNG.
        epochs: int.
        verbose: Keras `fit` verbosity.

    Returns:
        `(path, test_accuracy, sha256)`.

    Example:

    >>> path, accuracy, sha256 = train("/tmp/digits.weights.h5", epochs=2)  # doctest: +SKIP
    """
    import keras
    import tensorflow as tf

    import cnnzoo
    from cnnzoo.zoo.builders import compile_model
    from cnnzoo.zoo.weights import file_hash

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    data = cnnzoo.data.digits()  # the held-out split the acceptance test scores on
    model = cnnzoo.get("digits_cnn", compile=False)
    steps = epochs * -(-len(data.x_train) // BATCH_SIZE)
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=steps, alpha=0.01)
    compile_model(model, learning_rate=schedule)
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=BATCH_SIZE, shuffle=True, verbose=verbose)
    _, accuracy = model.evaluate(data.x_test, data.y_test, verbose=0)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    bare = cnnzoo.get("digits_cnn", compile=False)  # saved without optimizer state: smaller, loads cleanly
    bare.set_weights(model.get_weights())
    bare.save_weights(out)
    return out, float(accuracy), file_hash(out)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m cnnzoo.pretrained.train_digits", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="weights file to write (.weights.h5)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--verbose", type=int, default=2)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    path, accuracy, sha256 = train(args.out, args.seed, args.epochs, args.verbose)
    print(
        f"digits_cnn on the UCI digits (8x8x1), {args.epochs} epochs, seed {args.seed}, "
        f"{time.perf_counter() - start:.0f} s"
    )
    print(f"test accuracy: {accuracy:.2%} on the 360 held-out images (RBF-SVM reference: 98.9-99.2%)")
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    print(f'sha256 = "{sha256}"   (zoo_configs/digits_cnn.toml, [weights.digits])')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
