"""Grad-CAM is right where the answer is known: a CNN trained to name a shape looks at the shape.

Real training, small: a zoo CNN learns which shape (circle, square, triangle, or
none) is drawn with Pillow at a random place on a cluttered background (noise and
random lines). On held-out images the heatmap's maximum must lie inside the shape's
bounding box; heatmaps that ignore the image fail the same check.
"""

import numpy as np
import pytest
from PIL import Image, ImageDraw

import cnnzoo
from cnnzoo.data import resize_array
from cnnzoo.errors import ConfigError, DataError, DataNotFoundError
from cnnzoo.explain import grad_cam, overlay

SIZE = 64
CLASSES = ("circle", "square", "triangle", "none")  # "none": every shape class needs evidence of its own


def shapes(n, seed):
    """`(images uint8 [n, 64, 64, 3], labels, boxes [n, 4] as x0, y0, x1, y1 inclusive)`."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, SIZE, SIZE, 3), np.uint8)
    labels, boxes = rng.integers(0, len(CLASSES), n), np.zeros((n, 4), int)
    for i in range(n):
        base = rng.integers(0, 256, 3)
        canvas = Image.fromarray(np.clip(base + rng.normal(0, 25, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(canvas)
        for _ in range(5):  # clutter
            p = rng.integers(0, SIZE, 4)
            draw.line([tuple(p[:2]), tuple(p[2:])], fill=tuple(int(v) for v in rng.integers(0, 256, 3)), width=1)
        s = int(rng.integers(18, 26))
        x0, y0 = int(rng.integers(0, SIZE - s)), int(rng.integers(0, SIZE - s))
        ink = tuple(int(v) for v in np.clip(255 - base + rng.integers(-30, 30, 3), 0, 255))
        box = [x0, y0, x0 + s - 1, y0 + s - 1]
        if labels[i] == 0:
            draw.ellipse(box, fill=ink)
        elif labels[i] == 1:
            draw.rectangle(box, fill=ink)
        elif labels[i] == 2:
            draw.polygon([(x0, y0 + s - 1), (x0 + s - 1, y0 + s - 1), (x0 + (s - 1) / 2, y0)], fill=ink)
        images[i], boxes[i] = np.asarray(canvas), box
    return images, labels, boxes


def peak_inside(heatmaps, boxes):
    """Fraction of heatmaps whose maximum lies inside the box."""
    hits = []
    for heat, (x0, y0, x1, y1) in zip(heatmaps, boxes):
        row, col = np.unravel_index(np.argmax(heat), heat.shape)
        hits.append(x0 <= col <= x1 and y0 <= row <= y1)
    return float(np.mean(hits))


@pytest.fixture(scope="module")
def trained():
    import keras

    keras.utils.set_random_seed(0)
    x, y, _ = shapes(1200, seed=0)
    model = cnnzoo.get(
        "bird_classifier",
        num_classes=len(CLASSES),
        input_shape=(SIZE, SIZE, 3),
        class_names=list(CLASSES),
        dense=[],
        dropout=0.0,
        pooling="max",
        blocks=[{"filters": f, "convs": 2, "batch_norm": True} for f in (16, 32, 64)],
    )
    model.fit(x.astype("float32"), y, epochs=5, batch_size=32, verbose=0)  # 190 steps
    test_x, test_y, test_boxes = shapes(120, seed=1)
    has_shape = test_y != CLASSES.index("none")
    accuracy = float(np.mean(np.argmax(model.predict(test_x.astype("float32"), verbose=0), 1) == test_y))
    return model, test_x[has_shape], test_boxes[has_shape], accuracy


def test_gradcam_peaks_inside_the_shape(trained):
    model, images, boxes, accuracy = trained
    assert accuracy >= 0.9  # the model learned the task
    heat = grad_cam(model, images)  # default: the last conv feature map, block3_act2 inside a ConvBlock
    assert heat.shape == (len(images), SIZE, SIZE) and heat.dtype == np.float32
    assert heat.min() >= 0.0 and np.allclose(heat.max(axis=(1, 2)), 1.0)
    assert peak_inside(heat, boxes) >= 0.8
    # the check has teeth: heatmaps that ignore the image fail it
    yy, xx = np.mgrid[:SIZE, :SIZE]
    centre = np.exp(-((yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2) / 100.0)
    assert peak_inside(np.zeros_like(heat), boxes) < 0.8  # constant
    assert peak_inside(np.broadcast_to(centre, heat.shape), boxes) < 0.8  # a fixed place
    assert peak_inside(np.roll(heat, 1, axis=0), boxes) < 0.8  # right maps, wrong images
    # one image at a time, as a PIL image: the same map as in the batch
    np.testing.assert_allclose(grad_cam(model, Image.fromarray(images[0])), heat[0], atol=1e-4)
    # at another size: the map of the image the model sees (resized as `cnnzoo.predict` does), at the image's size
    big = Image.fromarray(images[0]).resize((128, 96))
    one = grad_cam(model, big)
    assert one.shape == (96, 128) and one.dtype == np.float32
    seen = resize_array(np.asarray(big), (SIZE, SIZE))
    expected = np.asarray(Image.fromarray(grad_cam(model, seen)).resize((128, 96), Image.Resampling.BILINEAR))
    # (the same up to resampling: the feature-map resolution map is resized once, straight to 96x128)
    assert (
        np.corrcoef(one.ravel(), expected.ravel())[0, 1] > 0.99 and np.abs(one - expected / expected.max()).max() < 0.1
    )


def test_gradcam_class_and_layer_choices(trained):
    model, images, boxes, _ = trained
    image = images[0]
    predicted = int(np.argmax(model.predict(image[None].astype("float32"), verbose=0)))
    np.testing.assert_allclose(grad_cam(model, image), grad_cam(model, image, class_index=predicted), atol=1e-6)
    np.testing.assert_allclose(
        grad_cam(model, image, class_index=CLASSES[predicted]), grad_cam(model, image, class_index=predicted), atol=1e-6
    )
    other = grad_cam(model, image, class_index=(predicted + 1) % 3)
    assert other.shape == (SIZE, SIZE)
    assert not np.allclose(other, grad_cam(model, image), atol=1e-3)
    early = grad_cam(model, image, layer="block2_conv1")  # any feature-map layer
    assert early.shape == (SIZE, SIZE) and 0.0 <= early.min() and early.max() <= 1.0
    listed = grad_cam(model, [image, images[1]])
    assert isinstance(listed, list) and len(listed) == 2


def test_overlay_png_decodes(trained, tmp_path):
    model, images, _, _ = trained
    path = tmp_path / "x.png"
    Image.fromarray(images[0]).save(path)
    heat = grad_cam(model, str(path), out=tmp_path / "gradcam" / "x_overlay.png")
    with Image.open(tmp_path / "gradcam" / "x_overlay.png") as im:
        im.load()  # the 64x64 image enlarged to be read: its picture, title and colour bar beside it
        assert min(im.size) >= 224 and im.mode in ("RGB", "RGBA")
    picture = overlay(images[0], heat, alpha=0.5)
    assert picture.shape == (SIZE, SIZE, 3) and picture.dtype == np.uint8
    assert not np.array_equal(picture, images[0])
    assert np.array_equal(overlay(images[0], heat, alpha=0.0), images[0])
    grad_cam(model, images[:3], out=tmp_path / "batch")
    assert sorted(p.name for p in (tmp_path / "batch").iterdir()) == ["0.png", "1.png", "2.png"]
    small = overlay(Image.fromarray(images[0]).resize((200, 150)), heat, out=tmp_path / "big.png")  # heat resized
    assert small.shape == (150, 200, 3)
    with Image.open(tmp_path / "big.png") as im:
        assert im.size == (200, 150)


def test_the_picture_is_enlarged_titled_and_has_a_colour_bar(trained):
    from cnnzoo.explain.gradcam import explained_picture
    from cnnzoo.explain.gradcam_picture import display_image, figure_rgb, gradcam_picture

    model, images, _, _ = trained
    tiny = np.asarray(Image.fromarray(images[0]).resize((8, 8)))  # an 8x8 image: nearest-neighbour, by 28
    fig = explained_picture(model, tiny)
    said = cnnzoo.predict(model, tiny)  # the image resized for the model as Grad-CAM reads it
    picture, bar = fig.axes  # the image and its colour bar
    assert picture.get_title().startswith(f"Grad-CAM for {said.label!r} ({said.probability:.1%})")
    assert "layer block3_act2" in picture.get_title()
    assert picture.get_images()[0].get_array().shape[:2] == (224, 224)
    rgb, factor = display_image(tiny)  # under the smooth heatmap: crisp pixels, each 28x28
    assert factor == 28 and np.all(rgb[:28, :28] == rgb[0, 0]) and np.array_equal(rgb[::28, ::28], tiny)
    assert bar.get_ylim() == (0.0, 1.0)
    assert not [t for t in picture.texts if "vanish" in t.get_text()]
    rgb = figure_rgb(fig)
    assert rgb.dtype == np.uint8 and rgb.shape[0] >= 224 and rgb.shape[2] == 3
    big = gradcam_picture(np.zeros((900, 600, 3), np.uint8), np.zeros((7, 7)))  # a photo keeps its own pixels
    assert big.axes[0].get_images()[0].get_array().shape[:2] == (900, 600)
    assert [t.get_text() for t in big.axes[0].texts] == ["no region raises this class's score (the map is empty)"]


def test_vanishing_gradients_warn_and_the_picture_says_so(tmp_path):
    from cnnzoo.explain.gradcam import VANISHING, heatmaps

    model = cnnzoo.get("digits_cnn", num_classes=3, input_shape=(16, 16, 1), blocks=[{"filters": 4}], dense=[8])
    image = np.random.default_rng(0).uniform(0, 255, (16, 16)).astype("float32")
    before = heatmaps(model, image[None, :, :, None])
    assert not before.vanished.any() and before.strength[0] > 100 * VANISHING  # untrained, yet not vanishing
    head = model.get_layer("head")  # scores that barely depend on anything: gradients ~1e-10
    for weight in head.weights:
        weight.assign(np.asarray(weight) * 1e-9)
    with pytest.warns(cnnzoo.ExplainWarning, match=r"barely depends on the feature map for 1 of 1 image.*noise"):
        heat = grad_cam(model, image, out=tmp_path / "faint.png")
    assert heat.shape == (16, 16) and heat.max() == pytest.approx(1.0)  # the array keeps its meaning
    assert (tmp_path / "faint.png").is_file()
    from cnnzoo.explain.gradcam import explained_picture

    with pytest.warns(cnnzoo.ExplainWarning):
        notes = [t.get_text() for t in explained_picture(model, image).axes[0].texts]
    assert len(notes) == 1 and notes[0].startswith("gradients vanish")


def test_gradcam_reaches_a_nested_backbone_even_frozen():
    model = cnnzoo.get("bird_classifier_mobilenetv2", num_classes=3, input_shape=(96, 96, 3), compile=False)
    model.get_layer("backbone").trainable = False  # as after the first stage of fine-tuning
    image = np.random.default_rng(0).integers(0, 256, (120, 90, 3)).astype(np.uint8)
    # Untrained, its BatchNorm statistics at their initial values, the backbone passes on almost nothing: the
    # gradients are ~1e-10 (issue 18's untrained model), and the heatmap scaled to [0, 1] is said to be noise.
    with pytest.warns(cnnzoo.ExplainWarning, match=r"at layer 'out_relu': .*\|gradient x activation\| \d.*e-1\d"):
        heat = grad_cam(model, image)  # default: `out_relu`, the last conv map inside the backbone
    assert heat.shape == (120, 90) and heat.min() >= 0.0 and heat.max() == pytest.approx(1.0)
    with pytest.warns(cnnzoo.ExplainWarning, match="block_13_expand_relu"):
        inner = grad_cam(model, image, layer="block_13_expand_relu")
    assert inner.shape == (120, 90) and inner.max() == pytest.approx(1.0)
    from cnnzoo.explain import taps

    assert taps.default_gradcam_layer(model).name == "out_relu"


def test_gradcam_errors(trained):
    model, images, _, _ = trained
    with pytest.raises(
        ConfigError,
        match=r"`layer` must name layers of .*Did you mean `block3_conv2`.*"
        r"Received: layer='block3_conv3'",
    ):
        grad_cam(model, images[0], layer="block3_conv3")
    with pytest.raises(ConfigError, match=r"`layer` must name .*Received: layer='head'"):
        grad_cam(model, images[0], layer="head")  # not a feature map
    with pytest.raises(
        ConfigError,
        match=r"`class_index` must be None, a class name or an int from 0 to 3.*"
        r"Received: class_index=4",
    ):
        grad_cam(model, images[0], class_index=4)
    with pytest.raises(ConfigError, match=r"`class_index` must be an int .*Received: class_index='hexagon'"):
        grad_cam(model, images[0], class_index="hexagon")
    with pytest.raises(DataError, match=r"`image` arrays must be numeric .*Received: an array of shape \(4, 4, 7\)"):
        grad_cam(model, np.zeros((4, 4, 7)))
    with pytest.raises(DataNotFoundError, match=r"`image` must name existing image files.*Received: image='no/"):
        grad_cam(model, "no/such/image.png")
    with pytest.raises(ConfigError, match=r"`alpha` must be a number from 0 to 1. Received: alpha=2"):
        overlay(images[0], np.zeros((4, 4)), alpha=2)
    with pytest.raises(DataError, match=r"`heatmap` must be a finite 2-D array"):
        overlay(images[0], np.zeros((4, 4, 3)))
