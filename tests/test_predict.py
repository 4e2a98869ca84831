"""`googlenet-predict` and `keras_googlenet.runtime` on every artefact format."""

import json
import os

import keras
import numpy as np
import pytest
from PIL import Image

from keras_googlenet import GoogLeNet
from keras_googlenet.export import export_model
from keras_googlenet.runtime import detect_format, load_image, load_predictor
from keras_googlenet_training.cli.predict import main

SIZE = 32
LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A random v1_bn made decisive (scaled classifier), saved as a run dir, exported."""
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(1)
    model = GoogLeNet(variant="v1_bn", input_shape=(SIZE, SIZE, 3), classes=10,
                      width_multiplier=0.25)
    dense = model.get_layer("predictions")
    dense.kernel.assign(dense.kernel.numpy() * 30.0)
    root = tmp_path_factory.mktemp("predict")
    run_dir = root / "run"
    os.makedirs(run_dir)
    model.save(run_dir / "model.keras")
    (run_dir / "labels.txt").write_text("\n".join(LABELS) + "\n")
    (run_dir / "config.json").write_text(json.dumps(
        {"model": {"variant": "v1_bn", "input_size": SIZE, "classes": 10},
         "dataset": "digits"}))
    rng = np.random.default_rng(0)
    calibration = rng.uniform(-1, 1, (16, SIZE, SIZE, 3)).astype("float32")
    report = export_model(str(run_dir), root / "out",
                          ["savedmodel", "tflite-fp32", "tflite-int8", "onnx"],
                          calibration_data=calibration, calibration_steps=16, verify=False,
                          verbose=False)
    paths = {r.format: r.path for r in report.results}
    paths["keras"] = str(run_dir / "model.keras")

    images = root / "images"
    os.makedirs(images)
    files = []
    for i in range(3):  # RGB PNGs of another size: the runtime resizes
        pixels = rng.integers(0, 256, (40 + 8 * i, 36, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"img{i}.png")
        files.append(str(images / f"img{i}.png"))
    Image.fromarray(rng.integers(0, 256, (20, 30), dtype=np.uint8)).save(images / "gray.jpg")
    files.append(str(images / "gray.jpg"))
    (images / "broken.png").write_bytes(b"this is not a png")
    return model, paths, files, images


def reference(model, files, top_k):
    x = np.stack([load_image(f, (SIZE, SIZE)) for f in files])
    probs = model(x, training=False).numpy()
    return probs, [list(np.argsort(row)[::-1][:top_k]) for row in probs]


def run_json(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out.strip() else None, captured.err


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["keras", "savedmodel", "tflite-fp32", "onnx"])
def test_predict_each_float_format_matches_keras(run, capsys, fmt):
    model, paths, files, _ = run
    code, out, err = run_json(capsys, [*files, "--model", paths[fmt], "--top-k", "3", "--json"])
    assert code == 0, err
    probs, top = reference(model, files, 3)
    assert out["format"] == ("tflite" if fmt.startswith("tflite") else fmt)
    assert [r["image"] for r in out["results"]] == files
    for r, row, best in zip(out["results"], probs, top, strict=True):
        assert [p["index"] for p in r["predictions"]] == best
        assert [p["label"] for p in r["predictions"]] == [LABELS[i] for i in best]
        np.testing.assert_allclose([p["probability"] for p in r["predictions"]], row[best],
                                   atol=1e-4)


@pytest.mark.slow
def test_predict_int8(run, capsys):
    model, paths, files, _ = run
    code, out, err = run_json(capsys, [*files, "--model", paths["tflite-int8"], "--json",
                                       "--top-k", "10"])
    assert code == 0, err
    probs, _ = reference(model, files, 10)
    for r, row in zip(out["results"], probs, strict=True):
        got = [p["probability"] for p in r["predictions"]]
        assert got == sorted(got, reverse=True) and len(got) == 10
        assert abs(sum(got) - 1.0) < 0.05  # dequantized softmax, 1/256 steps
        assert {p["label"] for p in r["predictions"]} == set(LABELS)
        # quantized, yet close to the float model
        by_index = np.zeros(10)
        for p in r["predictions"]:
            by_index[p["index"]] = p["probability"]
        assert np.max(np.abs(by_index - row)) < 0.25


@pytest.mark.slow
def test_text_output(run, capsys):
    model, paths, files, _ = run
    assert main([files[0], "--model", paths["onnx"], "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    _, top = reference(model, files[:1], 2)
    assert lines[0] == files[0] and len(lines) == 3
    assert lines[1].split()[:2] == ["1.", LABELS[top[0][0]]]
    assert lines[2].split()[:2] == ["2.", LABELS[top[0][1]]]


@pytest.mark.slow
def test_unreadable_images_are_reported_and_the_rest_predicted(run, capsys):
    _, paths, files, images = run
    broken, missing = str(images / "broken.png"), str(images / "missing.png")
    code, out, err = run_json(capsys, [broken, files[0], missing, "--model",
                                       paths["tflite-fp32"], "--json"])
    assert code == 1
    results = {r["image"]: r for r in out["results"]}
    assert "cannot read image" in results[broken]["error"]
    assert "No such file" in results[missing]["error"]
    assert len(results[files[0]]["predictions"]) == 5
    assert broken in err and missing in err


@pytest.mark.slow
@pytest.mark.parametrize("make_model,match", [
    (lambda d: str(d / "nope.tflite"), "model not found"),
    (lambda d: str(d / "broken.png"), "cannot tell the format"),
    (lambda d: str(d), "without saved_model.pb"),
])
def test_bad_model_paths_exit_2(run, capsys, make_model, match):
    _, _, files, images = run
    assert main([files[0], "--model", make_model(images)]) == 2
    assert match in capsys.readouterr().err


@pytest.mark.slow
def test_bad_top_k_exits_2(run, capsys):
    _, paths, files, _ = run
    assert main([files[0], "--model", paths["onnx"], "--top-k", "0"]) == 2
    assert "--top-k" in capsys.readouterr().err


@pytest.mark.slow
def test_runtime_reads_cards_and_detects_formats(run):
    _, paths, _, _ = run
    assert detect_format(paths["savedmodel"]) == "savedmodel"
    for fmt in ("savedmodel", "tflite-int8", "onnx", "keras"):
        predictor = load_predictor(paths[fmt], num_threads=1)
        assert predictor.labels == LABELS
        assert predictor.input_size == (SIZE, SIZE)
    assert load_predictor(paths["tflite-int8"]).card["precision"].startswith("int8")
    with pytest.raises(ValueError, match="num_threads"):
        load_predictor(paths["onnx"], num_threads=0)
    with pytest.raises(ValueError, match="takes 32x32 images"):
        load_predictor(paths["onnx"]).predict(np.zeros((1, 40, 40, 3), "float32"))


def test_keras_training_model_with_aux_heads_predicts_its_main_head(tmp_path):
    model = GoogLeNet(variant="torchvision", include_aux=True, input_shape=(49, 49, 3),
                      classes=3, width_multiplier=0.25)
    model.save(tmp_path / "train.keras")
    predictor = load_predictor(tmp_path / "train.keras")
    assert predictor.card["model"]["variant"] == "torchvision"
    assert predictor.labels is None and predictor.label(2) == "2"
    x = np.random.default_rng(0).uniform(-1, 1, (2, 49, 49, 3)).astype("float32")
    np.testing.assert_allclose(predictor.predict(x), model(x)["main"], atol=1e-6)
