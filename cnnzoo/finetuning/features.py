"""The feature cache of frozen stages: backbone features computed once, the head trained on them.

When everything below the head is frozen and the data is not augmented, each
epoch would push the same images through the same frozen network. Instead the
features are computed once and a model of the head alone trains on them
(2.9-3.2x faster in docs/benchmarks.md, identical results to float32 round-off).
"""

import logging
import math
import time

import numpy as np

from cnnzoo.backend.inference import compiled_forward

__all__ = ["feature_cache_ok", "cached_head_model", "CACHE_LIMIT_BYTES"]

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


def cached_head_model(parts, inputs, seed):
    """Backbone features computed once; a model of the head alone to train on them."""
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
    fx, fy = features(inputs.plain_train)
    train = tf.data.Dataset.from_tensor_slices((fx, fy)).shuffle(len(fx), seed=seed, reshuffle_each_iteration=True)
    train = train.batch(inputs.batch_size).prefetch(2)
    validation = None
    if inputs.validation is not None:
        vx, vy = features(inputs.validation)
        validation = tf.data.Dataset.from_tensor_slices((vx, vy)).batch(inputs.batch_size)
    log.info("feature cache: %d images -> %s features in %.1f s", len(fx), fx.shape[1:], time.perf_counter() - t)
    feature_input = keras.Input(shape=fx.shape[1:], name="features")
    return keras.Model(feature_input, parts.head(feature_input), name=f"{parts.model.name}_head"), train, validation
