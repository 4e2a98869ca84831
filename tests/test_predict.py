"""`googlenet-predict` and `keras_googlenet.runtime` on every artefact format."""

import json
import os

import keras
import numpy as np
import pytest
from PIL import Image

from keras_googlenet import GoogLeNet
from keras_googlenet.export import export_model
from keras_googlenet.preprocessing import decode_predictions, imagenet_class_index
from keras_googlenet.runtime import detect_format, load_image, load_predictor
from keras_googlenet.scores import as_probabilities, looks_like_probabilities, softmax, top_indices
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
    return probs, [list(top_indices(row, top_k)) for row in probs]


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
def test_cardless_int8_probabilities_are_recognised_despite_rounding(run, tmp_path):
    _, paths, files, _ = run
    cardless = tmp_path / "int8.tflite"  # the artefact alone, its card left behind
    cardless.write_bytes(open(paths["tflite-int8"], "rb").read())
    with_card, without = load_predictor(paths["tflite-int8"]), load_predictor(cardless)
    assert with_card.output_is_probability is True and without.output_is_probability is None
    x = with_card.preprocess_images(files)
    np.testing.assert_array_equal(without.predict(x), with_card.predict(x))


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


@pytest.mark.slow
def test_keras_training_model_with_aux_heads_predicts_its_main_head(tmp_path):
    model = GoogLeNet(variant="torchvision", include_aux=True, input_shape=(49, 49, 3),
                      classes=3, width_multiplier=0.25)
    model.save(tmp_path / "train.keras")
    predictor = load_predictor(tmp_path / "train.keras")
    assert predictor.card["model"]["variant"] == "torchvision"
    assert predictor.labels is None and predictor.label(2) == "2"
    x = np.random.default_rng(0).uniform(-1, 1, (2, 49, 49, 3)).astype("float32")
    np.testing.assert_allclose(predictor.predict(x), model(x)["main"], atol=1e-6)


# -- one ranking, logits detected, names kept (#18): small card-less artefacts, no export

def _dense_model(classes, activation, name="predictions", side=4, flatten=True):
    """A tiny classifier (flatten, dense) standing in for any card-less artefact."""
    inputs = keras.Input((side, side, 3))
    x = keras.layers.Flatten()(inputs) if flatten else inputs
    return keras.Model(inputs, keras.layers.Dense(classes, activation=activation, name=name)(x))


def _save(model, directory, filename="model.keras"):
    """`model` alone in `directory`: no card, labels.txt or config.json beside it."""
    os.makedirs(directory)
    model.save(directory / filename)
    return str(directory / filename)


def _tflite(model, directory):
    import tensorflow as tf

    os.makedirs(directory)
    (directory / "model.tflite").write_bytes(
        tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return str(directory / "model.tflite")


@pytest.fixture(scope="module")
def cardless(tmp_path_factory):
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(3)
    root = tmp_path_factory.mktemp("cardless")
    models = {}
    # Outputs exactly the softmax of the bias for every image: ties at 3, 7, 500 and 1, 999.
    ties = _dense_model(1000, "softmax")
    bias = np.zeros(1000, "float32")
    bias[[3, 7, 500]], bias[[1, 999]] = 2.0, 1.0
    ties.get_layer("predictions").set_weights([np.zeros((48, 1000), "float32"), bias])
    models["ties"] = (ties, _save(ties, root / "ties"))
    spread = _dense_model(1000, "softmax")
    kernel = spread.get_layer("predictions").kernel
    kernel.assign(kernel.numpy() * 20.0)
    models["random"] = (spread, _save(spread, root / "random"))
    # No layer named "predictions": the card cannot say what the outputs are.
    unknown = _dense_model(5, "softmax", name="head")
    models["unknown_probs"] = (unknown, _save(unknown, root / "unknown_probs"))
    logits = _dense_model(6, None)
    logits.get_layer("predictions").kernel.assign(
        logits.get_layer("predictions").kernel.numpy() * 10.0)  # far from a distribution
    models["keras_logits"] = (logits, _save(logits, root / "keras_logits"))
    models["tflite_logits"] = (logits, _tflite(logits, root / "tflite_logits"))
    tflite_probs = _dense_model(6, "softmax")
    models["tflite_probs"] = (tflite_probs, _tflite(tflite_probs, root / "tflite_probs"))
    named = _dense_model(3, "softmax")
    path = _save(named, root / "named")
    (root / "named" / "labels.txt").write_text("café\n日本の猫\nnaïve ñandú\n", encoding="utf-8")
    models["named"] = (named, path)

    rng = np.random.default_rng(0)
    files = []
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / f"{i}.png")
        files.append(str(root / f"{i}.png"))
    return models, files


def _inputs(predictor, files):
    return predictor.preprocess_images(files)


def test_ties_rank_to_the_lower_index_in_every_entry_point(cardless, capsys):
    models, files = cardless
    _, path = models["ties"]
    expected = [3, 7, 500, 1, 999]
    code, out, err = run_json(capsys, [files[0], "--model", path, "--top-k", "5", "--json"])
    assert code == 0, err
    assert [p["index"] for p in out["results"][0]["predictions"]] == expected
    predictor = load_predictor(path)
    row = predictor.predict(_inputs(predictor, files[:1]))[0]
    assert row[3] == row[7] == row[500] and row[1] == row[999]  # exact ties
    best = predictor.top_k(row, 5)
    assert [p["index"] for p in best] == expected and [p["label"] for p in best] == \
        [str(i) for i in expected]
    index = imagenet_class_index()
    assert [d[0] for d in decode_predictions(row[None], top=5)[0]] == \
        [index[i][0] for i in expected]


def test_the_three_rankings_agree_on_random_rows(cardless, capsys):
    models, files = cardless
    _, path = models["random"]
    code, out, err = run_json(capsys, [*files, "--model", path, "--top-k", "7", "--json"])
    assert code == 0, err
    predictor = load_predictor(path)
    rows = predictor.predict(_inputs(predictor, files))
    index = imagenet_class_index()
    decoded = decode_predictions(rows, top=7)
    for result, row, decoded_row in zip(out["results"], rows, decoded, strict=True):
        cli = [p["index"] for p in result["predictions"]]
        best = predictor.top_k(row, 7)
        assert [(p["index"], p["label"]) for p in best] == [(i, str(i)) for i in cli]
        np.testing.assert_allclose([p["probability"] for p in best],
                                   [p["probability"] for p in result["predictions"]], rtol=1e-6)
        assert [d[0] for d in decoded_row] == [index[i][0] for i in cli]
        assert cli == list(np.argsort(-row)[:7])  # best first
    # Rows full of ties (quantized scores), through the library's two entry points.
    quantized = np.random.default_rng(1).integers(0, 4, (20, 1000)).astype("uint8")
    for row, decoded_row in zip(quantized, decode_predictions(quantized, top=10), strict=True):
        lower_first = sorted(range(1000), key=lambda i: (-int(row[i]), i))[:10]
        assert [p["index"] for p in predictor.top_k(row, 10)] == lower_first
        assert [d[0] for d in decoded_row] == [index[i][0] for i in lower_first]


def _googlenet_logits(directory):
    model = GoogLeNet(variant="v1_bn", input_shape=(SIZE, SIZE, 3), classes=10,
                      width_multiplier=0.25, classifier_activation=None)
    dense = model.get_layer("predictions")
    dense.kernel.assign(dense.kernel.numpy() * 30.0)  # logits far from a distribution
    return model, _save(model, directory / "googlenet_logits")


@pytest.mark.parametrize("name", [
    "keras_logits", "tflite_logits",
    pytest.param("googlenet_logits", marks=pytest.mark.slow)])
def test_cardless_logits_are_softmaxed(cardless, capsys, tmp_path, name):
    models, files = cardless
    model, path = _googlenet_logits(tmp_path) if name == "googlenet_logits" else models[name]
    classes = int(model.output_shape[-1])
    code, out, err = run_json(capsys, [*files, "--model", path, "--top-k", str(classes),
                                       "--json"])
    assert code == 0, err
    side = model.input_shape[1]
    raw = np.asarray(model(np.stack([load_image(f, (side, side)) for f in files]),
                           training=False))
    assert not np.allclose(raw.sum(-1), 1.0, atol=0.1)  # the model really outputs logits
    for result, logits in zip(out["results"], raw, strict=True):
        scores = np.zeros(classes)
        for p in result["predictions"]:
            scores[p["index"]] = p["probability"]
        assert scores.min() >= 0 and scores.max() <= 1
        assert scores.sum() == pytest.approx(1.0, abs=1e-4)
        np.testing.assert_allclose(scores, softmax(logits), atol=1e-4)


@pytest.mark.parametrize("name", ["unknown_probs", "tflite_probs"])
def test_cardless_probabilities_are_left_as_they_are(cardless, name):
    models, files = cardless
    model, path = models[name]
    predictor = load_predictor(path)
    x = _inputs(predictor, files)
    assert predictor.output_is_probability is None
    np.testing.assert_allclose(predictor.predict(x), model(x, training=False), atol=1e-5)


def test_label_names_are_printed_exactly(cardless, capsys):
    models, files = cardless
    _, path = models["named"]
    names = {"café", "日本の猫", "naïve ñandú"}
    assert main([files[0], "--model", path, "--top-k", "3", "--json"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in names)  # not \\u escapes
    assert {p["label"] for p in json.loads(text)["results"][0]["predictions"]} == names
    assert main([files[0], "--model", path, "--top-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert {line.split(maxsplit=1)[1].rsplit(maxsplit=1)[0] for line in lines} == names


def test_scores_helpers():
    assert looks_like_probabilities([[0.2, 0.8], [1.0, 0.0]])
    assert not looks_like_probabilities([[0.2, 0.7]])  # sums to 0.9
    assert not looks_like_probabilities([[-0.5, 1.5]])  # sums to 1, yet logits
    np.testing.assert_allclose(as_probabilities([[0.2, 0.8]], None), [[0.2, 0.8]])
    np.testing.assert_allclose(as_probabilities([[0.2, 0.8]], "linear"),
                               softmax([[0.2, 0.8]]))
    np.testing.assert_allclose(softmax([[1000.0, 1000.0]]), [[0.5, 0.5]])  # no overflow
    assert list(top_indices(np.array([1, 3, 3, 0], "uint8"), 3)) == [1, 2, 0]
    assert list(top_indices([np.nan, 0.5, 0.5], 3)) == [1, 2, 0]  # NaN last


def test_unexpected_errors_are_reported_not_disguised(cardless, capsys, monkeypatch, tmp_path):
    import keras_googlenet.runtime as runtime

    models, files = cardless
    _, path = models["ties"]

    def broken(*args, **kwargs):  # a ValueError from outside the project is a bug
        raise ValueError("deep inside a library")

    monkeypatch.setattr(runtime, "load_predictor", broken)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    assert main([files[0], "--model", path]) == 1
    err = capsys.readouterr().err
    assert "internal error: ValueError: deep inside a library" in err
    assert "Traceback" not in err and "googlenet-predict: error:" not in err
    logs = list(tmp_path.glob("googlenet-predict-error-*.log"))
    assert len(logs) == 1 and "Traceback" in logs[0].read_text()
    assert main([files[0], "--model", path, "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_a_model_without_class_scores_is_refused(tmp_path, capsys):
    path = _save(_dense_model(5, None, flatten=False), tmp_path / "features")  # (4, 4, 5)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")
    assert main([str(tmp_path / "x.png"), "--model", path]) == 2
    err = capsys.readouterr().err
    assert "is not a classifier" in err and "(4, 4, 5)" in err and "Traceback" not in err


def test_a_sequential_keras_model_predicts(tmp_path):
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax")])
    predictor = load_predictor(_save(model, tmp_path / "sequential"))
    x = np.random.default_rng(0).uniform(-1, 1, (2, 4, 4, 3)).astype("float32")
    np.testing.assert_allclose(predictor.predict(x), model(x), atol=1e-6)
