"""`googlenet-evaluate` and `keras_googlenet.evaluate`: every figure equals the one computed
by hand from the predictors' own outputs on the same images."""

import csv
import json
import os

import keras
import numpy as np
import pytest
from PIL import Image

from keras_googlenet.evaluate import (
    FORMAT_KERAS_HUB,
    confusion_matrix,
    evaluate_models,
    load_model,
    per_class_recall,
)
from keras_googlenet.runtime import load_predictor
from keras_googlenet.scores import top_indices
from keras_googlenet_training.cli.evaluate import main
from keras_googlenet_training.data import load_dataset

SIDE = 32


def _dense(directory, seed, classes=10):
    """A tiny classifier (flatten, dense) saved as `.keras`: loads in milliseconds."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIDE, SIDE, 3))
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(
        keras.layers.Flatten()(inputs))
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"dense{seed}-{classes}.keras")
    keras.Model(inputs, outputs).save(path)
    return path


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    root = tmp_path_factory.mktemp("dense")
    return [_dense(root, 0), _dense(root, 1), _dense(root, 2, classes=3)]


def _by_hand(paths, images, labels):
    """Per model: top-1 / top-5 accuracy (%) and top-1 classes, from its own `predict`."""
    figures = []
    for path in paths:
        predictor = load_predictor(path)
        probs = predictor.predict(predictor.preprocess_images(images))
        top = top_indices(probs, 5)
        figures.append((100.0 * np.mean(top[:, 0] == labels),
                        100.0 * np.mean(np.any(top == labels[:, None], axis=1)), top[:, 0]))
    return figures


def _digits_validation(limit=None):
    """The images and labels `googlenet-evaluate --dataset digits` scores, in its order."""
    pairs = list(load_dataset("digits").val.as_numpy_iterator())[:limit]
    return np.stack([image for image, _ in pairs]), np.array([label for _, label in pairs])


def test_figures_equal_a_hand_computation(dense):
    images, labels = _digits_validation(limit=40)
    evaluation = evaluate_models(dense[:2], images, labels, num_classes=10, batch_size=16,
                                 latency_runs=3)
    hand = _by_hand(dense[:2], images, labels)
    first, second = evaluation.models
    for score, (top1, top5, predicted) in zip(evaluation.models, hand, strict=True):
        assert score.top1_pct == pytest.approx(top1) and score.top5_pct == pytest.approx(top5)
        np.testing.assert_array_equal(score.predictions, predicted)
        assert score.format == "keras" and score.size_bytes == os.path.getsize(score.path)
        assert score.latency_ms > 0
    assert first.top1_diff_pts == 0.0
    assert second.top1_diff_pts == pytest.approx(hand[1][0] - hand[0][0])
    differ = np.flatnonzero(hand[0][2] != hand[1][2])
    assert len(differ) > 0
    np.testing.assert_array_equal(evaluation.disagreements(), differ)
    assert sorted(evaluation.kept_images) == list(differ)
    np.testing.assert_array_equal(evaluation.kept_images[int(differ[0])], images[differ[0]])

    matrix = confusion_matrix(labels, first.predictions, 10)
    assert matrix.sum() == len(labels) and np.trace(matrix) == np.sum(hand[0][2] == labels)
    recall = per_class_recall(labels, first.predictions, 10)
    for c in range(10):
        assert recall[c] == pytest.approx(np.mean(hand[0][2][labels == c] == c))

    # The same images as batches of (images, labels), of another size than batch_size.
    batches = [(list(images[i:i + 7]), labels[i:i + 7]) for i in range(0, len(images), 7)]
    again = evaluate_models(dense[:2], batches, latency_runs=0)
    np.testing.assert_array_equal(again.models[1].predictions, second.predictions)
    assert again.models[0].latency_ms is None and again.num_classes == 10


@pytest.mark.parametrize("call, words", [
    (lambda d, x, y: evaluate_models([], x, y), ["`models`"]),
    (lambda d, x, y: evaluate_models(d[0], x, y), ["`models`"]),
    (lambda d, x, y: evaluate_models(d[:1], x, y[:-1]), ["`labels`", "for 20 images"]),
    (lambda d, x, y: evaluate_models(d[:1], x, y + 10, num_classes=10), ["`labels`", "[0, 10)"]),
    (lambda d, x, y: evaluate_models(d[:1], x[:0], y[:0]), ["empty"]),
    (lambda d, x, y: evaluate_models(d[2:], x, y, num_classes=10),
     ["scores 3 classes", "has 10"]),
], ids=["no-models", "one-path-not-a-list", "labels-short", "labels-out-of-range",
        "no-images", "class-count"])
def test_bad_arguments_are_refused(dense, call, words):
    images, labels = _digits_validation(limit=20)
    with pytest.raises(ValueError) as caught:
        call(dense, images, labels)
    for word in words:
        assert word in str(caught.value)


def _tree(root):
    return {os.path.relpath(os.path.join(d, n), root): os.lstat(os.path.join(d, n)).st_mtime_ns
            for d, dirs, files in os.walk(root) for n in dirs + files}


def test_cli_prints_the_table_and_writes_json_and_report(dense, tmp_path, capsys):
    report, out = tmp_path / "report", tmp_path / "figures.json"
    argv = ["--model", dense[0], "--model", dense[1], "--max-images", "60", "--batch-size",
            "16", "--latency-runs", "2", "--json", str(out), "--report", str(report)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "[evaluate] 60/60 images" in captured.err
    table = captured.out.splitlines()
    assert table[0].startswith("digits validation: 60 images, 10 classes")
    assert [line.split()[0] for line in table[2:4]] == dense[:2]
    assert "(reference)" in table[2] and "pts" in table[3] and "median of 2 runs" in table[-1]

    images, labels = _digits_validation(limit=60)
    hand = _by_hand(dense[:2], images, labels)
    figures = json.loads(out.read_text())
    assert [m["path"] for m in figures["models"]] == dense[:2]
    assert [m["top1_pct"] for m in figures["models"]] == pytest.approx([h[0] for h in hand])
    assert figures["images"] == 60 and figures["classes"] == [str(c) for c in range(10)]
    assert f"{figures['models'][0]['top1_pct']:.2f} %" in table[2]

    png = Image.open(report / "confusion_matrix.png")
    assert png.format == "PNG" and png.size[0] >= 400 and png.size[1] >= 400
    with open(report / "per_class_recall.csv", encoding="utf-8") as f:
        recall = list(csv.reader(f))
    assert recall[0] == ["class", "images", *dense[:2]] and len(recall) == 11
    assert float(recall[4][2]) == pytest.approx(np.mean(hand[0][2][labels == 3] == 3))
    with open(report / "disagreements.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    differ = np.flatnonzero(hand[0][2] != hand[1][2])
    assert [int(r["index"]) for r in rows] == list(differ)
    assert [r[dense[1]] for r in rows] == [str(hand[1][2][i]) for i in differ]
    first = np.asarray(Image.open(report / rows[0]["image"]))
    np.testing.assert_array_equal(first, images[differ[0]])

    # A report directory is never replaced without --overwrite; with it, the user's files stay.
    (report / "notes.txt").write_text("mine")
    before = _tree(tmp_path)
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err and _tree(tmp_path) == before
    assert main([*argv, "--overwrite", "--quiet", "--max-images", "30"]) == 0
    assert capsys.readouterr().err == ""
    assert (report / "notes.txt").read_text() == "mine"
    with open(report / "disagreements.csv", encoding="utf-8") as f:
        assert all(int(r["index"]) < 30 for r in csv.DictReader(f))
    assert sorted(os.listdir(tmp_path)) == ["figures.json", "report"]  # no staging left


def test_cli_reads_a_tfds_dataset_and_its_test_split(dense, tmp_path, capsys):
    tfds = pytest.importorskip("tensorflow_datasets")
    from test_data import _write_tfds_metadata

    _write_tfds_metadata(tfds, "mnist", tmp_path, {"train": 20, "test": 8})
    with tfds.testing.mock_data(num_examples=8, data_dir=str(tmp_path)):
        assert main(["--model", dense[0], "--dataset", "tfds:mnist", "--data-dir",
                     str(tmp_path), "--split", "test", "--latency-runs", "0", "--quiet"]) == 0
        splits = load_dataset("tfds:mnist", data_dir=str(tmp_path))
        pairs = list(splits.test.as_numpy_iterator())
    table = capsys.readouterr().out
    assert table.startswith("tfds:mnist test: 8 images, 10 classes")
    (top1, _, _), = _by_hand(dense[:1], [x for x, _ in pairs], np.array([y for _, y in pairs]))
    assert f"{top1:.2f} %" in table.splitlines()[2]


# (id, argv, setup, words the one error line must contain); argv placeholders: {tmp} the
# test's directory, {m} a 10-class model, {m3} a 3-class one.
BAD_ROWS = [
    ("missing-model", "--model {tmp}/nope.keras", None, ["--model", "not found"]),
    ("unknown-format", "--model {tmp}/a_file", "file", ["cannot tell the format"]),
    ("unknown-dataset", "--model {m} --dataset csv:x.csv", None, ["dataset", "csv:x.csv"]),
    ("missing-folder", "--model {m} --dataset folder:{tmp}/nowhere", None, ["does not exist"]),
    ("empty-folder", "--model {m} --dataset folder:{tmp}/empty", "empty", ["at least two"]),
    ("split-absent", "--model {m} --split test", None, ["--split", "no labelled test"]),
    ("split-unknown", "--model {m} --split dev", None, ["--split", "invalid choice"]),
    ("class-count", "--model {m3}", None, ["scores 3 classes", "has 10"]),
    ("report-is-a-file", "--model {m} --report {tmp}/a_file", "file", ["report", "is a file"]),
    ("report-not-empty", "--model {m} --report {tmp}/full", "full", ["--overwrite"]),
    ("json-missing-dir", "--model {m} --json {tmp}/no/x.json", None, ["--json", "not exist"]),
    ("json-is-a-dir", "--model {m} --json {tmp}", None, ["--json", "is a directory"]),
    ("batch-size-0", "--model {m} --batch-size 0", None, ["--batch-size", ">= 1"]),
    ("latency-runs-negative", "--model {m} --latency-runs -1", None, ["--latency-runs"]),
]


@pytest.mark.parametrize("argv, setup, words", [row[1:] for row in BAD_ROWS],
                         ids=[row[0] for row in BAD_ROWS])
def test_bad_invocations_exit_2_with_one_line(dense, tmp_path, capsys, argv, setup, words):
    if setup == "file":
        (tmp_path / "a_file").write_text("not a model or a directory")
    elif setup == "empty":
        (tmp_path / "empty").mkdir()
    elif setup == "full":
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "notes.txt").write_text("mine")
    args = [a.format(tmp=tmp_path, m=dense[0], m3=dense[2]) for a in argv.split()]
    before = _tree(tmp_path)
    try:
        code = main([*args, "--quiet", "--latency-runs", "0"] if "--latency-runs" not in args
                    else [*args, "--quiet"])
    except SystemExit as exit_:  # argparse's own usage errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and all(word in err for word in words), err
    assert len([line for line in err.splitlines() if "error" in line]) == 1, err
    assert _tree(tmp_path) == before  # nothing written, nothing removed


# -- the real artefacts: every exported format and a KerasHub preset (slow: trained fixtures)


def _verification_images(x_val, size):
    """`x_val` padded so that the evaluation's central crop (87.5 %) cuts out exactly the
    original pixels: the predictor then scores the images the export verified."""
    padded = round(size / 0.875)
    top = (padded - size) // 2
    canvas = np.zeros((len(x_val), padded, padded, 3), np.uint8)
    canvas[:, top:top + size, top:top + size] = x_val
    return canvas


@pytest.mark.slow
def test_every_format_scores_what_its_export_verification_measured(trained_run, exported,
                                                                  digits):
    run_dir, _, _ = trained_run
    out, report = exported
    (_, _), (x_val, y_val) = digits
    results = [r for r in report.results if r.ok]
    models = [os.path.join(run_dir, "model.keras"), *(r.path for r in results)]
    evaluation = evaluate_models(models, _verification_images(x_val, x_val.shape[1]), y_val,
                                 num_classes=10, latency_runs=2)
    keras_score, *scores = evaluation.models
    assert {s.format for s in scores} >= {"savedmodel", "tflite-fp32", "tflite-int8", "onnx"}
    one_image = 100.0 / len(y_val)  # Keras in the export ran through model.predict
    assert abs(keras_score.top1_pct - 100 * results[0].verification["keras_accuracy"]) \
        <= one_image + 1e-9
    for score, result in zip(scores, results, strict=True):
        assert score.format == result.format and score.latency_ms > 0
        assert score.top1_pct == pytest.approx(100 * result.verification["accuracy"]), \
            result.format
        assert score.top1_diff_pts == pytest.approx(score.top1_pct - keras_score.top1_pct)
    sizes = {s.format: s.size_bytes for s in scores}
    assert sizes["tflite-int8"] < sizes["tflite-fp32"] / 3  # the figure is the file's


@pytest.mark.slow
def test_a_keras_hub_preset_scores_as_its_keras_model(trained_run, digits, tmp_path, capsys):
    pytest.importorskip("keras_hub")
    from keras_googlenet.hub import write_preset

    run_dir, _, _ = trained_run
    (_, _), (x_val, y_val) = digits
    preset = write_preset(run_dir, tmp_path / "preset")
    assert load_model(preset).card["format"] == FORMAT_KERAS_HUB
    source = os.path.join(run_dir, "model.keras")
    evaluation = evaluate_models([source, preset], x_val, y_val, num_classes=10,
                                 latency_runs=1)
    assert evaluation.models[1].format == FORMAT_KERAS_HUB
    # The preset matches its source within 1e-4 (hub.write_preset's bound): same classes.
    assert len(evaluation.disagreements()) <= 1
    assert evaluation.models[1].size_bytes > 0
    assert main(["--model", source, "--model", preset, "--max-images", "40", "--quiet",
                 "--latency-runs", "0"]) == 0
    assert f" {FORMAT_KERAS_HUB} " in capsys.readouterr().out
