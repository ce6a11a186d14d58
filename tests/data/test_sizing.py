"""`cnnzoo.data.sizing`: the input size a zoo entry gets from the images when none is given."""

import logging
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

import cnnzoo
from cnnzoo.data.sizing import fitted_input_shape, typical_side
from cnnzoo.errors import DataWarning
from conftest import write_image_folder


def test_small_images_get_the_smallest_size_the_architecture_accepts(caplog):
    digits = cnnzoo.data.digits()  # 8x8
    with caplog.at_level(logging.INFO, logger="cnnzoo.data"), warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # 4x: no warning
        assert fitted_input_shape(digits, cnnzoo.spec("bird_classifier")) == (32, 32, 3)
    assert "bird_classifier at 32x32: the smallest size bird_classifier accepts (the images' median side is 8)" in (
        caplog.text
    )
    assert fitted_input_shape(digits, cnnzoo.spec("digits_cnn")) == (8, 8, 1)  # the images' own side


def test_large_images_keep_the_default_and_a_given_shape_wins():
    photos = (np.zeros((4, 500, 300, 3), np.uint8), np.arange(4))
    assert fitted_input_shape(photos, cnnzoo.spec("bird_classifier")) == (224, 224, 3)
    middle = (np.zeros((4, 100, 90, 3), np.uint8), np.arange(4))
    assert fitted_input_shape(middle, cnnzoo.spec("bird_classifier")) == (100, 100, 3)
    assert fitted_input_shape(middle, cnnzoo.spec("bird_classifier"), input_shape=(64, 48, 3)) == (64, 48, 3)


def test_a_backbone_with_weights_keeps_its_native_size():
    spec = cnnzoo.spec("bird_classifier_mobilenetv2")
    digits = cnnzoo.data.digits()
    with pytest.warns(DataWarning, match=r"224x224 \(its imagenet weights were learned at that size\) upscales .* 28x"):
        assert fitted_input_shape(digits, spec, weights="imagenet") == (224, 224, 3)
    assert fitted_input_shape(digits, spec) == (32, 32, 3)  # random weights: sized to the data


def test_upscaling_past_four_times_warns_and_names_the_fix():
    with pytest.warns(
        DataWarning, match=r"alexnet at 57x57 \(the smallest size alexnet accepts.*upscales .* 7x.* input_"
    ):
        assert fitted_input_shape(cnnzoo.data.digits(), cnnzoo.spec("alexnet")) == (57, 57, 3)


def test_a_folder_is_read_from_its_image_headers(tmp_path):
    write_image_folder(tmp_path / "a", per_class=3, size=(20, 40))
    write_image_folder(tmp_path / "a", classes=("c",), per_class=2, size=(10, 10), seed=1)
    assert typical_side(tmp_path / "a") == 40  # the median of the longer sides (6 of 40, 2 of 10)
    (tmp_path / "b").mkdir()
    assert typical_side(tmp_path / "b") is None and typical_side("no_such_folder") is None
    assert fitted_input_shape(tmp_path / "b", cnnzoo.spec("tiny_vgg")) == (64, 64, 3)  # nothing read: the default


@pytest.mark.slow
def test_the_readme_finetune_line_on_the_digits_folder_picks_a_small_size_and_learns(tmp_path):
    """`cnnzoo finetune bird_classifier digits/train --epochs 2` (issue 18's "done when"): a small input, said."""
    train, _ = cnnzoo.data.digits_folder(tmp_path / "digits")
    done = subprocess.run(
        [sys.executable, "-m", "cnnzoo.cli", "finetune", "bird_classifier", str(train), "--epochs", "2",
         "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "bird_classifier at 32x32: the smallest size bird_classifier accepts" in done.stdout + done.stderr
    accuracy = re.search(r"fine-tuned bird_classifier: validation accuracy ([\d.]+)%", done.stderr)
    assert accuracy and float(accuracy.group(1)) > 90  # 97.6% here, in ~20 s
