"""cnnzoo.export: real ONNX, LiteRT, SavedModel and OpenVINO exports of a small zoo model, run in their own runtimes."""

import json
import subprocess
import zipfile

import numpy as np
import pytest

import cnnzoo
from cnnzoo.deploy.export import ExportResult, verify
from cnnzoo.deploy.runtimes import LABELS_KEY, open_runtime
from cnnzoo.errors import ConfigError, ExportError, IntegrityError
from cnnzoo.utils import integrity
from conftest import PYTHON, REPO, write_image_folder

SIZE = 16
NAMES = ["robin", "heron", "owl"]
TARGETS = {"onnx": "birds.onnx", "litert": "birds.tflite", "savedmodel": "birds_savedmodel", "openvino": "birds_ov"}


@pytest.fixture(scope="module")
def model():
    import keras

    keras.utils.set_random_seed(0)
    return cnnzoo.get(
        "bird_classifier",
        num_classes=3,
        input_shape=(SIZE, SIZE, 3),
        compile=False,
        blocks=[{"filters": 4, "batch_norm": True}, {"filters": 8}],
        dense=[8],
        class_names=NAMES,
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    # 20x20 files in folders named like the classes: resized to 16x16 by predict's loader, labelled
    return write_image_folder(tmp_path_factory.mktemp("images"), classes=NAMES, per_class=4, size=(20, 20))


@pytest.fixture(scope="module")
def exports(model, folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports")
    return {fmt: cnnzoo.export(model, out / name, fmt, verify_with=folder) for fmt, name in TARGETS.items()}


@pytest.mark.parametrize("fmt", list(TARGETS))
def test_export_agrees_with_keras_on_real_images(fmt, exports, model, folder):
    result = exports[fmt]
    assert isinstance(result, ExportResult) and result.format == fmt and result.path.exists()
    assert result.images == 12 and "12 images" in result.source
    assert result.max_abs_diff < 1e-5 and result.top1_agreement == 1.0
    assert result.keras_accuracy is not None and result.exported_accuracy == result.keras_accuracy  # labelled folders
    size = (
        result.path.stat().st_size
        if result.path.is_file()
        else sum(p.stat().st_size for p in result.path.rglob("*") if p.is_file())
    )
    assert result.size_bytes == size > 0 and result.quantize is None and result.float_size_bytes is None
    assert "max abs difference" in result.summary() and json.dumps(result.to_dict())
    # the same check, from outside: images through predict's loader, Keras vs the file's runtime
    from cnnzoo.deploy.inference import load_images

    x = load_images(sorted(str(p) for p in folder.rglob("*.png")), (SIZE, SIZE), 3)[0]
    np.testing.assert_allclose(open_runtime(result.path)(x), model.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize("fmt", list(TARGETS))
def test_class_names_travel_and_batch_is_dynamic(fmt, exports, model):
    runtime = open_runtime(exports[fmt].path)
    assert runtime.format == fmt and runtime.class_names == NAMES and exports[fmt].class_names == tuple(NAMES)
    assert runtime.input_size == (SIZE, SIZE) and runtime.channels == 3
    x = np.random.default_rng(1).uniform(0, 255, (7, SIZE, SIZE, 3)).astype("float32")
    expected = model.predict(x, verbose=0)
    for n in (1, 7, 3, 1):  # batch sizes change from call to call
        np.testing.assert_allclose(runtime(x[:n]), expected[:n], atol=1e-5)
    np.testing.assert_allclose(runtime(x, batch_size=2), expected, atol=1e-5)


def test_labels_are_stored_the_way_each_format_keeps_them(exports):
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(exports["onnx"].path)).metadata_props}
    assert json.loads(meta[LABELS_KEY]) == NAMES
    with zipfile.ZipFile(exports["litert"].path) as z:  # appended to the flatbuffer, as TFLite metadata does
        assert z.read("labels.txt").decode().splitlines() == NAMES
    assert (exports["savedmodel"].path / "assets" / "labels.txt").read_text().splitlines() == NAMES


def test_export_from_a_keras_file_with_default_images(model, tmp_path):
    path = tmp_path / "birds.keras"
    model.save(path)
    result = cnnzoo.export(str(path), tmp_path / "from_file.onnx")  # format from the suffix
    assert result.format == "onnx" and result.max_abs_diff < 1e-5
    # the held-out digits (gray, 8x8) resized and repeated to RGB, plus synthetic colour images; no labels
    assert result.images == 360 + 16 and "digits" in result.source and result.keras_accuracy is None


def test_a_mismatch_raises_and_leaves_no_file(model, folder, tmp_path):
    target = tmp_path / "birds.onnx"
    with pytest.raises(ExportError, match=r"`tolerance`.*nothing was written") as info:
        cnnzoo.export(model, target, verify_with=folder, tolerance=0.0)  # float32 reordering: never exactly 0
    assert "max abs difference" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no file, no temporary file
    target.write_bytes(b"the file there before")
    with pytest.raises(ExportError):
        cnnzoo.export(model, tmp_path / "birds.tflite", verify_with=folder, tolerance=0.0)
    with pytest.raises(ExportError):
        cnnzoo.export(model, target, verify_with=folder, tolerance=0.0)
    assert target.read_bytes() == b"the file there before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["birds.onnx"]


def test_a_tampered_file_fails_verification(model, exports, folder, tmp_path):
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(exports["onnx"].path))
    init = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))  # the largest weight
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, init.name))
    tampered = tmp_path / "tampered.onnx"
    onnx.save(proto, str(tampered))
    assert verify(exports["onnx"].path, model, verify_with=folder).max_abs_diff < 1e-5
    with pytest.raises(ExportError, match="does not give the Keras model's answers"):
        verify(tampered, model, verify_with=folder)


def test_each_export_has_its_sha256_and_a_flipped_byte_is_refused_by_name(exports, tmp_path):
    import shutil

    for fmt, result in exports.items():
        path = result.path
        assert integrity.read_sidecar(path) == integrity.sha256_file(path), fmt  # <out>.sha256 beside it
        copy = tmp_path / path.name
        (shutil.copytree if path.is_dir() else shutil.copy)(path, copy)
        shutil.copy(integrity.sidecar_path(path), integrity.sidecar_path(copy))
        open_runtime(copy)  # intact: it opens
        victim = (
            max((p for p in copy.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size) if copy.is_dir() else copy
        )
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0x10
        victim.write_bytes(bytes(data))
        with pytest.raises(IntegrityError) as caught:
            open_runtime(copy)
        message = str(caught.value)
        assert str(copy) in message and "damaged" in message and "cnnzoo.export" in message, (fmt, message)
    check = subprocess.run(
        ["sha256sum", "-c", "birds.onnx.sha256"], cwd=exports["onnx"].path.parent, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr  # sha256sum's own format


def test_bad_arguments_are_config_errors(model, tmp_path):
    cases = [
        dict(out=tmp_path / "x.onnx", format="litert"),
        dict(out=tmp_path / "x", format=None),
        dict(out=tmp_path / "x.onnx", format="tensorrt"),
        dict(out=tmp_path / "x.onnx", quantize="float16"),
        dict(out=tmp_path / "x", format="savedmodel", quantize="int8"),
        dict(out=tmp_path / "x.onnx", quantize="int4"),
        dict(out=tmp_path / "x.onnx", tolerance=-1),
    ]
    for case in cases:
        with pytest.raises(ConfigError, match=r"Received:"):
            cnnzoo.export(model, case.pop("out"), case.pop("format", None), **case)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="the export replaces it"):  # never a directory holding other files
        cnnzoo.export(model, tmp_path / "project", "savedmodel")
    assert (tmp_path / "project" / "notes.txt").read_text() == "mine"


def test_the_old_keyword_names_warn_naming_the_new_ones_and_still_work(model, folder, tmp_path):
    target = tmp_path / "birds.onnx"
    with pytest.warns(DeprecationWarning) as caught:
        result = cnnzoo.export(model_or_path=model, path=target, verify_with=folder)
    messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert any("`export(model_or_path=...)` is deprecated" in m and "use `model=`" in m for m in messages)
    assert any("`export(path=...)` is deprecated" in m and "use `out=`" in m for m in messages)
    assert result.path == target and result.format == "onnx" and result.top1_agreement == 1.0


def test_an_earlier_savedmodel_export_is_replaced(model, folder, tmp_path):
    target = tmp_path / "birds_sm"
    cnnzoo.export(model, target, "savedmodel", verify_with=folder)
    (target / "assets" / "stale.txt").write_text("from the first export")
    result = cnnzoo.export(model, target, "savedmodel", verify_with=folder)
    assert result.max_abs_diff < 1e-5 and not (target / "assets" / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["birds_sm", "birds_sm.sha256"]  # no temporary, no old


BLOCKED = """
import sys
sys.modules[{name!r}] = None  # as if the package were not installed
import numpy as np, cnnzoo
from cnnzoo.errors import MissingExtraError
try:
    {call}
except MissingExtraError as e:
    print("MISSING:", e)
"""


@pytest.mark.parametrize(
    "name,call",
    [
        ("onnxruntime", "cnnzoo.export(cnnzoo.get('digits_cnn', compile=False), {tmp!r} + '/d.onnx')"),
        ("tf2onnx", "cnnzoo.export(cnnzoo.get('digits_cnn', compile=False), {tmp!r} + '/d.onnx')"),
        ("ai_edge_litert", "cnnzoo.predict({tflite!r}, np.zeros((16, 16, 3)))"),
        ("openvino", "cnnzoo.export(cnnzoo.get('digits_cnn', compile=False), {tmp!r} + '/d_ov', 'openvino')"),
    ],
)
def test_missing_runtime_is_a_missing_extra_error(name, call, exports, tmp_path):
    code = BLOCKED.format(name=name, call=call.format(tmp=str(tmp_path), tflite=str(exports["litert"].path)))
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    message = proc.stdout.split("MISSING:", 1)[-1]
    extra = "openvino" if name == "openvino" else "export"
    assert f"`{name}` package" in message and f"pip install 'cnnzoo[{extra}]'" in message
    assert list(tmp_path.iterdir()) == []


def test_a_mixed_precision_model_exports_its_float32_copy(tmp_path):
    model = cnnzoo.get("digits_cnn", weights="digits", dtype="mixed_bfloat16")
    result = cnnzoo.export(model, tmp_path / "digits_bf16.onnx")
    assert result.top1_agreement == 1.0 and result.max_abs_diff < 1e-4
    float32 = cnnzoo.get("digits_cnn", weights="digits")
    x = cnnzoo.data.digits().x_test[:16]
    mixed = [p.label for p in cnnzoo.predict(model, x)]
    assert [p.label for p in cnnzoo.predict(tmp_path / "digits_bf16.onnx", x)] == [
        p.label for p in cnnzoo.predict(float32, x)
    ]
    assert sum(a == b for a, b in zip(mixed, [p.label for p in cnnzoo.predict(float32, x)])) >= 15
