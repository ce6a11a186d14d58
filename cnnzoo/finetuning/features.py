"""The feature cache of frozen stages: backbone features computed once, the head trained on them.

When everything below the head is frozen and the data is not augmented, each
epoch would push the same images through the same frozen network. Instead the
features are computed once and a model of the head alone trains on them
(2.9-3.2x faster in docs/benchmarks.md, identical results to float32 round-off).

In a run directory the features are kept for a resume of the same stage
(`backup/stage_K/features.npz`, removed with the stage's checkpoints when it
finishes) with a SHA-256 sidecar: a resumed stage reads them back instead of
running the backbone again; a damaged or unreadable cache is reported by name,
removed and rebuilt.
"""

import hashlib
import logging
import math
import time
from pathlib import Path

import numpy as np

from cnnzoo.backend.inference import compiled_forward
from cnnzoo.errors import IntegrityError
from cnnzoo.utils import integrity

__all__ = ["feature_cache_ok", "cached_head_model", "CACHE_LIMIT_BYTES", "CACHE_FILE"]

CACHE_FILE = "features.npz"  # in the stage's backup directory

log = logging.getLogger("cnnzoo.finetuning")

CACHE_LIMIT_BYTES = 2 * 2**30  # `cache_features="auto"` skips the cache above this much feature memory


def feature_cache_ok(inputs, feature_shape, cache_features, mixed=False):
    """Whether a frozen-backbone stage may train the head on cached features.

    Never with MixUp/CutMix (`mixed`): they mix images, not features. Label
    smoothing works on cached features (the targets change, not the inputs).
    """
    if cache_features is False or inputs.plain_train is None or mixed:
        return False
    if cache_features is True:
        return True
    size = 4 * math.prod(int(d) for d in feature_shape) * (inputs.num_train + inputs.num_validation)
    return not inputs.augmented and size <= CACHE_LIMIT_BYTES


def cached_head_model(parts, inputs, seed, cache=None):
    """Backbone features computed once (or read back from `cache`); a model of the head alone to train on them.

    Args:
        parts: the model's `freezing.anatomy`.
        inputs: the `cnnzoo.data.Inputs` (`plain_train`, `validation`).
        seed: the shuffle seed of the feature batches.
        cache: optional path of a `.npz` file that keeps the features (with its SHA-256 sidecar)
            for a resume of the same stage; a damaged one is reported, removed and rebuilt.

    Returns:
        `(head model, train batches, validation batches or None)`.

    Example:

    >>> head, train, validation = cached_head_model(parts, inputs, seed=0)  # doctest: +SKIP
    """
    import keras
    import tensorflow as tf

    extractor = keras.Model(parts.model.inputs, parts.head.input)
    run = compiled_forward(extractor)  # holds it weakly: `extractor` lives until this function returns

    def features(ds):
        feats, labels = [], []
        for x, y in ds:
            feats.append(run(np.asarray(x, np.float32)))
            labels.append(np.asarray(y))
        return np.concatenate(feats), np.concatenate(labels)

    t = time.perf_counter()
    key = _weights_key(extractor)
    stored = _read(cache, key)
    if stored is not None:
        fx, fy, vx, vy = stored
        log.info("feature cache: %d images' features read back from %s", len(fx), cache)
    else:
        fx, fy = features(inputs.plain_train)
        vx, vy = features(inputs.validation) if inputs.validation is not None else (None, None)
        _write(cache, key, fx, fy, vx, vy)
    train = tf.data.Dataset.from_tensor_slices((fx, fy)).shuffle(len(fx), seed=seed, reshuffle_each_iteration=True)
    train = train.batch(inputs.batch_size).prefetch(2)
    validation = None
    if vx is not None:
        validation = tf.data.Dataset.from_tensor_slices((vx, vy)).batch(inputs.batch_size)
    log.info("feature cache: %d images -> %s features in %.1f s", len(fx), fx.shape[1:], time.perf_counter() - t)
    feature_input = keras.Input(shape=fx.shape[1:], name="features")
    return keras.Model(feature_input, parts.head(feature_input), name=f"{parts.model.name}_head"), train, validation


def _weights_key(extractor):
    """The SHA-256 of the frozen network's weights: a cache of other weights' features is not reused."""
    import keras

    digest = hashlib.sha256()
    for w in extractor.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(w)).tobytes())
    return digest.hexdigest()


def _read(cache, key):
    """`(fx, fy, vx, vy)` from a cache file that matches its sidecar and `key`; None when there is none, it is
    damaged (reported, removed) or it holds the features of other weights."""
    if cache is None or not Path(cache).is_file():
        return None
    try:
        integrity.verify(cache, "feature cache", required=True)
        with np.load(cache, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        if str(arrays["key"]) != key:
            log.info("feature cache %s holds the features of other weights: computed again", cache)
            return None
        return arrays["fx"], arrays["fy"], arrays.get("vx"), arrays.get("vy")
    except (IntegrityError, OSError, ValueError, KeyError) as e:  # damaged, truncated, not an .npz of features
        log.warning(
            "feature cache %s is unusable (%s): removed; the features are computed again",
            cache,
            str(e).splitlines()[0][:200],
        )
        integrity.remove_with_sidecar(cache)
        return None


def _write(cache, key, fx, fy, vx, vy):
    """Keeps the features in `cache` with their sidecar; a full disk only costs the reuse (logged)."""
    if cache is None:
        return
    arrays = {"key": np.array(key), "fx": fx, "fy": fy, **({"vx": vx, "vy": vy} if vx is not None else {})}
    try:
        integrity.atomic_save_checked(
            cache,
            lambda tmp: np.savez(tmp, **arrays),
            size_hint=sum(a.nbytes for a in arrays.values()) + 65536,
        )
    except OSError as e:  # DiskFullError is one
        log.warning("feature cache not kept at %s (%s): a resume computes the features again", cache, e)
