"""Verification: an artefact's outputs against Keras' on the same inputs, with bounds."""

from __future__ import annotations

import os

import numpy as np

from keras_googlenet.export.formats import DEFAULT_BOUNDS, UINT8_SIGNATURE
from keras_googlenet.export.source import _take_images, to_model_input
from keras_googlenet.model_card import INPUT_NAME, OUTPUT_NAME, has_preprocessing_layer
from keras_googlenet.preprocessing import resize_pixels
from keras_googlenet.scores import as_probabilities

_PARITY_SAMPLES = 32


def _keras_probs(model, x, activation):
    if has_preprocessing_layer(model):  # references are kept in the x / 127.5 - 1 space
        x = (x + 1.0) * 127.5
    y = np.concatenate([np.asarray(model(x[i:i + 64], training=False))
                        for i in range(0, len(x), 64)]).astype("float32")
    # The runtime's own rule, so an artefact and its Keras reference are read alike.
    return as_probabilities(y, activation)


def verify_artifact(predictor, reference, fmt, bounds=None, savedmodel_path=None):
    """Compare an artefact with the Keras reference outputs; return the figures.

    `reference` is the dict `_reference(...)` builds: parity inputs and Keras
    probabilities, agreement inputs, Keras probabilities and labels.
    """
    bounds = DEFAULT_BOUNDS.get(fmt, {}) if bounds is None else bounds
    parity = predictor.predict(to_model_input(reference["parity_x"], predictor.card))
    max_abs_diff = float(np.max(np.abs(parity - reference["parity_p"])))
    probs = predictor.predict(to_model_input(reference["agree_x"], predictor.card))
    agreement = float(np.mean(probs.argmax(-1) == reference["agree_p"].argmax(-1)))
    figures = {
        "max_abs_diff": max_abs_diff,
        "top1_agreement": agreement,
        "samples": int(len(reference["agree_x"])),
        "parity_samples": int(len(reference["parity_x"])),
        "data": reference["data"],
        "keras_accuracy": None,
        "accuracy": None,
    }
    if reference["labels"] is not None:
        figures["keras_accuracy"] = float(
            np.mean(reference["agree_p"].argmax(-1) == reference["labels"]))
        figures["accuracy"] = float(np.mean(probs.argmax(-1) == reference["labels"]))
    checks = []
    for metric, bound in bounds.items():
        value = figures[metric]
        if metric == "max_abs_diff":
            checks.append({"metric": metric, "bound": bound, "value": value, "enforced": True,
                           "passed": value <= bound})
        else:
            real = reference["data"] != "random"
            checks.append({"metric": metric, "bound": bound, "value": value, "enforced": real,
                           "passed": value >= bound if real else None,
                           "note": None if real else "no validation images (random inputs)"})
    if savedmodel_path is not None and reference.get("uint8_x") is not None:
        uint8_probs = _savedmodel_uint8(savedmodel_path, reference["uint8_x"])
        diff = float(np.max(np.abs(uint8_probs - reference["uint8_p"])))
        figures["uint8_signature_max_abs_diff"] = diff
        bound = bounds.get("max_abs_diff", 1e-4)
        checks.append({"metric": "uint8_signature_max_abs_diff", "bound": bound,
                       "value": diff, "enforced": True, "passed": diff <= bound})
    figures["checks"] = checks
    figures["bounds"] = dict(bounds)
    figures["passed"] = all(c["passed"] for c in checks if c["enforced"])
    return figures


def _savedmodel_uint8(path, images):
    import tensorflow as tf

    loaded = tf.saved_model.load(os.fspath(path))
    out = loaded.signatures[UINT8_SIGNATURE](**{INPUT_NAME: tf.constant(images)})
    return out[OUTPUT_NAME].numpy()


def _reference(model, activation, verification, samples, seed=0):

    size = tuple(model.input_shape[1:3])
    rng = np.random.default_rng(seed)
    if verification is not None:
        agree_x, labels = _take_images(verification, samples, size, "verification_data")
        data = "validation"
        parity_x = agree_x[:_PARITY_SAMPLES]
    else:
        agree_x = rng.uniform(-1, 1, (min(samples, 64), *size, 3)).astype("float32")
        labels, data = None, "random"
        parity_x = agree_x[:8]
    # Raw pixels of an odd size exercise the resize inside the uint8 signature.
    uint8_x = rng.integers(0, 256, (2, size[0] + 7, size[1] + 3, 3), dtype=np.uint8)
    resized = np.stack([resize_pixels(image, size) for image in uint8_x])
    return {
        "parity_x": parity_x,
        "parity_p": _keras_probs(model, parity_x, activation),
        "agree_x": agree_x,
        "agree_p": _keras_probs(model, agree_x, activation),
        "labels": labels,
        "data": data,
        "uint8_x": uint8_x,
        "uint8_p": _keras_probs(model, resized.astype("float32"), activation),
    }
