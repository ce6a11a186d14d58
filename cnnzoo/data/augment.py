"""Augmentation: the default set of Keras preprocessing layers, and what `augment=` may be."""

from cnnzoo.errors import DataError

__all__ = ["default_augmentation", "augmentation_layers"]


def default_augmentation(seed=0):
    """The layers `augment=True` uses: flip, rotate, zoom, contrast.

    Args:
        seed: int, for the layers' random generators.

    Returns:
        A list of Keras preprocessing layers for 0-255 images.

    Example:

    >>> data = image_folder("photos", augment=default_augmentation(seed=1))  # doctest: +SKIP
    """
    import keras

    return [
        keras.layers.RandomFlip("horizontal", seed=seed, name="augment_flip"),
        keras.layers.RandomRotation(0.05, seed=seed + 1, name="augment_rotate"),  # up to 18 degrees
        keras.layers.RandomZoom(0.1, seed=seed + 2, name="augment_zoom"),
        keras.layers.RandomContrast(0.1, value_range=(0, 255), seed=seed + 3, name="augment_contrast"),
    ]


def augmentation_layers(augment, seed=0):
    """The Keras layers an `augment=` argument stands for.

    Args:
        augment: False or None (no augmentation), True (`default_augmentation(seed)`),
            a Keras layer, or a list of Keras layers taking 0-255 float images.
        seed: int, for the default layers.

    Returns:
        A list of Keras layers (empty for no augmentation).

    Example:

    >>> [type(layer).__name__ for layer in augmentation_layers(True)][:2]  # doctest: +SKIP
    ['RandomFlip', 'RandomRotation']
    """

    if augment is False or augment is None:
        return []
    if augment is True:
        return default_augmentation(seed)
    import keras

    layers = [augment] if isinstance(augment, keras.layers.Layer) else augment
    if not isinstance(layers, (list, tuple)) or not all(isinstance(a, keras.layers.Layer) for a in layers):
        raise DataError(f"`augment` must be True, False, or a list of Keras layers (e.g. "
                        f"keras.layers.RandomFlip()). Received: augment={augment!r}.")
    return list(layers)
