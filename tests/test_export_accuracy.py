"""The export bounds each format by its top-1 accuracy drop on labelled images (issue #19).

Agreement with Keras on near-tied outputs measures noise: a 1-epoch digits model scored the
same accuracy in Keras and as int8, but the int8 file agreed on under 99 % of the images and
was refused. With labels the bound is the accuracy drop; without, agreement counts only the
images where Keras' top-1 leads (`CONFIDENT_MARGIN`).
"""

import json
import os

import keras
import numpy as np
import pytest
from _digits import SIZE, digits_arrays, scale, write_run_dir

from keras_googlenet import GoogLeNet
from keras_googlenet.export import ExportError, export_model
from keras_googlenet.export.formats import DEFAULT_BOUNDS, FORMATS
from keras_googlenet.export.report import format_verification, missed_bounds
from keras_googlenet.export.verify import (
    CONFIDENT_MARGIN,
    check_max_accuracy_drop,
    keras_reference,
    verify_artifact,
)
from keras_googlenet.runtime import load_predictor
from keras_googlenet.scores import top_indices

LOGIT_SCALE = 1000.0  # a random GoogLeNet's logits spread by ~1e-3: this makes some confident
SAMPLES = 160  # of the 397 held-out digits: enough near ties and confident images, quickly


def _near_tied_model(seed=0, bias_noise=0.0, roll=0):
    """A random GoogLeNet whose probabilities are near-tied on some digits and confident on
    others; `bias_noise` (logits) flips only the near ties, `roll` shifts every class."""
    keras.utils.set_random_seed(seed)
    model = GoogLeNet(variant="v1_bn", input_shape=(SIZE, SIZE, 3), classes=10,
                      width_multiplier=0.25)
    dense = model.get_layer("predictions")
    kernel, bias = dense.get_weights()
    noise = np.random.default_rng(1).normal(0.0, bias_noise, bias.shape)
    dense.set_weights([np.roll(kernel * LOGIT_SCALE, roll, axis=-1), bias + noise])
    return model


@pytest.fixture(scope="module")
def near_tie():
    """(the model, validation images, labels): as for a barely trained model, the labels
    of its near-tied images are neither of its near-tied classes, so flipping those
    changes agreement and not accuracy."""
    model = _near_tied_model()
    _, (pixels, _) = digits_arrays()
    images = scale(pixels[:SAMPLES])
    probs = np.asarray(model(images, training=False))
    ranked = top_indices(probs, 10)
    leads = np.take_along_axis(probs, ranked[:, :2], axis=-1)
    tied = leads[:, 0] - leads[:, 1] < CONFIDENT_MARGIN / 2
    labels = np.where(tied, ranked[:, -1], ranked[:, 0])
    return model, images, labels


ARTEFACTS = {  # stand-ins for a converted model: real models, loaded as `.keras` artefacts
    "near ties flipped": lambda: _near_tied_model(bias_noise=0.05),
    "classes shifted": lambda: _near_tied_model(roll=1),
}


@pytest.fixture(scope="module")
def verify_as_int8(near_tie, tmp_path_factory):
    """`verify(artefact, data, bounds)`: the figures of one of `ARTEFACTS` against the
    near-tied model, bounded as int8 is, on labelled, unlabelled or random images."""
    model, images, labels = near_tie
    datasets = {"labelled": (images, labels), "unlabelled": images, "random": None}
    references, predictors = {}, {}

    def verify(artefact, data="labelled", bounds=None):
        if data not in references:
            references[data] = keras_reference(model, "softmax", datasets[data], SAMPLES)
        if artefact not in predictors:
            path = tmp_path_factory.mktemp("artefact") / "artefact.keras"
            ARTEFACTS[artefact]().save(path)
            predictors[artefact] = load_predictor(path)
        return verify_artifact(predictors[artefact], references[data],
                               bounds or DEFAULT_BOUNDS["tflite-int8"])

    return verify


def _check(figures, metric):
    (check,) = [c for c in figures["checks"] if c["metric"] == metric]
    return check


def test_default_bounds_are_accuracy_drops_in_points():
    floats = ("savedmodel", "tflite-fp32", "tflite-fp16", "onnx")
    assert {fmt: DEFAULT_BOUNDS[fmt]["accuracy_drop"] for fmt in FORMATS} == {
        **dict.fromkeys(floats, 0.1), "tflite-dynamic": 1.0, "tflite-int8": 1.0}


@pytest.mark.slow
def test_flipped_near_ties_keep_the_accuracy_and_pass(verify_as_int8):
    figures = verify_as_int8("near ties flipped")
    assert figures["top1_agreement"] < 0.99  # refused by the agreement bound before #19
    assert figures["keras_accuracy"] == figures["accuracy"] and figures["accuracy_drop"] == 0
    assert 0.2 < figures["keras_accuracy"] < 0.9  # confident images right, near ties wrong
    assert figures["passed"]
    assert _check(figures, "accuracy_drop")["enforced"]
    line = format_verification(figures)
    assert "(drop 0.00 pt)" in line and "MISSED" not in line and "not enforced" not in line
    assert _check(figures, "top1_agreement") == {
        "metric": "top1_agreement", "bound": 0.99, "value": figures["top1_agreement"],
        "enforced": False, "passed": None,
        "note": "labelled images: bounded by the accuracy drop"}


def test_without_labels_agreement_counts_only_confident_images(verify_as_int8):
    figures = verify_as_int8("near ties flipped", "unlabelled")
    assert figures["accuracy_drop"] is None and figures["top1_agreement"] < 0.99
    assert 0 < figures["confident_samples"] < figures["samples"]
    assert figures["confident_agreement"] == 1.0 and figures["passed"]
    assert _check(figures, "top1_agreement")["enforced"]
    assert _check(figures, "accuracy_drop")["note"] == "no labels"


@pytest.mark.slow
def test_random_inputs_enforce_neither_accuracy_nor_agreement(verify_as_int8):
    figures = verify_as_int8("classes shifted", "random")
    assert figures["data"] == "random" and figures["passed"]
    assert [(c["metric"], c["enforced"]) for c in figures["checks"]] == [
        ("top1_agreement", False), ("accuracy_drop", False)]


@pytest.mark.parametrize("data", ["labelled", "unlabelled"])
def test_a_model_worse_on_confident_images_is_refused(verify_as_int8, data):
    figures = verify_as_int8("classes shifted", data)
    assert not figures["passed"]
    if data == "labelled":
        assert figures["accuracy_drop"] > 20
        assert "MISSED top-1 accuracy" in format_verification(figures)
        assert "a drop of" in missed_bounds(figures) and "--max-accuracy-drop" in \
            missed_bounds(figures)
        bounds = {**DEFAULT_BOUNDS["tflite-int8"], "accuracy_drop": 100.0}
        assert verify_as_int8("classes shifted", bounds=bounds)["passed"]
    else:
        assert figures["confident_agreement"] < 0.5
        assert f"where Keras' top-1 leads by {CONFIDENT_MARGIN}" in missed_bounds(figures)


def test_max_accuracy_drop_is_a_number_or_one_per_format():
    assert check_max_accuracy_drop(None) == {}
    assert check_max_accuracy_drop(2) == dict.fromkeys(FORMATS, 2.0)
    assert check_max_accuracy_drop({"tflite-int8": 0.5}) == {"tflite-int8": 0.5}


@pytest.mark.parametrize("value", [-0.1, 100.5, float("nan"), True, "1", [1],
                                   {"tflite-int9": 1}, {"tflite-int8": -1}])
def test_a_bad_max_accuracy_drop_is_refused_before_any_work(tmp_path, value):
    with pytest.raises(ValueError, match=r"`max_accuracy_drop`"):
        export_model(tmp_path / "missing.keras", tmp_path / "out", ["tflite-fp32"],
                     max_accuracy_drop=value, verbose=False)
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("value,message", [
    ("-1", "`max_accuracy_drop` must be a number of percentage points in [0, 100]"),
    ("many", "argument --max-accuracy-drop: invalid float value: 'many'"),
])
def test_cli_refuses_a_bad_max_accuracy_drop(tmp_path, capsys, near_tie, value, message):
    from keras_googlenet_training.cli.export import main

    near_tie[0].save(tmp_path / "m.keras")
    try:
        code = main([str(tmp_path / "m.keras"), "--out", str(tmp_path / "out"),
                     f"--max-accuracy-drop={value}"])
    except SystemExit as refusal:  # argparse's own, for what is not a number
        code = refusal.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.slow
def test_near_tied_int8_exports_and_constant_calibration_is_refused(tmp_path, near_tie):
    """The issue's case through the converter: int8 agrees on fewer than 99 % of the
    images at an unchanged accuracy, and is published; the same model calibrated on
    constant images loses its accuracy and is refused, unless the bound is raised."""
    model, images, labels = near_tie
    (train, _), _ = digits_arrays()
    report = export_model(model, tmp_path / "near", ["tflite-int8"], calibration_data=train,
                          calibration_steps=100, verification_data=(images, labels),
                          verbose=False)
    figures = report["tflite-int8"].verification
    assert figures["top1_agreement"] < 0.99 and figures["accuracy_drop"] <= 1.0
    assert os.path.isfile(report["tflite-int8"].path)

    constant = np.zeros((8, SIZE, SIZE, 3), "float32")
    with pytest.raises(ExportError, match=r"tflite-int8.*\n(.|\n)*a drop of") as refused:
        export_model(model, tmp_path / "broken", ["tflite-int8"], calibration_data=constant,
                     verification_data=(images, labels), verbose=False)
    assert refused.value.report["tflite-int8"].verification["accuracy_drop"] > 1.0
    assert not os.path.exists(tmp_path / "broken" / f"{model.name}_int8.tflite")
    raised = export_model(model, tmp_path / "broken", ["tflite-int8"],
                          calibration_data=constant, verification_data=(images, labels),
                          max_accuracy_drop={"tflite-int8": 100}, verbose=False)
    assert raised.ok and raised["tflite-int8"].verification["bounds"]["accuracy_drop"] == 100


@pytest.mark.slow
def test_cli_bounds_by_accuracy_on_the_runs_labelled_validation_images(tmp_path, capsys):
    from keras_googlenet_training.cli.export import main

    run_dir = str(tmp_path / "run")
    write_run_dir(run_dir, _near_tied_model(), "v1_bn", 0.25)  # config.json: dataset digits
    code = main([run_dir, "--out", str(tmp_path / "out"), "--formats", "tflite-int8",
                 "--calibration-data", "digits", "--calibration-steps", "16",
                 "--max-accuracy-drop", "5", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (artefact,) = json.loads(captured.out)["artifacts"]
    figures = artefact["verification"]
    assert figures["data"] == "validation" and figures["samples"] > 300  # digits' held-out
    assert figures["keras_accuracy"] is not None and figures["bounds"]["accuracy_drop"] == 5.0
    assert _check(figures, "accuracy_drop")["enforced"]


@pytest.mark.slow
def test_a_one_epoch_digits_run_exports_every_format_with_the_default_bounds(tmp_path):
    """Issue #19's run: after one epoch the outputs are near-tied and the int8 file agreed
    with Keras on fewer than 99 % of the images at the same accuracy."""
    (x_train, y_train), (x_val, y_val) = digits_arrays()
    keras.utils.set_random_seed(0)
    model = GoogLeNet(variant="v1", input_shape=(SIZE, SIZE, 3), classes=10,
                      width_multiplier=0.25)
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    model.fit(scale(x_train), y_train, batch_size=64, epochs=1, verbose=0)
    report = export_model(model, tmp_path / "out", list(FORMATS), calibration_data=x_train,
                          verification_data=(scale(x_val), y_val), verbose=False)
    assert report.ok, report.summary()
    for result in report.results:
        assert result.verification["accuracy_drop"] <= DEFAULT_BOUNDS[result.format][
            "accuracy_drop"]
