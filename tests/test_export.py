"""Export to SavedModel / TFLite / ONNX with verification (keras_googlenet.export)."""

import json
import os
import re
import shutil
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from _digits import LABELS, SIZE, scale  # noqa: E402 - the tests folder's helpers

from keras_googlenet import GoogLeNet
from keras_googlenet.export import FORMATS, ExportError, export_model
from keras_googlenet.export.formats import DEFAULT_BOUNDS
from keras_googlenet.export.source import load_source, take_images
from keras_googlenet.model_card import infer_variant, infer_widths, read_model_card
from keras_googlenet.preprocessing import resize_pixels
from keras_googlenet.runtime import load_predictor
from keras_googlenet.spec import resolve_widths


def test_the_trained_model_is_decent(trained_run):
    # The int8 agreement bound is only meaningful on a model that has learnt something
    # (about 96.7 % here).
    assert trained_run[2] >= 0.93


def test_every_format_is_written_and_passes_its_bounds(exported):
    out, report = exported
    assert report.ok, report.summary()
    assert [r.format for r in report.results] == list(FORMATS)
    for result in report.results:
        assert os.path.exists(result.path) and os.path.isfile(result.card_path)
        v = result.verification
        assert v["data"] == "validation" and v["samples"] == 397 and v["passed"]
        # labelled images: the accuracy drop is the enforced bound, the agreement a figure
        assert {c["metric"]: c["enforced"] for c in v["checks"]}["accuracy_drop"]
        assert all(c["passed"] for c in v["checks"] if c["enforced"])
    for fmt in ("savedmodel", "tflite-fp32", "onnx"):
        assert report[fmt].verification["max_abs_diff"] <= 1e-4
        assert report[fmt].verification["top1_agreement"] == 1.0
    assert report["tflite-fp16"].verification["top1_agreement"] >= 0.995
    assert report["tflite-int8"].verification["top1_agreement"] >= 0.99
    assert report["tflite-dynamic"].verification["top1_agreement"] >= 0.99
    assert report["savedmodel"].verification["uint8_signature_max_abs_diff"] <= 1e-4
    # nothing half-written or temporary is left behind
    assert not [name for name in os.listdir(out) if name.startswith(".")]


def test_quantized_artefacts_are_smaller_and_typed(exported):
    out, report = exported
    sizes = {r.format: r.card["file_size_bytes"] for r in report.results}
    assert sizes["tflite-int8"] < sizes["tflite-fp16"] < sizes["tflite-fp32"]
    assert sizes["tflite-dynamic"] < sizes["tflite-fp16"]
    card = report["tflite-int8"].card
    # uint8 by default (what MediaPipe accepts), fed raw pixels: the input quantization
    # is the identity because the preprocessing runs inside the model.
    assert card["input"]["dtype"] == "uint8" and card["output"]["dtype"] == "uint8"
    assert card["input"]["quantization"] == {"scale": 1.0, "zero_point": 0}
    assert card["preprocessing"]["in_model"] and card["int8_io"] == "uint8"
    assert card["calibration"] == {"images": 600}  # the range-pinning gradient not counted
    assert report["tflite-fp32"].card["input"]["dtype"] == "float32"


def test_model_card_contents(exported, trained_run):
    run_dir, model, _ = trained_run
    out, report = exported
    card = read_model_card(report["tflite-fp16"].path)
    assert card == report["tflite-fp16"].card
    assert card["format"] == "tflite-fp16" and card["precision"] == "float16"
    assert card["model"]["variant"] == "v1"
    assert card["model"]["input_size"] == [SIZE, SIZE]
    assert card["model"]["classes"] == 10 and card["model"]["params"] == model.count_params()
    assert card["model"]["widths"]["3a"] == list(resolve_widths(None, 0.25)["3a"])
    assert card["labels"] == LABELS
    assert card["preprocessing"]["formula"] == "x / 127.5 - 1"
    assert card["preprocessing"]["central_crop"] == 0.875
    assert card["source"]["run_dir"] == os.path.abspath(run_dir)
    assert card["source"]["dataset"] == "digits"
    assert card["file_size_bytes"] == os.path.getsize(report["tflite-fp16"].path)
    assert card["verification"]["top1_agreement"] >= 0.995
    assert read_model_card(report["onnx"].path)["onnx"]["opset"] >= 17
    # the SavedModel carries its card inside too
    inner = os.path.join(report["savedmodel"].path, "model_card.json")
    assert json.load(open(inner))["format"] == "savedmodel"


def test_savedmodel_signatures(exported, trained_run, digits):
    _, report = exported
    _, model, _ = trained_run
    (_, _), (x_val, _) = digits
    loaded = tf.saved_model.load(report["savedmodel"].path)
    assert set(loaded.signatures) == {"serving_default", "serving_uint8"}
    serve = loaded.signatures["serving_default"]
    spec = serve.structured_input_signature[1]["image"]
    assert spec.dtype == tf.float32 and spec.shape.as_list() == [None, SIZE, SIZE, 3]
    assert list(serve.structured_outputs) == ["predictions"]
    for batch in (1, 5):  # dynamic batch
        x = scale(x_val[:batch])
        probs = serve(image=tf.constant(x))["predictions"].numpy()
        assert probs.shape == (batch, 10)
        np.testing.assert_allclose(probs, model(x, training=False), atol=1e-5)
    raw = loaded.signatures["serving_uint8"]
    raw_spec = raw.structured_input_signature[1]["image"]
    assert raw_spec.dtype == tf.uint8 and raw_spec.shape.as_list() == [None, None, None, 3]
    # decoded pixels of another size: central crop, resize and scaling inside the graph,
    # exactly the evaluation transform of the training pipeline (preprocessing.resize_pixels)
    big = tf.image.resize(x_val[:3], (48, 40)).numpy().round().astype("uint8")
    expected = model(np.stack([resize_pixels(image, (SIZE, SIZE)) for image in big]),
                     training=False)
    np.testing.assert_allclose(raw(image=tf.constant(big))["predictions"], expected, atol=1e-5)
    crop = tf.image.resize(x_val[:3, 2:30, 2:30], (SIZE, SIZE)).numpy() / 127.5 - 1.0
    np.testing.assert_allclose(raw(image=tf.constant(x_val[:3]))["predictions"],
                               model(crop, training=False), atol=1e-5)


def test_runtime_matches_keras_for_float_formats(exported, trained_run, digits):
    _, report = exported
    _, model, _ = trained_run
    x = scale(digits[1][0][:16])
    expected = model(x, training=False).numpy()
    for fmt in ("savedmodel", "tflite-fp32", "onnx"):
        predictor = load_predictor(report[fmt].path)
        np.testing.assert_allclose(predictor.predict(x), expected, atol=1e-4, err_msg=fmt)
        assert predictor.labels == LABELS and predictor.input_size == (SIZE, SIZE)


def test_failed_reexport_keeps_the_good_artefact(exported, trained_run):
    run_dir, _, _ = trained_run
    out, report = exported
    path = report["tflite-fp32"].path
    before = open(path, "rb").read(), open(report["tflite-fp32"].card_path).read()
    sm_card = open(report["savedmodel"].card_path).read()
    with pytest.raises(ExportError, match="max_abs_diff") as caught:
        export_model(run_dir, out, ["tflite-fp32", "savedmodel"], verbose=False,
                     bounds={"tflite-fp32": {"max_abs_diff": -1.0},
                             "savedmodel": {"max_abs_diff": -1.0}})
    failed = caught.value.report
    assert not failed.ok and failed["tflite-fp32"].path is None
    assert failed["tflite-fp32"].verification["max_abs_diff"] <= 1e-4  # figures still there
    assert (open(path, "rb").read(), open(report["tflite-fp32"].card_path).read()) == before
    assert open(report["savedmodel"].card_path).read() == sm_card
    assert tf.saved_model.load(report["savedmodel"].path).signatures["serving_default"]
    assert not [name for name in os.listdir(out) if name.startswith(".")]


def _files(directory):
    """{relative path: bytes} of every file under `directory`, and its hidden entries."""
    files, hidden = {}, []
    for root, dirs, names in os.walk(directory):
        hidden += [n for n in dirs + names if n.startswith(".")]
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, directory)] = f.read()
    return files, hidden


def _kill_an_export_while_it_converts(source, out):
    """SIGKILL a `googlenet-export` process as soon as it has written its first byte."""
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_googlenet_training.cli.export", str(source), "--out",
         str(out), "--formats", "onnx"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        deadline = time.monotonic() + 240
        while process.poll() is None and time.monotonic() < deadline:
            if [n for n in os.listdir(out) + os.listdir(out.parent) if n.startswith(".")]:
                break
            time.sleep(0.02)
        assert process.poll() is None, "the export ended before it could be killed"
    finally:
        process.kill()
        process.wait()


def _save_small_model(path, seed):
    keras.utils.set_random_seed(seed)
    GoogLeNet(variant="v1_bn", input_shape=(SIZE, SIZE, 3), classes=3,
              width_multiplier=0.25).save(path)


@pytest.mark.slow
def test_reexport_swaps_in_verified_artefacts_and_cards_and_keeps_the_users_files(
        tmp_path, monkeypatch):
    """Re-exporting replaces the artefact and its card together, only once verified; a
    failed replacement leaves the old ones byte-identical; the user's files stay; no
    temporary file is left, in the export directory or beside it."""
    out = tmp_path / "out"
    _save_small_model(tmp_path / "a.keras", seed=0)
    assert export_model(tmp_path / "a.keras", out, ["onnx"], verbose=False).ok
    (out / "notes.txt").write_text("keep me")
    (out / "mine").mkdir()
    (out / "mine" / "data.bin").write_bytes(b"\x00\x01")
    before, _ = _files(out)

    _save_small_model(tmp_path / "b.keras", seed=1)
    with pytest.raises(ExportError, match="max_abs_diff"):  # a real failure: a missed bound
        export_model(tmp_path / "b.keras", out, ["onnx"], verbose=False,
                     bounds={"onnx": {"max_abs_diff": -1.0}})
    assert _files(out) == (before, [])
    assert sorted(os.listdir(tmp_path)) == ["a.keras", "b.keras", "out"]
    _kill_an_export_while_it_converts(tmp_path / "b.keras", out)
    assert _files(out) == (before, [])  # no temporary inside: at most a stage beside it
    for name in os.listdir(tmp_path):
        if name.startswith(".out.export-"):
            shutil.rmtree(tmp_path / name)

    users_directory = os.stat(out).st_ino
    report = export_model(tmp_path / "b.keras", out, ["onnx"], verbose=False)
    after, hidden = _files(out)
    assert report.ok and not hidden
    # It holds the user's files: published file by file, the directory itself never
    # replaced (its inode, owner and ACLs stay).
    assert os.stat(out).st_ino == users_directory
    assert sorted(os.listdir(tmp_path)) == ["a.keras", "b.keras", "out"]
    assert after["googlenet.onnx"] != before["googlenet.onnx"]  # model b's weights
    card = json.loads(after["googlenet.onnx.json"])
    assert card["file_size_bytes"] == len(after["googlenet.onnx"])  # the card of model b
    assert card["source"]["path"].endswith("b.keras")
    assert {k: after[k] for k in ("notes.txt", os.path.join("mine", "data.bin"))} == \
        {k: before[k] for k in ("notes.txt", os.path.join("mine", "data.bin"))}

    # Where the directory cannot be swapped (here: it is the working directory), each
    # artefact and its card are published in place; the directory itself stays.
    monkeypatch.chdir(out)
    inode = os.stat(out).st_ino
    assert export_model(tmp_path / "a.keras", ".", ["onnx"], name="again", verbose=False).ok
    again, hidden = _files(out)
    assert os.stat(out).st_ino == inode and not hidden
    assert json.loads(again["again.onnx.json"])["source"]["path"].endswith("a.keras")
    assert again["googlenet.onnx"] == after["googlenet.onnx"] and again["notes.txt"] == b"keep me"


@pytest.mark.slow
def test_mixed_precision_training_model_with_aux_heads_exports(tmp_path):
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = GoogLeNet(variant="torchvision", include_aux=True, input_shape=(65, 65, 3),
                      classes=4, width_multiplier=0.25)
    keras.config.set_dtype_policy("float32")
    model.save(tmp_path / "model.keras")
    report = export_model(tmp_path / "model.keras", tmp_path / "out",
                          ["tflite-fp32", "savedmodel"], name="mp", verbose=False)
    assert report.ok, report.summary()
    for result in report.results:
        assert result.verification["max_abs_diff"] <= 1e-4  # against the float32 rebuild
        assert result.card["model"]["variant"] == "torchvision"
        assert result.card["output"]["shape"] == [None, 4]
        assert result.card["labels"] is None
    assert sorted(os.listdir(tmp_path / "out")) == [
        "mp_fp32.tflite", "mp_fp32.tflite.json", "mp_savedmodel", "mp_savedmodel.json"]
    x = np.random.default_rng(0).uniform(-1, 1, (2, 65, 65, 3)).astype("float32")
    probs = load_predictor(report["tflite-fp32"].path).predict(x)
    # bf16 training model vs the float32 export: equal to bf16 precision
    np.testing.assert_allclose(probs, model(x)["main"], atol=2e-2)


@pytest.mark.parametrize("variant,expected", [("v1", "v1"), ("v1_bn", "v1_bn"),
                                              ("torchvision", "torchvision"),
                                              ("factorized", "factorized")])
def test_variant_and_widths_are_inferred_from_layers(variant, expected):
    model = GoogLeNet(variant=variant, input_shape=(32, 32, 3), classes=3,
                      widths={"4e": {"1x1": 200}}, width_multiplier=0.5)
    assert infer_variant(model) == expected
    widths = infer_widths(model)
    expected_widths = resolve_widths({"4e": {"1x1": 200}}, 0.5)
    assert widths == {k: list(v) for k, v in expected_widths.items()}


@pytest.mark.slow
def test_int8_io_uint8_logits_model_without_validation_images(tmp_path, digits):
    (x_train, _), (x_val, _) = digits
    model = GoogLeNet(variant="v1_bn", input_shape=(SIZE, SIZE, 3), classes=10,
                      width_multiplier=0.25, classifier_activation=None)
    report = export_model(model, tmp_path, ["tflite-int8", "tflite-dynamic"],
                          calibration_data=x_train, calibration_steps=20, int8_io="uint8",
                          verbose=False)
    card = report["tflite-int8"].card
    assert card["input"]["dtype"] == "uint8" and card["output"]["dtype"] == "uint8"
    assert card["output"]["activation"] == "linear" and card["int8_io"] == "uint8"
    probs = load_predictor(report["tflite-int8"].path).predict(x_val[:4])  # pixels
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)  # softmax applied to logits
    # no real images: parity is measured on random inputs, agreement bounds not enforced
    for fmt in ("tflite-int8", "tflite-dynamic"):
        v = report[fmt].verification
        assert v["data"] == "random" and v["passed"]
        assert [(c["metric"], c["enforced"]) for c in v["checks"]] == [
            ("top1_agreement", False), ("accuracy_drop", False)]


@pytest.mark.slow
def test_a_model_for_any_input_size_is_fixed_by_input_size():
    model = GoogLeNet(variant="v1_bn", input_shape=(None, None, 3), classes=5,
                      width_multiplier=0.25)
    with pytest.raises(ValueError, match="pass `input_size`"):
        load_source(model)
    for bad in (0, (40,), "40", (40, True)):
        with pytest.raises(ValueError, match=r"^`input_size` must be \(height, width\) of ints "
                           r">= 1, one such int or None; received input_size="
                           + re.escape(f"{bad!r}.") + "$"):
            load_source(model, input_size=bad)
    fixed, card = load_source(model, input_size=40)
    assert fixed.input_shape == (None, 40, 40, 3) and card["model"]["input_size"] == [40, 40]
    assert card["model"]["variant"] == "v1_bn"  # a flat copy: the layers are still readable
    x = np.random.default_rng(0).uniform(-1, 1, (2, 40, 40, 3)).astype("float32")
    np.testing.assert_allclose(fixed(x), model(x), atol=1e-6)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("kwargs,match", [
    ({"formats": ["tflite-int8"]}, "needs `calibration_data`"),
    ({"formats": ["tflite-int9"]}, r"unknown format.*tflite-int9.*savedmodel"),
    ({"formats": "savedmodel,pytorch"}, "unknown format"),
    ({"formats": ["onnx"], "opset": 13}, "`opset` must be an int >= 17"),
    ({"formats": ["tflite-int8"], "calibration_data": np.zeros((1, 32, 32, 3)),
      "int8_io": "int4"}, "`int8_io` must be one of"),
    ({"formats": ["tflite-int8"], "calibration_data": np.zeros((1, 32, 32, 3)),
      "calibration_steps": 0}, "`calibration_steps` must be a positive int"),
])
def test_bad_arguments_raise_before_any_work(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        export_model(tmp_path / "missing.keras", tmp_path / "out", **kwargs)
    assert not os.path.exists(tmp_path / "out")


def test_missing_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="source not found"):
        export_model(tmp_path / "nope.keras", tmp_path / "out", ["onnx"], verbose=False)
    os.makedirs(tmp_path / "empty_run")
    with pytest.raises(FileNotFoundError, match="neither inference.keras nor model.keras"):
        export_model(tmp_path / "empty_run", tmp_path / "out", ["onnx"], verbose=False)


# ----------------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_cli_exports_a_keras_file(tmp_path, capsys):
    from keras_googlenet_training.cli.export import main

    model = GoogLeNet(variant="v1", input_shape=(SIZE, SIZE, 3), classes=3, width_multiplier=0.25)
    model.save(tmp_path / "m.keras")
    code = main([str(tmp_path / "m.keras"), "--formats", "onnx,tflite-fp32",
                 "--out", str(tmp_path / "out"), "--no-verify", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert report["ok"] and [a["format"] for a in report["artifacts"]] == ["tflite-fp32", "onnx"]
    assert all(a["verification"] is None for a in report["artifacts"])
    assert "tflite-fp32: converting" in captured.err and "verifying" not in captured.err
    card = json.load(open(tmp_path / "out" / "googlenet.onnx.json"))
    assert card["verification"] is None and card["model"]["variant"] == "v1"
    x = np.random.default_rng(0).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype("float32")
    for name in ("googlenet.onnx", "googlenet_fp32.tflite"):
        np.testing.assert_allclose(load_predictor(tmp_path / "out" / name).predict(x),
                                   model(x), atol=1e-4)


@pytest.mark.parametrize("args,match", [
    (["--formats", "tflite-int8"], "needs `calibration_data`"),
    (["--formats", "savedmodel,tensorrt"], "unknown format"),
])
def test_cli_usage_errors_exit_2(tmp_path, capsys, args, match):
    from keras_googlenet_training.cli.export import main

    model = GoogLeNet(variant="v1_bn", input_shape=(SIZE, SIZE, 3), classes=2,
                      width_multiplier=0.25)
    model.save(tmp_path / "m.keras")
    assert main([str(tmp_path / "m.keras"), "--out", str(tmp_path / "out"), *args]) == 2
    assert match in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "out")


def test_dataset_images_are_prepared_as_the_training_pipeline_evaluates_them():
    # googlenet-export hands the raw (uint8 image, label) splits to export_model.
    from keras_googlenet_training.data import load_dataset
    from keras_googlenet_training.pipeline import make_pipeline

    val = load_dataset("digits").val
    x, y = take_images(val, 16, (SIZE, SIZE), "verification_data")
    images, labels = next(iter(make_pipeline(val, input_size=SIZE, batch_size=16,
                                             training=False)))
    np.testing.assert_allclose(x, images.numpy(), atol=1e-5)
    np.testing.assert_array_equal(y, labels.numpy())


@pytest.mark.slow
def test_cli_loads_the_keras_file_once(tmp_path, monkeypatch, capsys):
    from keras_googlenet_training.cli.export import main

    GoogLeNet(variant="v1_bn", input_shape=(SIZE, SIZE, 3), classes=2,
              width_multiplier=0.25).save(tmp_path / "m.keras")
    loaded, load_model = [], keras.saving.load_model

    def counted_load_model(path, *args, **kwargs):  # Keras' own loader, counted
        loaded.append(os.path.basename(path))
        return load_model(path, *args, **kwargs)

    monkeypatch.setattr(keras.saving, "load_model", counted_load_model)
    code = main([str(tmp_path / "m.keras"), "--out", str(tmp_path / "out"), "--formats",
                 "savedmodel", "--no-verify", "--no-uint8-signature"])
    assert code == 0, capsys.readouterr().err
    assert loaded == ["m.keras"]
    assert os.path.isdir(tmp_path / "out" / "googlenet_savedmodel")


@pytest.mark.slow
def test_cli_keras_hub_preset_takes_labels_and_name(tmp_path, capsys):
    pytest.importorskip("keras_hub")
    from keras_googlenet_training.cli.export import main

    GoogLeNet(variant="v1_bn", input_shape=(SIZE, SIZE, 3), classes=3,
              width_multiplier=0.25).save(tmp_path / "m.keras")
    (tmp_path / "labels.txt").write_text("cat\ndog\nbird\n")
    args = [str(tmp_path / "m.keras"), "--formats", "keras-hub", "--no-verify",
            "--out", str(tmp_path / "presets")]
    assert main([*args, "--name", "animals", "--labels", str(tmp_path / "labels.txt")]) == 0
    assert os.listdir(tmp_path / "presets") == ["animals"]
    metadata = json.load(open(tmp_path / "presets" / "animals" / "metadata.json"))
    assert metadata["labels"] == ["cat", "dog", "bird"]
    capsys.readouterr()
    assert main([*args, "--name", "../x"]) == 2  # a name is one plain file name
    assert "`name` must be a file name" in capsys.readouterr().err
    (tmp_path / "two.txt").write_text("cat\ndog\n")
    assert main([*args, "--name", "other", "--labels", str(tmp_path / "two.txt")]) == 2
    assert "`labels` has 2 names for 3 classes" in capsys.readouterr().err
    assert os.listdir(tmp_path / "presets") == ["animals"]


def test_cli_missing_source_exits_2(tmp_path, capsys):
    from keras_googlenet_training.cli.export import main

    assert main([str(tmp_path / "nope.keras"), "--out", str(tmp_path / "out")]) == 2
    assert "not found" in capsys.readouterr().err


def test_bounds_cover_every_format():
    assert set(DEFAULT_BOUNDS) == set(FORMATS)
    assert DEFAULT_BOUNDS["tflite-fp16"]["top1_agreement"] == 0.995
    assert DEFAULT_BOUNDS["tflite-int8"]["top1_agreement"] == 0.99


def test_the_savedmodel_card_says_what_serving_default_takes():
    from keras_googlenet.export.cards import format_card
    from keras_googlenet.model_card import INPUT_NAME

    options = {"uint8_signature": False, "opset": 17, "int8_io": "uint8"}
    for in_model, expected in ((False, "in [-1, 1]"), (True, "RGB pixels in [0, 255]")):
        card = format_card({"preprocessing": {"mode": "tf"}}, "savedmodel", "/out/m", options,
                           in_model)
        assert card["signatures"]["serving_default"]["inputs"][INPUT_NAME].endswith(expected)
        assert card["preprocessing"]["in_model"] is in_model
