"""Grad-CAM, feature maps and filters on JAX and PyTorch agree with TensorFlow's, on the same weights.

`cnnzoo/backend/gradients.py` through the explain workflows. Three models are
built and saved as `.keras` files here, under TensorFlow: a zoo chain
(`ConvBlock`s with BatchNormalization), a `keras.applications` backbone
nested in a zoo model (MobileNetV3-Small, random weights, offline) and a
small model that is not a chain.
TensorFlow's Grad-CAM heatmaps, feature maps and filters are the reference;
one subprocess per other backend loads the same files and computes the same
things (`explained`, below, runs in both), then runs `cnnzoo explain`.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import cnnzoo
from conftest import on_backend, require_backend

# inside the backbone, it feeds both the next block and that block's residual `add`: a gradient through both
INNER = "expanded_conv_1_project_bn"


def branching_model():
    """A model that is not a chain: `c1` feeds both `c2` and the `add` after it (read through its graph)."""
    import keras

    inputs = keras.Input((24, 24, 3))
    c1 = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(
        keras.layers.Rescaling(1 / 255)(inputs)
    )
    c2 = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c2")(c1)
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Add(name="add")([c1, c2]))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(pooled), name="branching")


def explained(chain, backbone, branching, images):
    """Everything compared across backends, as a dict of float32 arrays (the same code on each backend)."""
    from cnnzoo.explain import feature_maps, filters, grad_cam
    from cnnzoo.explain.taps import default_gradcam_layer

    got = {
        "gradcam/chain": grad_cam(chain, images),  # default layer: the last ConvBlock's activation
        "gradcam/chain/class 1": grad_cam(chain, images, class_index=1),
        "gradcam/backbone": grad_cam(backbone, images),  # default layer: inside the nested backbone
        "gradcam/backbone/inner": grad_cam(backbone, images[0], layer=INNER),
        "gradcam/branching/c1": grad_cam(branching, images, layer="c1"),
        "filters/chain/kernels": filters(chain),
        "filters/chain/block2_conv2": filters(chain, "block2_conv2", max_filters=3, steps=2),
        "filters/backbone/inner": filters(backbone, "expanded_conv_1_project", max_filters=2, steps=2),
    }
    for name, fmap in feature_maps(chain, images).items():
        got[f"feature_maps/chain/{name}"] = fmap
    last = default_gradcam_layer(backbone).name  # an auto-named activation: its name depends on the process
    for name, fmap in feature_maps(backbone, images[0], layers=["conv_bn", INNER, last]).items():
        got[f"feature_maps/backbone/{name}"] = fmap
    got["feature_maps/branching/add"] = feature_maps(branching, images, layers=["add"])["add"]
    return {key: np.asarray(value, np.float32) for key, value in got.items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """`(folder, TensorFlow's answers)`: the folder holds the three `.keras` models, `images.npy`, `image.png`."""
    import keras
    from PIL import Image

    root = tmp_path_factory.mktemp("gradients")
    keras.utils.set_random_seed(0)
    blocks = [{"filters": f, "convs": 2, "batch_norm": True} for f in (8, 16)]
    chain = cnnzoo.get("bird_classifier", num_classes=3, input_shape=(32, 32, 3), blocks=blocks, dense=[16])
    backbone = cnnzoo.get("mobilenetv3small_classifier", input_shape=(64, 64, 3), num_classes=3, compile=False)
    branching = branching_model()
    for name, model in (("chain", chain), ("backbone", backbone), ("branching", branching)):
        model.save(root / f"{name}.keras")
    images = np.random.default_rng(0).integers(0, 256, (2, 48, 40, 3)).astype(np.uint8)  # resized for each model
    np.save(root / "images.npy", images)
    Image.fromarray(images[0]).save(root / "image.png")
    answers = explained(chain, backbone, branching, images)
    for key in [k for k in answers if k.startswith("gradcam/")]:  # none is blank: a real comparison
        assert np.allclose(answers[key].max(axis=(-2, -1)), 1.0), key
    return root, answers


@pytest.fixture(scope="module", params=("jax", "torch"))
def other(request, reference):
    """`(backend, its answers, what the CLI did)`: one subprocess per backend for every check."""
    require_backend(request.param)
    root, _ = reference
    here = str(Path(__file__).resolve().parent)
    cli = on_backend(
        request.param,
        f"""
        import json, sys
        import numpy as np
        import cnnzoo
        sys.path.insert(0, {here!r})
        from test_gradients import explained

        root = {str(root)!r}
        models = [cnnzoo.load(f"{{root}}/{{name}}.keras", compile=False) for name in ("chain", "backbone", "branching")]
        np.savez(root + "/{request.param}.npz", **explained(*models, np.load(root + "/images.npy")))
        from cnnzoo.cli.app import main
        try:  # `cnnzoo explain`, as the command line runs it
            argv = ["explain", root + "/chain.keras", root + "/image.png", "--out", root + "/cli_{request.param}"]
            done = {{"rc": main(argv)}}
        except Exception as e:
            done = {{"rc": None, "error": f"{{type(e).__name__}}: {{str(e)[:300]}}"}}
        print(json.dumps(done))
        """,
    )
    with np.load(root / f"{request.param}.npz") as saved:
        answers = dict(saved)
    return request.param, answers, cli


@pytest.mark.backends
def test_gradcam_and_feature_maps_agree_with_tensorflow(reference, other):
    _, expected = reference
    backend, got, _ = other
    assert sorted(got) == sorted(expected)
    differences = {key: float(np.abs(got[key] - expected[key]).max()) for key in expected}
    print(backend, json.dumps(differences, indent=1), file=sys.stderr)
    for key, value in expected.items():
        assert got[key].shape == value.shape, key
        if key.startswith("gradcam/"):  # heatmaps in [0, 1], each peaking at 1
            assert differences[key] < 1e-3, (backend, key, differences[key])
        elif key.startswith("feature_maps/"):  # deep in a random-weight backbone they are tiny: relative too
            scale = float(np.abs(value).max())
            assert differences[key] < 1e-4 and differences[key] <= 1e-4 * scale, (backend, key, differences, scale)
        elif key == "filters/chain/kernels":  # the first layer's kernels: no gradient, the same weights
            np.testing.assert_allclose(got[key], value, atol=1e-6)
        else:  # activation maximisation: two ascent steps, each on that backend's gradient
            assert 0.0 <= got[key].min() and got[key].max() <= 1.0, key
            assert differences[key] < 1e-3, (backend, key, differences[key])


@pytest.mark.backends
def test_cli_explain_runs(reference, other):
    root, _ = reference
    backend, _, cli = other
    assert cli == {"rc": 0}, (backend, cli)
    written = root / f"cli_{backend}" / "image"
    assert (written / "gradcam.png").is_file() and sorted(p.name for p in (written / "feature_maps").iterdir())
