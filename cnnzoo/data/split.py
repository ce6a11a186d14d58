"""The one way cnnzoo splits labelled images into training and validation sets."""

import numpy as np

from cnnzoo.errors import DataError

__all__ = ["stratified_split"]


def stratified_split(labels, num_classes, validation_split, seed=0, shuffle=True):
    """Splits image indices per class, fixed by `seed` (image folders and arrays alike).

    Each class gives `validation_split` of its images to validation (a
    largest-remainder share, so the total is `round(n * validation_split)`), and
    keeps at least one for training.

    Args:
        labels: integer class ids, one per image.
        num_classes: int.
        validation_split: float in [0, 1).
        seed: int.
        shuffle: bool; shuffle the training indices (else they keep their order).

    Returns:
        `(train_idx, val_idx, stratified)`: two lists of ints (validation
        indices sorted) and whether every class has a validation image.

    Example:

    >>> stratified_split([0, 0, 0, 1, 1, 1], 2, 1 / 3, seed=0)[1]  # doctest: +SKIP
    [1, 4]
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=num_classes)
    take = np.zeros(num_classes, dtype=np.int64)
    if validation_split > 0:
        total = max(1, round(len(labels) * validation_split))
        cap = counts - 1  # every class keeps at least one training image
        exact = counts * validation_split
        take = np.minimum(np.floor(exact).astype(np.int64), cap)
        for c in sorted(range(num_classes), key=lambda c: (-(exact[c] - np.floor(exact[c])), rng.random())):
            if take.sum() >= total:
                break
            if take[c] < cap[c]:
                take[c] += 1
        if take.sum() == 0:
            raise DataError(
                f"`validation_split` must leave at least one validation image, and every class "
                f"here has a single image. Add images or pass validation_split=0. "
                f"Received: validation_split={validation_split!r}."
            )
    train_idx, val_idx = [], []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        chosen = set(rng.permutation(idx)[: take[c]].tolist())
        val_idx.extend(sorted(chosen))
        train_idx.extend(i for i in idx.tolist() if i not in chosen)
    train_idx = list(rng.permutation(train_idx)) if shuffle else train_idx
    return [int(i) for i in train_idx], [int(i) for i in val_idx], bool(validation_split > 0 and (take > 0).all())
