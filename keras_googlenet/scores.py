"""Class scores in NumPy: the one softmax and the one ranking of every entry point (decoding,
`Predictor`, `googlenet-predict`, the export's verification), so they cannot disagree."""

import numpy as np

__all__ = [
    "PROBABILITY_TOLERANCE", "SOFTMAX", "UNKNOWN_ACTIVATIONS", "as_probabilities",
    "looks_like_probabilities", "softmax", "top_indices",
]

SOFTMAX = "softmax"
# Activations that say nothing about the outputs: a card-less artefact, or a `.keras`
# whose classifier layer could not be found.
UNKNOWN_ACTIVATIONS = (None, "unknown")
# How far a float32/float16 probability row may sum from 1.
PROBABILITY_TOLERANCE = 1e-2


def softmax(logits):
    """Softmax over the last axis, shifted by the row maximum so large logits stay finite."""
    logits = np.asarray(logits, dtype="float32")
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def looks_like_probabilities(scores, tolerance=PROBABILITY_TOLERANCE):
    """Whether every row of `scores` (N, classes) is a probability distribution: values
    in [0, 1] and a sum within `tolerance` of 1 (wider for quantized scores, whose range
    stays exact). Logits practically never are."""
    scores = np.atleast_2d(np.asarray(scores, dtype="float64"))
    in_range = scores.size and np.all(np.isfinite(scores)) and scores.min() >= 0 \
        and scores.max() <= 1 + PROBABILITY_TOLERANCE
    return bool(in_range and np.all(np.abs(scores.sum(axis=-1) - 1.0) <= tolerance))


def as_probabilities(scores, activation, tolerance=PROBABILITY_TOLERANCE):
    """`scores` as probabilities, given the output activation a model card states: as they
    are for `"softmax"`, softmaxed for another (`"linear"`: logits). Unknown (`None`/`"unknown"`,
    a card-less `.tflite`): softmaxed unless every row `looks_like_probabilities`."""
    scores = np.asarray(scores, dtype="float32")
    if activation == SOFTMAX or (activation in UNKNOWN_ACTIVATIONS
                                 and looks_like_probabilities(scores, tolerance)):
        return scores
    return softmax(scores)


def top_indices(scores, k):
    """The indices of the `k` (at most `len(row)`) highest scores of a row (or of each row),
    best first. Ties, common with quantized uint8 scores, go to the lower class index (a
    stable sort on the negated score; MediaPipe breaks them its own way); NaN ranks last."""
    # float64 first: negating an unsigned integer array would wrap around.
    order = np.argsort(-np.asarray(scores, dtype="float64"), axis=-1, kind="stable")
    return order[..., :max(0, int(k))]
