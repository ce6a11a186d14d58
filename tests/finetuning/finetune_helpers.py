"""Shared by the fine-tuning tests of `cnnzoo.finetune` and of the modules it runs (stages, freezing,
features): a tiny two-block zoo CNN, brightness blobs at its size, and pretrained-looking BatchNorm.

Imported like `conftest` (`from finetune_helpers import tiny`): pytest puts each test file's folder
on `sys.path`. Other test files keep their own, different `tiny` models.
"""

import numpy as np

import cnnzoo
from cnnzoo.finetuning import freezing
from conftest import brightness_blobs

SIZE = 12


def tiny(num_classes=3, block_dropout=0.2, dropout=0.5, batch_norm=True):
    """A two-block zoo CNN (BatchNorm in each block, Dropout in the second)."""
    return cnnzoo.get(
        "bird_classifier",
        num_classes=num_classes,
        input_shape=(SIZE, SIZE, 3),
        compile=False,
        blocks=[
            {"filters": 4, "batch_norm": batch_norm},
            {"filters": 8, "batch_norm": batch_norm, "dropout": block_dropout},
        ],
        dense=[8],
        dropout=dropout,
    )


def blobs(n=48, classes=3, seed=0):
    return brightness_blobs(n, classes, seed, SIZE)


def pretrain_batchnorm(model, seed=0):
    """Gives every BatchNormalization non-trivial moving statistics, as a pretrained backbone has, and
    marks the model pretrained (as `cnnzoo.get(..., weights=...)` does)."""
    rng = np.random.default_rng(seed)
    for bn in freezing.batchnorm_layers(model):
        bn.moving_mean.assign(rng.normal(0, 0.5, bn.moving_mean.shape))
        bn.moving_variance.assign(rng.uniform(0.5, 2.0, bn.moving_variance.shape))
    model.get_layer("head").pretrained = True


def bn_stats(model):
    return [v.numpy() for bn in freezing.batchnorm_layers(model) for v in (bn.moving_mean, bn.moving_variance)]
