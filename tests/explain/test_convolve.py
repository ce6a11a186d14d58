"""`convolve` and `correlate`: the primer's sliding kernel, checked against NumPy, a loop and Keras."""

import subprocess

import numpy as np
import pytest

from cnnzoo.errors import ConfigError, DataError
from cnnzoo.explain import convolution
from cnnzoo.explain.convolution import convolve, correlate, kernel, kernels
from conftest import PYTHON, REPO


def _reference_2d(image, w, mode):
    """True 2-D convolution by its definition, out[n] = sum_k x[n - k] w[k], one loop per output pixel."""
    h, wd = image.shape
    kh, kw = w.shape
    full = np.zeros((h + kh - 1, wd + kw - 1))
    for i in range(full.shape[0]):
        for j in range(full.shape[1]):
            total = 0.0
            for a in range(kh):
                for b in range(kw):
                    if 0 <= i - a < h and 0 <= j - b < wd:
                        total += image[i - a, j - b] * w[a, b]
            full[i, j] = total
    if mode == "full":
        return full
    if mode == "valid":
        return full[kh - 1 : h, kw - 1 : wd]
    top, left = (kh - 1) // 2, (kw - 1) // 2  # centred as numpy.convolve / scipy do
    return full[top : top + h, left : left + wd]


def test_box_convolved_with_box_is_a_triangle():
    box = np.ones(5)
    tri = convolve(box, box, mode="full")
    np.testing.assert_array_equal(tri, [1, 2, 3, 4, 5, 4, 3, 2, 1])
    # the peak is where the boxes overlap completely; the sides are straight lines
    assert np.all(np.diff(tri[:5]) == 1) and np.all(np.diff(tri[4:]) == -1)
    # a box signal blurred by a box kernel: a trapezoid ramp at each side
    signal = np.r_[np.zeros(4), np.ones(6), np.zeros(4)]
    np.testing.assert_allclose(
        convolve(signal, kernel("box", ndim=1), "same"), np.r_[0, 0, 0, 1, 2, 3, 3, 3, 3, 2, 1, 0, 0, 0] / 3
    )
    # in 2-D: a box image convolved with a box is a pyramid (outer product of triangles)
    np.testing.assert_allclose(
        convolve(np.ones((3, 3)), np.ones((3, 3)), "full"), np.outer([1, 2, 3, 2, 1], [1, 2, 3, 2, 1])
    )


@pytest.mark.parametrize("mode", ["same", "valid", "full"])
def test_1d_equals_numpy_convolve(mode, rng):
    for n in (1, 2, 7, 16, 33):
        for m in range(1, min(n, 7) + 1):
            x, w = rng.normal(size=n), rng.normal(size=m)
            np.testing.assert_allclose(convolve(x, w, mode), np.convolve(x, w, mode), atol=1e-12)
            # correlation is convolution with the kernel reversed (numpy.correlate too)
            np.testing.assert_allclose(
                correlate(x, w, "valid") if m <= n else 0, np.correlate(x, w, "valid"), atol=1e-12
            )
    assert convolve([1, 2, 3], "box").dtype == np.float64  # lists and named kernels work


@pytest.mark.parametrize("mode", ["same", "valid", "full"])
def test_2d_equals_the_definition_and_applies_per_channel(mode, rng):
    for shape, kshape in [((7, 9), (3, 3)), ((6, 5), (2, 4)), ((5, 5), (5, 1)), ((8, 8), (4, 4))]:
        image, w = rng.normal(size=shape), rng.normal(size=kshape)
        np.testing.assert_allclose(convolve(image, w, mode), _reference_2d(image, w, mode), atol=1e-12)
        # correlate = convolve with the kernel flipped on both axes (valid and full, any size)
        if mode != "same":
            np.testing.assert_allclose(correlate(image, w, mode), convolve(image, w[::-1, ::-1], mode), atol=1e-12)
    rgb = rng.normal(size=(10, 12, 3))
    out = convolve(rgb, "sobel_x", mode)
    for c in range(3):
        np.testing.assert_allclose(out[..., c], _reference_2d(rgb[..., c], kernels["sobel_x"], mode), atol=1e-12)


def _keras_conv(x, w, padding):
    import keras

    if x.ndim == 1:
        layer = keras.layers.Conv1D(1, w.shape[0], padding=padding, use_bias=False)
        layer.build((1, x.shape[0], 1))
        layer.set_weights([w.reshape(w.shape[0], 1, 1)])
        return np.asarray(layer(x[None, :, None].astype("float32")))[0, :, 0]
    layer = keras.layers.Conv2D(1, w.shape, padding=padding, use_bias=False)
    layer.build((1, *x.shape, 1))
    layer.set_weights([w.reshape(*w.shape, 1, 1)])
    return np.asarray(layer(x[None, ..., None].astype("float32")))[0, ..., 0]


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_keras_conv_layers_cross_correlate_and_equal_convolve_after_the_flip(padding, rng):
    x1, x2 = rng.normal(size=20), rng.normal(size=(11, 13))
    for m in (1, 2, 3, 4, 5):  # correlate matches Keras for every kernel size, even ones included
        w1, w2 = rng.normal(size=m), rng.normal(size=(m, 3))
        np.testing.assert_allclose(correlate(x1, w1, padding), _keras_conv(x1, w1, padding), atol=1e-5)
        np.testing.assert_allclose(correlate(x2, w2, padding), _keras_conv(x2, w2, padding), atol=1e-5)
    for m in (1, 3, 5):  # convolve = a Keras layer holding the flipped kernel
        w1, w2 = rng.normal(size=m), rng.normal(size=(m, m))
        np.testing.assert_allclose(convolve(x1, w1, padding), _keras_conv(x1, w1[::-1], padding), atol=1e-5)
        np.testing.assert_allclose(convolve(x2, w2, padding), _keras_conv(x2, w2[::-1, ::-1], padding), atol=1e-5)
        if m > 1:  # without the flip they differ
            assert not np.allclose(convolve(x2, w2, padding), _keras_conv(x2, w2, padding), atol=1e-3)


def test_sobel_finds_edges_on_a_real_photo():
    from sklearn.datasets import load_sample_image

    photo = load_sample_image("china.jpg")  # a real photo shipped inside scikit-learn (427x640 RGB)
    gray = photo.astype(np.float64) @ [0.299, 0.587, 0.114]
    gx, gy = convolve(gray, "sobel_x", "valid"), convolve(gray, "sobel_y", "valid")
    assert gx.shape == (425, 638)
    # Sobel x measures horizontal change: it agrees with a central difference along the rows
    diff_x = gray[1:-1, 2:] - gray[1:-1, :-2]
    assert np.corrcoef(np.abs(gx).ravel(), np.abs(diff_x).ravel())[0, 1] > 0.9
    assert np.corrcoef(np.abs(gx).ravel(), np.abs(gray[2:, 1:-1] - gray[:-2, 1:-1]).ravel())[0, 1] < 0.6
    # the strongest edges: few pixels, where the photo changes most; flat regions answer ~0
    magnitude = np.hypot(gx, gy)
    edges = magnitude > np.percentile(magnitude, 95)
    change = np.hypot(diff_x, gray[2:, 1:-1] - gray[:-2, 1:-1])
    assert np.mean(change[edges] > np.percentile(change, 85)) > 0.9
    flat = change < np.percentile(change, 10)
    assert np.median(magnitude[flat]) < 0.05 * np.median(magnitude[edges])
    # sobel_y is sobel_x turned by 90 degrees
    np.testing.assert_allclose(convolve(np.rot90(gray), "sobel_x", "valid"), np.rot90(gy), atol=1e-9)
    # blurring removes detail, sharpening adds it (total variation)
    tv = lambda a: np.abs(np.diff(a, axis=0)).sum() + np.abs(np.diff(a, axis=1)).sum()  # noqa: E731
    assert tv(convolve(gray, "blur5", "valid")) < 0.8 * tv(gray[2:-2, 2:-2]) < tv(convolve(gray, "sharpen", "valid"))
    edge = convolve(gray, "edge", "valid")  # the Laplacian sums to zero: a constant image gives 0
    assert abs(edge.mean()) < 0.5 and np.allclose(convolve(np.full((5, 5), 7.0), "edge", "valid"), 0)


def test_named_kernels():
    assert set(kernels) == {"box", "sobel_x", "sobel_y", "edge", "blur", "blur5", "sharpen"}
    for w in kernels.values():
        assert w.ndim == 2 and not w.flags.writeable
    for name in ("box", "blur", "blur5", "sharpen"):
        assert kernels[name].sum() == pytest.approx(1.0)  # these keep the brightness
    for name in ("sobel_x", "sobel_y", "edge"):
        assert kernels[name].sum() == 0.0  # these answer 0 on a flat region
    k = kernel("box")
    k[0, 0] = 5.0  # a copy: the table is untouched
    assert kernels["box"][0, 0] == pytest.approx(1 / 9)


def test_errors_name_the_argument_and_what_was_received():
    with pytest.raises(ConfigError, match=r"`mode` must be one of .*Did you mean `same`.*Received: mode='sam'"):
        convolve(np.ones(4), np.ones(2), mode="sam")
    with pytest.raises(ConfigError, match=r"`kernel` must be .*Did you mean `sobel_x`.*Received: kernel='sobelx'"):
        convolve(np.ones((4, 4)), "sobelx")
    with pytest.raises(ConfigError, match=r"`kernel` must be .*1-D.*Received: kernel='sobel_y'"):
        convolve(np.ones(4), "sobel_y")
    with pytest.raises(
        ConfigError, match=r"`kernel` must be a non-empty numeric 2-D array.*Received: kernel of shape \(3,\)"
    ):
        convolve(np.ones((4, 4)), np.ones(3))
    with pytest.raises(ConfigError, match=r"`kernel` must fit inside the input for mode='valid'"):
        convolve(np.ones(2), np.ones(3), mode="valid")
    with pytest.raises(
        DataError, match=r"`signal_or_image` must be a non-empty numeric array.*Received: shape \(2, 2, 2, 2\)"
    ):
        convolve(np.ones((2, 2, 2, 2)), "box")
    with pytest.raises(DataError, match=r"`signal_or_image` must be a non-empty numeric array"):
        convolve(np.array(["a", "b"]), np.ones(1))
    assert isinstance(ConfigError("x"), ValueError)


def test_explain_imports_no_tensorflow():
    code = (
        "import sys, cnnzoo, numpy as np\n"
        "import cnnzoo.explain\n"
        "from cnnzoo.explain import convolve, correlate, kernels, kernel\n"
        "assert cnnzoo.explain.convolve is convolve\n"
        "convolve(np.ones(3), np.ones(3), 'full'); correlate(np.ones((4, 4)), kernels['sobel_x'])\n"
        "for name in ('feature_maps', 'plot_feature_maps', 'filters', 'grad_cam', 'overlay'):\n"
        "    assert name in dir(cnnzoo.explain), name\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'keras_tuner') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert convolution.MODES == ("same", "valid", "full")
