"""Mobile deployment: TFLite metadata, uint8 I/O, preprocessing inside the model, the GPU
delegate report, and MediaPipe Tasks' ImageClassifier as the client.

The trained run and its exports come from conftest.py (the paper's v1 with LRN, 32 px,
trained on sklearn's digits), shared with test_export.py.
"""

import io
import json
import os
import zipfile

import keras
import numpy as np
import pytest
from _digits import LABELS, SIZE, scale
from mediapipe.tasks.metadata import metadata_schema_py_generated as mp_schema
from PIL import Image

from keras_googlenet import GoogLeNet, float32_inference_model, inference_model
from keras_googlenet.export import export_model
from keras_googlenet.export import tflite_metadata as tm
from keras_googlenet.export.tflite_gpu import gpu_delegate_report
from keras_googlenet.model_card import has_preprocessing_layer
from keras_googlenet.preprocessing import (
    EVAL_CROP_FRACTION,
    central_crop_box,
    preprocess_in_model,
    resize_pixels,
)
from keras_googlenet.runtime import load_predictor
from keras_googlenet_training.cli import export as export_cli
from keras_googlenet_training.cli import predict as predict_cli

TFLITE_FORMATS = ("tflite-fp32", "tflite-fp16", "tflite-dynamic", "tflite-int8")


def mediapipe_classifier(path, max_results=3):
    """MediaPipe Tasks' ImageClassifier with nothing but the model path and max_results."""
    from mediapipe.tasks import python as mp_tasks
    from mediapipe.tasks.python import vision

    options = vision.ImageClassifierOptions(
        base_options=mp_tasks.BaseOptions(model_asset_path=path), max_results=max_results)
    return vision.ImageClassifier.create_from_options(options)


def mediapipe_top1(classifier, pixels):
    import mediapipe as mp

    image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(pixels))
    best = classifier.classify(image).classifications[0].categories[0]
    return best.category_name, best.index


def mediapipe_agreement(classifier, ours, images):
    """The share of `images` where MediaPipe's best score is also its score for our top-1
    label (in `ours`): an exact tie counts as agreement whichever class each side names,
    since int8 scores tie often and the two break ties differently (we take the lower
    index)."""
    import mediapipe as mp

    agree = []
    for label, pixels in zip(ours, images, strict=True):
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(pixels))
        categories = classifier.classify(image).classifications[0].categories
        scores = {category.category_name: category.score for category in categories}
        agree.append(scores.get(label) == categories[0].score)
    return float(np.mean(agree))


def eval_crop(pixels):
    """The central crop googlenet-predict takes before resizing; MediaPipe only resizes."""
    top, left, h, w = central_crop_box(pixels.shape[0], pixels.shape[1], EVAL_CROP_FRACTION)
    return pixels[top:top + h, left:left + w]


def eval_pixels(pixels):
    """What googlenet-predict feeds the model (central crop, bilinear resize), as uint8.

    MediaPipe resizes with its own kernel; at 28 -> 32 px upscaling that alone flips a
    few borderline digits (docs/mobile.md), so the agreement test hands MediaPipe the
    image already at the model's input size.
    """
    return resize_pixels(pixels, (SIZE, SIZE), scale=False).round().astype("uint8")


@pytest.fixture(scope="module")
def held_out_pngs(tmp_path_factory, digits):
    (_, _), (x_val, _) = digits
    folder = tmp_path_factory.mktemp("held_out")
    paths = []
    for i, pixels in enumerate(x_val):
        path = str(folder / f"{i:03d}.png")
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def googlenet_predict_top1(model_path, image_paths, capsys):
    capsys.readouterr()
    status = predict_cli.main([*image_paths, "--model", model_path, "--top-k", "1", "--json"])
    assert status == 0
    results = json.loads(capsys.readouterr().out)["results"]
    return [r["predictions"][0]["label"] for r in results]


@pytest.mark.parametrize("fmt", TFLITE_FORMATS)
def test_mediapipe_image_classifier_runs_every_tflite_export(
        fmt, exported, digits, held_out_pngs, capsys):
    _, report = exported
    path = report[fmt].path
    (_, _), (x_val, _) = digits
    ours = googlenet_predict_top1(path, held_out_pngs, capsys)
    images = [eval_pixels(pixels) for pixels in x_val]
    with mediapipe_classifier(path, max_results=len(LABELS)) as classifier:
        theirs = [mediapipe_top1(classifier, image) for image in images]
        agreement = mediapipe_agreement(classifier, ours, images)
    assert {name for name, _ in theirs} <= set(LABELS)  # named categories from labels.txt
    assert all(name == LABELS[index] for name, index in theirs)
    assert agreement >= 0.99, f"{fmt}: MediaPipe agrees with googlenet-predict on {agreement:.2%}"


def metadata_buffer(model_bytes):
    """The raw `ModelMetadata` flatbuffer stored in a TFLite model, or None."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(tm.strip_appended_zip(bytes(model_bytes)), 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() and entry.Name().decode() == tm.METADATA_BUFFER_NAME:
            return model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    return None


def associated_files(model_bytes):
    """`{name: bytes}` of the files packed after a TFLite model (the zip MediaPipe reads)."""
    stream = io.BytesIO(bytes(model_bytes))
    if not zipfile.is_zipfile(stream):
        return {}
    with zipfile.ZipFile(stream) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def read_metadata(path):
    with open(path, "rb") as f:
        content = f.read()
    buffer = metadata_buffer(content)
    assert buffer is not None, f"{path} has no TFLITE_METADATA"
    assert mp_schema.ModelMetadata.ModelMetadataBufferHasIdentifier(buffer, 0)
    return mp_schema.ModelMetadataT.InitFromObj(
        mp_schema.ModelMetadata.GetRootAs(buffer, 0)), associated_files(content)


@pytest.mark.parametrize("fmt, mean, std, low, high", [
    ("tflite-fp32", 127.5, 127.5, -1.0, 1.0),
    ("tflite-fp16", 127.5, 127.5, -1.0, 1.0),
    ("tflite-dynamic", 127.5, 127.5, -1.0, 1.0),
    ("tflite-int8", 0.0, 1.0, 0.0, 255.0),  # uint8 pixels, rescaled inside the model
])
def test_metadata_describes_the_input_output_and_labels(fmt, mean, std, low, high, exported):
    _, report = exported
    metadata, files = read_metadata(report[fmt].path)
    assert metadata.name.decode() == report[fmt].card["model"]["name"]
    assert b"GoogLeNet" in metadata.description and b"digits" in metadata.description
    assert metadata.version.startswith(b"keras_googlenet ")
    (subgraph,) = metadata.subgraphMetadata
    (image,) = subgraph.inputTensorMetadata
    assert image.content.contentPropertiesType == mp_schema.ContentProperties.ImageProperties
    assert image.content.contentProperties.colorSpace == mp_schema.ColorSpaceType.RGB
    (unit,) = image.processUnits
    assert unit.optionsType == mp_schema.ProcessUnitOptions.NormalizationOptions
    assert list(unit.options.mean) == [mean] and list(unit.options.std) == [std]
    assert list(image.stats.min) == [low] and list(image.stats.max) == [high]
    (scores,) = subgraph.outputTensorMetadata
    (labels,) = scores.associatedFiles
    assert labels.type == mp_schema.AssociatedFileType.TENSOR_AXIS_LABELS
    assert files[labels.name.decode()].decode().split() == LABELS
    assert report[fmt].card["tflite_metadata"]["mean"] == [mean]


def test_metadata_does_not_change_the_numbers(exported, digits):
    from ai_edge_litert.interpreter import Interpreter

    _, report = exported
    (_, _), (x_val, _) = digits
    with open(report["tflite-fp32"].path, "rb") as f:
        with_metadata = f.read()
    # the same flatbuffer with its metadata entry and appended labels removed
    bare = tm.strip_appended_zip(with_metadata)
    assert associated_files(bare) == {} and len(bare) < len(with_metadata)

    def run(content):
        interpreter = Interpreter(model_content=content)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], scale(x_val[:1]))
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

    relabelled = tm.add_image_classifier_metadata(
        bare, labels=list("abcdefghij"), mean=[127.5], std=[127.5], input_range=(-1, 1))
    np.testing.assert_array_equal(run(with_metadata), run(relabelled))
    # the weights keep the 16-byte alignment the schema asks for after repacking
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(tm.strip_appended_zip(relabelled), 0)
    starts = [model.Buffers(i)._tab.Vector(model.Buffers(i)._tab.Offset(4))
              for i in range(model.BuffersLength()) if model.Buffers(i).DataLength() > 64]
    assert starts and all(start % 16 == 0 for start in starts)


def test_int8_defaults_to_uint8_pixels_in_and_out(exported, digits):
    _, report = exported
    card = report["tflite-int8"].card
    predictor = load_predictor(report["tflite-int8"].path)
    assert predictor.input["dtype"] == np.uint8 and predictor.output["dtype"] == np.uint8
    assert tuple(predictor.input["quantization"]) == (1.0, 0)  # a pixel is its own value
    assert card["int8_io"] == "uint8" and card["preprocessing"]["in_model"]


@pytest.mark.slow
def test_int8_io_int8_stays_selectable(tmp_path, digits):
    (x_train, _), _ = digits
    model = GoogLeNet(variant="v1_bn", input_shape=(SIZE, SIZE, 3), classes=10,
                      width_multiplier=0.25)
    report = export_model(model, tmp_path, ["tflite-int8"], calibration_data=x_train,
                          calibration_steps=10, int8_io="int8", verify=False, verbose=False)
    card = report["tflite-int8"].card
    assert card["input"]["dtype"] == "int8" and not card["preprocessing"]["in_model"]
    metadata, _ = read_metadata(report["tflite-int8"].path)
    unit = metadata.subgraphMetadata[0].inputTensorMetadata[0].processUnits[0]
    assert list(unit.options.mean) == [127.5]


def test_gpu_delegate_report_names_lrn_and_warns(exported):
    _, report = exported
    for fmt in TFLITE_FORMATS:
        gpu = report[fmt].card["gpu_delegate"]
        assert not gpu["compatible"]
        assert gpu["unsupported_ops"] == {"LOCAL_RESPONSE_NORMALIZATION": 2}
        assert any("LOCAL_RESPONSE_NORMALIZATION" in w for w in report[fmt].warnings)
    assert "WARNING: LiteRT's GPU delegate cannot run LOCAL_RESPONSE_NORMALIZATION" \
        in report.summary()
    assert "gpu_delegate" not in report["onnx"].card


@pytest.mark.slow
def test_gpu_delegate_report_passes_the_batch_norm_variants(tmp_path):
    model = GoogLeNet(variant="torchvision", input_shape=(SIZE, SIZE, 3), classes=4,
                      width_multiplier=0.25)
    report = export_model(model, tmp_path, ["tflite-fp32"], verbose=False)
    gpu = report["tflite-fp32"].card["gpu_delegate"]
    assert gpu["compatible"] and gpu["unsupported_ops"] == {}
    assert gpu["ops"]["CONV_2D"] > 50 and not report["tflite-fp32"].warnings
    with open(report["tflite-fp32"].path, "rb") as f:
        assert gpu_delegate_report(f.read()) == gpu


# --------------------------------------------------------------------------- preprocessing


@pytest.mark.slow
def test_include_preprocessing_takes_pixels_and_survives_round_trips(tmp_path):
    kwargs = dict(variant="torchvision", input_shape=(56, 56, 3), classes=5,
                  width_multiplier=0.25, include_aux=True)
    plain = GoogLeNet(**kwargs)
    plain.save_weights(str(tmp_path / "plain.weights.h5"))
    model = GoogLeNet(**kwargs, include_preprocessing=True,
                      weights=str(tmp_path / "plain.weights.h5"))
    assert model.layers[1].name == "preprocessing"
    pixels = np.random.default_rng(0).integers(0, 256, (2, 56, 56, 3)).astype("float32")
    expected = plain(scale(pixels))["main"]
    np.testing.assert_allclose(model(pixels)["main"], expected, atol=1e-5)

    model.save(str(tmp_path / "m.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "m.keras"), safe_mode=True)
    np.testing.assert_allclose(loaded(pixels)["main"], expected, atol=1e-5)
    for pruned in (inference_model(loaded), float32_inference_model(loaded)):
        assert has_preprocessing_layer(pruned)
        np.testing.assert_allclose(pruned(pixels), expected, atol=1e-5)
    # and back: its weights load into a model without the preprocessing
    model.save_weights(str(tmp_path / "pp.weights.h5"))
    again = GoogLeNet(**kwargs, weights=str(tmp_path / "pp.weights.h5"))
    np.testing.assert_allclose(again(scale(pixels))["main"], expected, atol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    ({"input_shape": (SIZE, SIZE, 1)}, "`include_preprocessing=True` rescales RGB"),
    ({"include_preprocessing": "yes"}, "`include_preprocessing` must be True or False"),
])
def test_include_preprocessing_bad_input(kwargs, message):
    kwargs = {"input_shape": (SIZE, SIZE, 3), "include_preprocessing": True, **kwargs}
    with pytest.raises(ValueError, match=message):
        GoogLeNet(variant="v1_bn", classes=3, **kwargs)


@pytest.mark.parametrize("mode", ["tf", "torch", "caffe"])
def test_preprocess_in_model_matches_preprocess_input(mode, tmp_path):
    from keras_googlenet import preprocess_input

    pixels = keras.Input((8, 8, 3))
    model = keras.Model(pixels, preprocess_in_model(pixels, mode))
    model.save(str(tmp_path / "p.keras"))  # Keras' own layers: loads under safe_mode
    model = keras.saving.load_model(str(tmp_path / "p.keras"), safe_mode=True)
    x = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(model(x), preprocess_input(x.copy(), mode=mode), atol=1e-4)


@pytest.mark.slow
def test_every_format_of_a_model_with_preprocessing_inside(tmp_path, digits):
    (x_train, _), (x_val, y_val) = digits
    model = GoogLeNet(variant="torchvision", input_shape=(SIZE, SIZE, 3), classes=10,
                      width_multiplier=0.25, include_preprocessing=True)
    # one format per conversion path (fp16 and dynamic share tflite-fp32's)
    formats = ["savedmodel", "tflite-fp32", "tflite-int8", "onnx"]
    report = export_model(model, tmp_path, formats, calibration_data=x_train,
                          calibration_steps=20, verbose=False, labels=LABELS)
    assert report.ok, report.summary()
    expected = model.predict(x_val[:8].astype("float32"), verbose=0)
    for result in report.results:
        assert result.card["preprocessing"]["in_model"], result.format
        predictor = load_predictor(result.path)
        probs = predictor.predict(x_val[:8].astype("float32"))  # pixels go in
        atol = 2e-2 if result.format in ("tflite-int8", "tflite-dynamic") else 1e-3
        np.testing.assert_allclose(probs, expected, atol=atol, err_msg=result.format)
        if result.path.endswith(".tflite"):
            metadata, _ = read_metadata(result.path)
            unit = metadata.subgraphMetadata[0].inputTensorMetadata[0].processUnits[0]
            assert list(unit.options.mean) == [0.0] and list(unit.options.std) == [1.0]


def test_export_option_prepends_preprocessing_to_a_trained_run(
        tmp_path, trained_run, digits, capsys):
    run_dir, model, _ = trained_run
    (_, _), (x_val, _) = digits
    status = export_cli.main([run_dir, "--out", str(tmp_path), "--formats", "tflite-fp32",
                              "--include-preprocessing", "--no-verify"])
    assert status == 0
    path = str(tmp_path / f"{model.name}_fp32.tflite")
    predictor = load_predictor(path)
    assert predictor.card["preprocessing"]["in_model"]
    np.testing.assert_allclose(predictor.predict(x_val[:4].astype("float32")),
                               model.predict(scale(x_val[:4]), verbose=0), atol=1e-4)
    metadata, _ = read_metadata(path)
    unit = metadata.subgraphMetadata[0].inputTensorMetadata[0].processUnits[0]
    assert list(unit.options.mean) == [0.0] and list(unit.options.std) == [1.0]
    with mediapipe_classifier(path) as classifier:
        name, _ = mediapipe_top1(classifier, eval_crop(x_val[0]))
    assert name in LABELS


# --------------------------------------------------------------------------- bad input


@pytest.mark.slow
def test_labels_that_do_not_match_the_classes_fail_before_conversion(tmp_path, capsys):
    model = GoogLeNet(variant="v1_bn", input_shape=(SIZE, SIZE, 3), classes=3,
                      width_multiplier=0.25)
    with pytest.raises(ValueError, match="`labels` has 2 names but the model has 3 classes"):
        export_model(model, tmp_path / "out", ["tflite-fp32"], labels=["a", "b"],
                     verbose=False)
    assert not (tmp_path / "out").exists()
    model.save(str(tmp_path / "m.keras"))
    (tmp_path / "labels.txt").write_text("a\nb\nc\nd\n")
    status = export_cli.main([str(tmp_path / "m.keras"), "--out", str(tmp_path / "cli"),
                              "--formats", "tflite-fp32", "--labels",
                              str(tmp_path / "labels.txt")])
    assert status == 2
    assert "`labels` has 4 names but the model has 3 classes" in capsys.readouterr().err
    assert not (tmp_path / "cli").exists()


@pytest.mark.slow
def test_metadata_that_cannot_be_written_fails_that_format_only(tmp_path, monkeypatch, capsys):
    from keras_googlenet.export import cards

    def broken(flatbuffer, card):
        raise tm.MetadataError("simulated: the metadata writer failed")

    model = GoogLeNet(variant="v1_bn", input_shape=(SIZE, SIZE, 3), classes=3,
                      width_multiplier=0.25)
    model.save(str(tmp_path / "m.keras"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "m_fp32.tflite").write_bytes(b"the previous good artefact")
    monkeypatch.setattr(cards, "with_tflite_metadata", broken)
    status = export_cli.main([str(tmp_path / "m.keras"), "--out", str(out), "--name", "m",
                              "--formats", "savedmodel,tflite-fp32", "--no-verify"])
    assert status == 1
    err = capsys.readouterr().err
    assert "tflite-fp32" in err and "simulated: the metadata writer failed" in err
    assert (out / "m_fp32.tflite").read_bytes() == b"the previous good artefact"
    assert (out / "m_savedmodel").is_dir() and not (out / "m_fp32.tflite.json").exists()
    assert not [name for name in os.listdir(out) if name.startswith(".")]


def test_metadata_writer_rejects_bad_arguments():
    with pytest.raises(tm.MetadataError, match="`std` must not contain 0"):
        tm.add_image_classifier_metadata(b"", labels=["a"], mean=[0.0], std=[0.0],
                                         input_range=(0, 1))
    with pytest.raises(tm.MetadataError, match="not a TFLite flatbuffer"):
        tm.add_image_classifier_metadata(b"not a model", labels=["a"], mean=[0.0],
                                         std=[1.0], input_range=(0, 1))
