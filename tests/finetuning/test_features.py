"""cnnzoo.finetuning.features: the feature cache of frozen stages trains the head as training through
the frozen backbone does, and by default it is off with augmentation and for unfrozen stages.

Real TensorFlow training through `cnnzoo.finetune` on tiny models and tiny images (12x12).
"""

import numpy as np

import cnnzoo
from conftest import write_image_folder
from finetune_helpers import SIZE, blobs, pretrain_batchnorm, tiny


def test_feature_cache_equals_training_through_the_frozen_backbone(tmp_path):
    """Same seed, same batches: the cached head and the head trained through the frozen
    network agree to float32 round-off. Both paths run the same ops on the same batches in
    the same order (the frozen prefix runs in inference mode, so Dropout in block2 is off in
    both); only oneDNN's summation order may differ between batch shapes (~1e-7 relative),
    which a few Adam steps keep far below 1e-4. A different seed moves predictions by >1e-2,
    so the tolerance separates "equal" from "trained differently"."""
    x, y = blobs(n=60)
    predictions, histories = {}, {}
    import keras

    for key, cache, seed in (("cached", True, 0), ("through", False, 0), ("other_seed", False, 1)):
        keras.utils.set_random_seed(seed)  # the same initial model for the same seed (finetune restores our state)
        model = tiny()
        pretrain_batchnorm(model)
        result = cnnzoo.finetune(
            model,
            (x, y),
            stages=["head:3:1e-2"],
            cache_features=cache,
            seed=seed,
            batch_size=8,
            augment=False,
            out=tmp_path / key,
            verbose=0,
            plots=False,
        )
        assert result.stages[0].feature_cache is cache
        predictions[key] = cnnzoo.inference.predictor(result.model)(x)
        histories[key] = result.stages[0].history["loss"]
    np.testing.assert_allclose(predictions["cached"], predictions["through"], atol=1e-4)
    np.testing.assert_allclose(histories["cached"], histories["through"], rtol=1e-4)
    assert np.abs(predictions["cached"] - predictions["other_seed"]).max() > 1e-2


def test_feature_cache_auto_is_off_with_augmentation_and_for_unfrozen_stages(tmp_path):
    folder = write_image_folder(tmp_path / "images", per_class=6, size=(SIZE, SIZE))
    result = cnnzoo.finetune(
        tiny(), folder, stages=["head:1", "top1:1"], augment=True, out=tmp_path / "aug", verbose=0, plots=False
    )
    assert [s.feature_cache for s in result.stages] == [False, False]
    result = cnnzoo.finetune(
        tiny(), folder, stages=["head:1", "top1:1"], out=tmp_path / "plain", verbose=0, plots=False, augment=False
    )
    assert [s.feature_cache for s in result.stages] == [True, False]
    assert [s.units for s in result.stages] == [(), ("block2",)]
