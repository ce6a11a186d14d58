"""`augment="auto"`: the layers picked from the number of training images (no flips, rotations or colour),
through `augmentation_layers` and `prepare` (arrays and a real Pillow-written image folder)."""

import numpy as np
import pytest

from cnnzoo import data
from cnnzoo.data import pipeline
from cnnzoo.data.augment import AUTO_RULES, augmentation_layers, auto_augmentation
from cnnzoo.errors import DataError
from conftest import write_image_folder


def kinds(layers):
    return [type(layer).__name__ for layer in layers]


def test_the_rule_by_data_size():
    assert kinds(auto_augmentation(500)) == kinds(auto_augmentation(9_999)) == ["RandomTranslation", "RandomZoom"]
    assert kinds(auto_augmentation(10_000)) == kinds(auto_augmentation(99_999)) == ["RandomTranslation"]
    assert auto_augmentation(100_000) == []
    assert AUTO_RULES[0][1] == auto_augmentation(10)[0].height_factor == 0.1
    assert auto_augmentation(50_000)[0].width_factor == 0.05
    assert kinds(augmentation_layers("auto", num_train=100)) == ["RandomTranslation", "RandomZoom"]
    with pytest.raises(DataError, match="num_train"):
        augmentation_layers("auto")
    with pytest.raises(DataError, match="'auto'"):
        augmentation_layers("sometimes")


def test_prepare_resolves_auto_for_arrays_and_folders(tmp_path):
    d = data.digits(seed=0)
    inputs = pipeline.prepare((d.x_train[:100], d.y_train[:100]), (8, 8, 1), augment="auto", batch_size=16)
    assert inputs.augmented
    ((x, _),) = list(inputs.train.take(1))
    ((plain, _),) = list(inputs.plain_train.take(1))
    assert x.shape == plain.shape and np.all(np.isfinite(x))
    folder = write_image_folder(tmp_path / "images", per_class=5)
    inputs = pipeline.prepare(folder, (12, 12, 3), augment="auto", batch_size=4)
    assert inputs.augmented and inputs.plain_train is None  # an augmented folder: no feature cache
    assert inputs.num_train == 8
