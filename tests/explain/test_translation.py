"""translation_experiment: the primer's translation-invariance claim, measured over several seeds.

Real training of three small models per seed (about 8 s a seed on 2 CPU cores); the test checks
the ordering the primer predicts, never a hard-coded accuracy.
"""

import numpy as np
import pytest

import cnnzoo
from cnnzoo.errors import ConfigError
from cnnzoo.explain.translation import MODELS, SHAPES, draw_shapes

SEEDS = (0, 1, 2)


def test_shapes_lie_in_the_half_asked_for_on_a_cluttered_canvas():
    for half in ("left", "right"):
        x, y = draw_shapes(40, size=32, half=half, seed=3, clutter=0)
        assert x.shape == (40, 32, 32, 1) and x.dtype == np.uint8
        assert np.bincount(y).tolist() == [10] * len(SHAPES)
        ink = x[..., 0] > 180  # the shape is drawn in 190-255, the background below 40 (+ noise)
        left, right = ink[:, :, :16].sum(axis=(1, 2)), ink[:, :, 16:].sum(axis=(1, 2))
        inside, outside = (left, right) if half == "left" else (right, left)
        assert (inside >= 10).all() and (outside <= 2).all()
    cluttered, _ = draw_shapes(40, size=32, half="left", seed=3)
    assert ((cluttered[:, :, 16:, 0] > 55).sum(axis=(1, 2)) > 0).mean() > 0.9  # clutter in the other half too
    a, _ = draw_shapes(4, seed=7)
    b, _ = draw_shapes(4, seed=7)
    assert np.array_equal(a, b)
    with pytest.raises(ConfigError, match="`half`"):
        draw_shapes(4, half="top")


def test_global_pooling_recognises_shapes_in_the_half_it_never_saw(tmp_path):
    np.random.seed(123)
    results = [cnnzoo.explain.translation_experiment(seed=s, out=tmp_path / f"seed{s}.png") for s in SEEDS]
    assert np.random.randint(1 << 30) == np.random.RandomState(123).randint(1 << 30)  # caller's state kept
    for r in results:
        acc = r.accuracy
        assert list(acc) == list(MODELS)
        # every model learned the task where it was trained
        for name in MODELS:
            assert acc[name]["trained_half"] >= 0.75, (r.seed, name, acc)
        # on the other half: the global-pool CNN beats both position-bound models, by a margin
        other = {name: acc[name]["other_half"] for name in MODELS}
        assert other["cnn_global_pool"] > other["cnn_flatten"] + 0.2, (r.seed, other)
        assert other["cnn_global_pool"] > other["dense"] + 0.2, (r.seed, other)
        # and keeps most of what it does on the trained half, where the others drop
        assert other["cnn_global_pool"] >= acc["cnn_global_pool"]["trained_half"] - 0.15, (r.seed, acc)
        assert other["dense"] < acc["dense"]["trained_half"] - 0.2, (r.seed, acc)
        assert other["cnn_flatten"] < acc["cnn_flatten"]["trained_half"] - 0.2, (r.seed, acc)
        from PIL import Image

        with Image.open(r.plot) as im:
            assert im.format == "PNG" and im.size[0] > 300
        assert "| CNN, global pooling head |" in r.markdown()
    assert [r.seed for r in results] == list(SEEDS)


def test_arguments_are_checked():
    with pytest.raises(ConfigError, match="`pooling`"):
        cnnzoo.explain.translation_experiment(pooling="sum")
    with pytest.raises(ConfigError, match="`seed`"):
        cnnzoo.explain.translation_experiment(seed=-1)
