"""Convolution by hand: a kernel slides over a signal or an image (NumPy only, no TensorFlow).

`convolve` is the convolution of signal processing (the kernel is flipped),
equal to `numpy.convolve`; `correlate` is what deep-learning libraries call
"convolution" (no flip), equal to a `keras.layers.Conv1D`/`Conv2D` holding the
same weights. `kernels` holds the classic named kernels.
"""

from types import MappingProxyType

import numpy as np

from cnnzoo.errors import ConfigError, DataError, closest

__all__ = ["convolve", "correlate", "kernels", "kernel", "MODES"]

MODES = ("same", "valid", "full")

_SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
_BLUR5_1D = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0

# 2-D kernels, read-only (a named kernel is copied before use).
kernels = MappingProxyType(
    {
        "box": np.full((3, 3), 1.0 / 9.0),
        "sobel_x": _SOBEL_X,
        "sobel_y": _SOBEL_X.T.copy(),
        "edge": np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]),  # the Laplacian
        "blur": np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]) / 16.0,  # Gaussian, 3x3
        "blur5": np.outer(_BLUR5_1D, _BLUR5_1D),  # Gaussian, 5x5
        "sharpen": np.array([[0.0, -1.0, 0.0], [-1.0, 5.0, -1.0], [0.0, -1.0, 0.0]]),
    }
)
for _k in kernels.values():
    _k.setflags(write=False)

# Their 1-D counterparts (a signal given a kernel by name); Sobel y has none.
_KERNELS_1D = {
    "box": np.full(3, 1.0 / 3.0),
    "sobel_x": np.array([-1.0, 0.0, 1.0]),  # a central difference
    "edge": np.array([1.0, -2.0, 1.0]),  # second difference
    "blur": np.array([1.0, 2.0, 1.0]) / 4.0,
    "blur5": _BLUR5_1D,
    "sharpen": np.array([-1.0, 3.0, -1.0]),
}


def kernel(name, ndim=2):
    """A named classic kernel as a new float64 array.

    Args:
        name: one of `"box"`, `"sobel_x"`, `"sobel_y"`, `"edge"` (the
            Laplacian), `"blur"` (Gaussian 3x3), `"blur5"` (Gaussian 5x5),
            `"sharpen"`.
        ndim: 2 for the image kernel, 1 for its 1-D counterpart
            (`"sobel_y"` has none).

    Returns:
        A float64 array of shape (3, 3) (or (5, 5)), or (3,) / (5,) for `ndim=1`.

    Example:

    >>> kernel("box", ndim=1)
    array([0.33333333, 0.33333333, 0.33333333])
    """
    table = kernels if ndim == 2 else _KERNELS_1D if ndim == 1 else None
    if table is None:
        raise ConfigError(f"`ndim` must be 1 or 2. Received: ndim={ndim!r}.")
    if not isinstance(name, str) or name not in table:
        raise ConfigError(
            f"`kernel` must be an array or one of the named {ndim}-D kernels "
            f"{sorted(table)}.{closest(name, table)} Received: kernel={name!r}."
        )
    return np.array(table[name], dtype=np.float64)


def convolve(signal_or_image, kernel, mode="same"):
    """Convolves a 1-D signal or a 2-D image with a kernel (the kernel is flipped).

    Each output value is a weighted sum of the input values under the kernel:
    `out[n] = sum_k x[n - k] * w[k]`. Convolution flips the kernel, which is
    what makes it commutative and `box * box` a triangle. What deep learning
    calls convolution (`keras.layers.Conv1D`, `Conv2D`) does not flip: it is
    cross-correlation, `out[n] = sum_k x[n + k] * w[k]` (see `correlate`). The
    two agree once the kernel is flipped:

    ```python
    convolve(x, w, "valid") == correlate(x, w[::-1], "valid")              # 1-D
    convolve(image, w, "valid") == correlate(image, w[::-1, ::-1], "valid")  # 2-D
    ```

    so a `Conv2D` whose kernel is `w[::-1, ::-1]` computes `convolve(image, w)`.
    (With `"same"` and an even kernel size, `numpy.convolve` and Keras centre
    the output one position apart; `convolve` follows NumPy, `correlate` Keras.)

    Args:
        signal_or_image: a 1-D array (a signal), a 2-D array `[H, W]` (a
            grayscale image) or a 3-D array `[H, W, C]` (each channel is
            convolved on its own).
        kernel: an array with as many dimensions as the signal (1) or the
            image (2), or a name from `kernels` (`"box"`, `"sobel_x"`,
            `"sobel_y"`, `"edge"`, `"blur"`, `"blur5"`, `"sharpen"`).
        mode: `"same"` (the input's size, centred as `numpy.convolve` does),
            `"valid"` (only where the kernel fits inside the input) or
            `"full"` (every overlap; size input + kernel - 1).

    Returns:
        A float64 array: for 1-D signals equal to
        `numpy.convolve(signal, kernel, mode)` (for a kernel no longer than
        the signal).

    Example:

    >>> box = np.ones(3)
    >>> convolve(box, box, mode="full")  # two boxes make a triangle
    array([1., 2., 3., 2., 1.])
    >>> edges = convolve(gray_photo, "sobel_x")  # doctest: +SKIP
    """
    x, w, mode = _check(signal_or_image, kernel, mode)
    w = w[(slice(None, None, -1),) * w.ndim]
    # numpy.convolve("same") starts the full output at (k - 1) // 2, i.e. it pads k // 2 before
    pads = [(k // 2, k - 1 - k // 2) for k in w.shape] if mode == "same" else None
    return _slide(x, w, mode, pads)


def correlate(signal_or_image, kernel, mode="same"):
    """Cross-correlates a 1-D signal or a 2-D image with a kernel (no flip): Keras' "convolution".

    `out[n] = sum_k x[n + k] * w[k]`: exactly what `keras.layers.Conv1D` or
    `Conv2D` (one filter, no bias, stride 1) computes with `w` as its kernel,
    `padding="same"` or `"valid"`. `convolve(x, w) == correlate(x, flipped w)`
    (see `convolve`).

    Args:
        signal_or_image: a 1-D array, a 2-D `[H, W]` or a 3-D `[H, W, C]` array
            (each channel on its own).
        kernel: an array with as many dimensions as the signal or image, or a
            name from `kernels`.
        mode: `"same"` (padded as Keras pads: `(k - 1) // 2` before),
            `"valid"` or `"full"`.

    Returns:
        A float64 array.

    Example:

    >>> correlate(np.array([0.0, 0.0, 1.0, 0.0, 0.0]), np.array([1.0, 2.0, 3.0]))  # the kernel, reversed
    array([0., 3., 2., 1., 0.])
    """
    x, w, mode = _check(signal_or_image, kernel, mode)
    pads = [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in w.shape] if mode == "same" else None
    return _slide(x, w, mode, pads)


def _check(x, w, mode):
    if not isinstance(mode, str) or mode not in MODES:
        raise ConfigError(f"`mode` must be one of {list(MODES)}.{closest(mode, MODES)} Received: mode={mode!r}.")
    try:
        x = np.asarray(x.numpy() if hasattr(x, "numpy") else x)
    except Exception as e:  # noqa: BLE001 - anything that is not array-like
        raise DataError(f"`signal_or_image` must be an array. Received: an object of type {type(x).__name__}.") from e
    if x.dtype.kind not in "biuf" or x.ndim not in (1, 2, 3) or x.size == 0:
        raise DataError(
            f"`signal_or_image` must be a non-empty numeric array: a signal [N], a grayscale image "
            f"[H, W] or an image [H, W, C]. Received: shape {x.shape}, dtype {x.dtype}."
        )
    spatial = 1 if x.ndim == 1 else 2
    if isinstance(w, str):
        w = kernel(w, ndim=spatial)
    else:
        w = np.asarray(w)
        if w.dtype.kind not in "biuf" or w.ndim != spatial or w.size == 0:
            raise ConfigError(
                f"`kernel` must be a non-empty numeric {spatial}-D array (one dimension per "
                f"spatial dimension of the input, {x.shape}) or a kernel name from `kernels`. "
                f"Received: kernel of shape {w.shape}, dtype {w.dtype}."
            )
    if mode == "valid" and any(k > n for k, n in zip(w.shape, x.shape)):
        raise ConfigError(
            f"`kernel` must fit inside the input for mode='valid' (shape {w.shape} vs "
            f"{x.shape[:spatial]}); use mode='same' or 'full', or a smaller kernel. "
            f"Received: kernel of shape {w.shape}."
        )
    return x.astype(np.float64), w.astype(np.float64), mode


def _slide(x, w, mode, pads):
    """Cross-correlation over the first `w.ndim` axes of `x` (channels, if any, ride along)."""
    spatial = w.ndim
    if mode == "full":
        pads = [(k - 1, k - 1) for k in w.shape]
    if pads is not None:
        x = np.pad(x, pads + [(0, 0)] * (x.ndim - spatial))
    windows = np.lib.stride_tricks.sliding_window_view(x, w.shape, axis=tuple(range(spatial)))
    # windows: [out spatial..., (channels), kernel...]
    return np.tensordot(windows, w, axes=spatial)
