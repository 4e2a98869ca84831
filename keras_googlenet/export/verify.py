"""Verification: an artefact's outputs against Keras' on the same inputs, with bounds."""

import numbers
import os

import numpy as np

from keras_googlenet import checks
from keras_googlenet.export.formats import FORMATS, UINT8_SIGNATURE
from keras_googlenet.export.source import take_images, to_model_input, to_pixels
from keras_googlenet.model_card import INPUT_NAME, OUTPUT_NAME, has_preprocessing_layer
from keras_googlenet.preprocessing import resize_pixels
from keras_googlenet.scores import as_probabilities, top_indices

__all__ = ["CONFIDENT_MARGIN", "check_max_accuracy_drop", "keras_reference", "verify_artifact"]

_PARITY_SAMPLES = 32
# Without labels, top-1 agreement is bounded only where Keras' best class leads its runner-up
# by this much probability: closer calls flip under int8 or fp16 rounding (docs/export.md).
CONFIDENT_MARGIN = 0.1


def check_max_accuracy_drop(max_accuracy_drop):
    """`max_accuracy_drop` (`None`; a number for every format; a dict per format) as
    {format: percentage points}; `ValueError` naming it."""
    if max_accuracy_drop is None:
        return {}
    per_format = (dict(max_accuracy_drop) if isinstance(max_accuracy_drop, dict)
                  else dict.fromkeys(FORMATS, max_accuracy_drop))
    for fmt, drop in per_format.items():
        # NaN and inf fail the range; bool is an int to Python, never meant as points.
        if fmt not in FORMATS or isinstance(drop, bool) or \
                not isinstance(drop, numbers.Real) or not 0 <= drop <= 100:
            checks.fail("max_accuracy_drop", "a number of percentage points in [0, 100], or a "
                        f"dict of them per format in {list(FORMATS)}", max_accuracy_drop)
    return {fmt: float(drop) for fmt, drop in per_format.items()}


def _keras_probs(model, x, activation):
    if has_preprocessing_layer(model):  # references are kept in the x / 127.5 - 1 space
        x = to_pixels(x)
    y = np.concatenate([np.asarray(model(x[i:i + 64], training=False))
                        for i in range(0, len(x), 64)]).astype("float32")
    # The runtime's own rule, so an artefact and its Keras reference are read alike.
    return as_probabilities(y, activation)


def verify_artifact(predictor, reference, bounds, savedmodel_path=None):
    """The figures of an artefact's `predictor` against `keras_reference`'s outputs, each of
    `bounds` checked where it applies (`formats.DEFAULT_BOUNDS`); with `savedmodel_path`,
    its `serving_uint8` signature is bounded by `max_abs_diff` too."""
    parity = predictor.predict(to_model_input(reference["parity_x"], predictor.card))
    probs = predictor.predict(to_model_input(reference["agree_x"], predictor.card))
    figures = {"max_abs_diff": float(np.max(np.abs(parity - reference["parity_p"]))),
               "samples": len(reference["agree_x"]), "parity_samples": len(reference["parity_x"]),
               "data": reference["data"], **_agreement(probs, reference["agree_p"]),
               **_accuracy(probs, reference["agree_p"], reference["labels"])}
    bound_checks = [_check(metric, bound, figures) for metric, bound in bounds.items()]
    if savedmodel_path is not None:
        import tensorflow as tf

        loaded = tf.saved_model.load(os.fspath(savedmodel_path))  # alive while it runs
        out = loaded.signatures[UINT8_SIGNATURE](**{INPUT_NAME: tf.constant(reference["uint8_x"])})
        figures["uint8_signature_max_abs_diff"] = float(np.max(np.abs(
            out[OUTPUT_NAME].numpy() - reference["uint8_p"])))
        bound_checks.append(_check("uint8_signature_max_abs_diff",
                                   bounds.get("max_abs_diff", 1e-4), figures))
    figures.update(checks=bound_checks, bounds=dict(bounds),
                   passed=all(c["passed"] for c in bound_checks if c["enforced"]))
    return figures


def _top1(probs):
    return top_indices(probs, 1)[:, 0]


def _agreement(probs, keras_probs):
    """Top-1 agreement on every image, and on those where Keras is confident."""
    best_two = top_indices(keras_probs, 2)
    leads = np.take_along_axis(keras_probs, best_two, axis=-1)
    runner_up = leads[:, 1] if leads.shape[1] > 1 else 0.0  # one class: nothing to tie with
    confident = leads[:, 0] - runner_up >= CONFIDENT_MARGIN
    same = _top1(probs) == best_two[:, 0]
    return {"top1_agreement": float(np.mean(same)),
            "confident_margin": CONFIDENT_MARGIN,
            "confident_samples": int(confident.sum()),
            "confident_agreement": float(np.mean(same[confident])) if confident.any() else None}


def _accuracy(probs, keras_probs, labels):
    """Top-1 accuracy of Keras and of the artefact, and the drop in percentage points."""
    if labels is None:
        return {"keras_accuracy": None, "accuracy": None, "accuracy_drop": None}
    keras_right = int(np.sum(_top1(keras_probs) == labels))
    right = int(np.sum(_top1(probs) == labels))
    return {"keras_accuracy": keras_right / len(labels), "accuracy": right / len(labels),
            "accuracy_drop": 100.0 * (keras_right - right) / len(labels)}


def _check(metric, bound, figures):
    """One bound against the figures: enforced where it means something, else a note."""
    value, note = figures.get(metric), _not_enforced_because(metric, figures)
    if metric == "top1_agreement" and figures["accuracy_drop"] is None:
        value = figures["confident_agreement"]
    passed = None if note is not None else (  # agreement: at least; the others: at most
        value >= bound if metric == "top1_agreement" else value <= bound)
    return {"metric": metric, "bound": bound, "value": value, "enforced": note is None,
            "passed": passed, "note": note}


def _not_enforced_because(metric, figures):
    labelled = figures["accuracy_drop"] is not None
    if metric == "accuracy_drop" and not labelled:
        return "no labels"
    if metric != "top1_agreement":
        return None
    if labelled:
        return "labelled images: bounded by the accuracy drop"
    if figures["data"] == "random":
        return "no validation images (random inputs)"
    if figures["confident_samples"] == 0:
        return f"no image where Keras' top-1 leads by {CONFIDENT_MARGIN}"
    return None


def keras_reference(model, activation, verification, samples):
    """Keras' probabilities for `verify_artifact` on the verification images (or random
    inputs): a parity subset, every image with its labels, raw pixels for `serving_uint8`."""
    size = tuple(model.input_shape[1:3])
    rng = np.random.default_rng(0)
    if verification is not None:
        agree_x, labels = take_images(verification, samples, size, "verification_data")
        data, parity_x = "validation", agree_x[:_PARITY_SAMPLES]
    else:
        agree_x = rng.uniform(-1, 1, (min(samples, 64), *size, 3)).astype("float32")
        labels, data, parity_x = None, "random", agree_x[:8]
    # Raw pixels of an odd size exercise the resize inside the uint8 signature.
    uint8_x = rng.integers(0, 256, (2, size[0] + 7, size[1] + 3, 3), dtype=np.uint8)
    return {"parity_x": parity_x, "parity_p": _keras_probs(model, parity_x, activation),
            "agree_x": agree_x, "agree_p": _keras_probs(model, agree_x, activation),
            "labels": labels, "data": data, "uint8_x": uint8_x,
            "uint8_p": _keras_probs(model, resize_pixels(uint8_x, size), activation)}
