"""Augmentation: the default set of Keras preprocessing layers, the `"auto"` set, and what `augment=` may be."""

from cnnzoo.errors import DataError

__all__ = ["default_augmentation", "auto_augmentation", "augmentation_layers", "AUTO_RULES"]

# `augment="auto"`: (fewer training images than, shift as a fraction of the side, zoom); the first row that
# fits. No flips, rotations or colour changes: they change the class of digits, text and some species.
AUTO_RULES = ((10_000, 0.1, 0.1), (100_000, 0.05, 0.0))


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


def auto_augmentation(num_train, seed=0):
    """The layers `augment="auto"` uses for `num_train` training images.

    | training images  | layers                                        |
    |------------------|-----------------------------------------------|
    | < 10,000         | random shifts up to 10% of each side, zoom 10% |
    | 10,000 - 99,999  | random shifts up to 5%                        |
    | >= 100,000       | none (the data is its own augmentation)       |

    Only changes that keep the class of any image: no flips (a mirrored
    digit or letter is another symbol, or none), no rotations (6 and 9), no
    colour changes (colour can be the class). Shifts and zoom-outs fill with
    black rather than Keras' default reflection, which invents content (a
    mirrored stroke at a digit's edge): on the digits (bird_classifier at
    32x32, 10 epochs, seeds 0-4) black fill gave 99.67% mean test accuracy,
    reflected 99.39% (docs/finetune.md, Regularisation).

    Args:
        num_train: int, training images.
        seed: int, for the layers' random generators.

    Returns:
        A list of Keras preprocessing layers (empty for large data sets).

    Example:

    >>> [type(layer).__name__ for layer in auto_augmentation(1500)]  # doctest: +SKIP
    ['RandomTranslation', 'RandomZoom']
    """
    import keras

    for limit, shift, zoom in AUTO_RULES:
        if num_train < limit:
            layers = [
                keras.layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed, name="augment_shift")
            ]
            if zoom:
                layers.append(keras.layers.RandomZoom(zoom, fill_mode="constant", seed=seed + 1, name="augment_zoom"))
            return layers
    return []


def augmentation_layers(augment, seed=0, num_train=None):
    """The Keras layers an `augment=` argument stands for.

    Args:
        augment: False or None (no augmentation), True (`default_augmentation(seed)`),
            `"auto"` (`auto_augmentation(num_train, seed)`: by the data size,
            nothing that could change a class), a Keras layer, or a list of
            Keras layers taking 0-255 float images.
        seed: int, for the default layers.
        num_train: int, training images; needed for `"auto"`.

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
    if isinstance(augment, str) and augment == "auto":
        if num_train is None:
            raise DataError(
                "`augment='auto'` picks layers from the number of training images, which is not known "
                "here. Received: augment='auto' without num_train. Pass the data to "
                "`cnnzoo.data.prepare` (or `finetune`), or pick layers, e.g. augment=True."
            )
        return auto_augmentation(num_train, seed)
    import keras

    layers = [augment] if isinstance(augment, keras.layers.Layer) else augment
    if not isinstance(layers, (list, tuple)) or not all(isinstance(a, keras.layers.Layer) for a in layers):
        raise DataError(
            f"`augment` must be True, False, 'auto', or a list of Keras layers (e.g. "
            f"keras.layers.RandomFlip()). Received: augment={augment!r}."
        )
    return list(layers)
