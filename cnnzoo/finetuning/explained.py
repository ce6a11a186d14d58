"""The pictures of a fine-tuning run's validation images: confusion matrix, top losses, Grad-CAM examples.

Written by `cnnzoo.finetune` (with `plots=True`) next to the learning curve,
from the `cnnzoo.Interpretation` of the final model on the validation images
(`FinetuneResult.interpretation`): `confusion_matrix.png`, `top_losses.png`
(the highest losses, each under its Grad-CAM) and `gradcam.png`, where the
model looked when it was wrong (the real mistakes, highest loss first, taking
turns across the classes) and, in a row above, when it was right.
"""

import logging

from cnnzoo.errors import CnnzooError

__all__ = ["validation_pictures", "gradcam_examples", "PICTURES", "TOP_LOSSES"]

log = logging.getLogger("cnnzoo")

PICTURES = ("learning_curve", "confusion_matrix", "top_losses", "gradcam")  # a run's PNGs, `<name>.png`
TOP_LOSSES = 9


def validation_pictures(interpretation, run_dir):
    """Writes `confusion_matrix.png`, `top_losses.png` and `gradcam.png` of the validation images into `run_dir`.

    Args:
        interpretation: the `cnnzoo.Interpretation` of the run's model on its
            validation images.
        run_dir: the run directory (`Path`).

    Returns:
        A dict name -> `Path` of what was written (no `gradcam` for a model
        without a convolution to read; the reason is logged: a run is not
        failed by its pictures).

    Example:

    >>> validation_pictures(result.interpretation, result.run_dir)  # doctest: +SKIP
    {'confusion_matrix': PosixPath('runs/birds/confusion_matrix.png'), ...}
    """
    written = {
        "confusion_matrix": interpretation.plot_confusion_matrix(
            run_dir / "confusion_matrix.png", title=f"the {len(interpretation.labels)} validation images"
        )
    }
    k = min(TOP_LOSSES, len(interpretation.images))
    if k:
        written["top_losses"] = interpretation.plot_top_losses(k, run_dir / "top_losses.png")
    written.update(gradcam_examples(interpretation, run_dir / "gradcam.png"))
    return written


def gradcam_examples(interpretation, path, count=8):
    """Grad-CAM of `count` images of an `Interpretation`: a row of right answers, a row of mistakes.

    Args:
        interpretation: a `cnnzoo.Interpretation`.
        path: where to write the PNG.
        count: int, images shown: the mistakes first (highest loss first,
            classes in turn; `Interpretation.examples`), at least two right
            answers when there are some.

    Returns:
        `{"gradcam": Path}`, or `{}` when there is nothing to show or the model
        has no convolution to read (the reason is logged).

    Example:

    >>> gradcam_examples(result.interpretation, "runs/birds/gradcam.png")  # doctest: +SKIP
    {'gradcam': PosixPath('runs/birds/gradcam.png')}
    """
    from cnnzoo.explain.taps import default_gradcam_layer

    try:
        default_gradcam_layer(interpretation.model)
    except CnnzooError as e:
        log.warning("no Grad-CAM pictures for %s: %s", interpretation.model.name, e)
        return {}
    written = interpretation.plot_examples(path, count)
    return {} if written is None else {"gradcam": written}
