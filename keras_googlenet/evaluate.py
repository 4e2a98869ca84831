"""Score artefacts on the same labelled images: top-1, top-5, size and latency per model."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from keras_googlenet.compute_budget import median_latency_ms
from keras_googlenet.publish import path_size
from keras_googlenet.runtime import KerasPredictor, load_predictor
from keras_googlenet.scores import top_indices

__all__ = ["FORMAT_KERAS_HUB", "LATENCY_RUNS", "Evaluation", "ModelScore", "confusion_matrix",
           "evaluate_models", "load_model", "per_class_recall"]

FORMAT_KERAS_HUB = "keras-hub"
LATENCY_RUNS = 20
MAX_KEPT_IMAGES = 200  # disagreeing images kept for a report; all are still listed


def load_model(path, num_threads=None):
    """`runtime.load_predictor(path)`, or for a KerasHub preset directory (`metadata.json`,
    no `saved_model.pb`; needs keras-hub) a Keras predictor of its classifier whose card
    says `"format": "keras-hub"`."""
    names = os.listdir(path) if isinstance(path, (str, os.PathLike)) and os.path.isdir(path) else []
    if "metadata.json" in names and "saved_model.pb" not in names:
        return _preset_predictor(os.fspath(path))
    return load_predictor(path, num_threads=num_threads)


def _preset_predictor(path):
    import keras

    from keras_googlenet import hub  # without keras-hub, its ImportError names the extra

    metadata = hub.check_preset(path)
    classifier = hub.GoogLeNetImageClassifier.from_preset(path)
    converter = classifier.preprocessor.image_converter
    inputs = keras.Input((*converter.image_size, 3))
    # The crop and resize are `preprocess_images`' (the converter's are the same); its scaling here.
    scaled = keras.layers.Rescaling(converter.scale, converter.offset)(inputs)
    card = {"format": FORMAT_KERAS_HUB, "labels": metadata.get("labels"),
            "model": {"input_size": list(converter.image_size)},
            "preprocessing": {"central_crop": converter.crop_fraction, "in_model": True},
            "output": {"activation": classifier.activation or "linear"}}
    return KerasPredictor(path, card=card, model=keras.Model(inputs, classifier(scaled)))


@dataclasses.dataclass
class ModelScore:
    """One artefact's figures; `predictions` (top-1 class per image) feed the report."""

    path: str
    format: str
    size_bytes: int
    top1_pct: float
    top5_pct: float
    top1_diff_pts: float
    latency_ms: float | None
    predictions: np.ndarray

    def row(self):
        """The figures as a JSON-ready dict (without the per-image predictions)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "predictions"}


@dataclasses.dataclass
class Evaluation:
    """Each model's score on the same images; `kept_images`: index -> pixels, where they differ."""

    models: list[ModelScore]
    labels: np.ndarray
    num_classes: int
    kept_images: dict

    def disagreements(self):
        """Indices of the images that not every model puts in the same class."""
        predictions = np.stack([m.predictions for m in self.models])
        return np.flatnonzero(np.any(predictions != predictions[:1], axis=0))


def evaluate_models(models, images, labels=None, num_classes=None, batch_size=32,
                    num_threads=None, latency_runs=LATENCY_RUNS, progress=None):
    """Score each artefact on the same images, through `googlenet-predict`'s preprocessing.

    Args:
        models: artefact paths (`.keras`, SavedModel, `.tflite`, `.onnx`, a KerasHub preset
            directory); the first is the reference of `top1_diff_pts`.
        images: uint8 RGB images (an (N, H, W, 3) array or a list of HxWx3 arrays) with
            `labels`; or, with `labels=None`, an iterable of `(images, labels)` batches.
        labels: integer class per image.
        num_classes: the dataset's class count; every model must output as many scores.
        batch_size: images per inference call.
        num_threads: CPU threads for TFLite and onnxruntime.
        latency_runs: timed batch-1 runs per model (their median is `latency_ms`); 0: none.
        progress: called with the number of images done after each batch.

    Returns an `Evaluation`. Raises `FileNotFoundError` (a missing model) or `ValueError` (no
    models or images, a bad model or one for another class count, bad labels).
    """
    models = [] if isinstance(models, (str, os.PathLike)) else list(models)
    if not models:
        raise ValueError("`models` must be a non-empty list of artefact paths.")
    predictors = [load_model(path, num_threads) for path in models]
    tops, truth, kept, first_inputs = _predict_all(
        predictors, _batches(images, labels, batch_size), num_classes, batch_size, progress)
    scores = []
    for path, predictor, top in zip(models, predictors, tops, strict=True):
        top1 = 100.0 * float(np.mean(top[:, 0] == truth))
        scores.append(ModelScore(
            path=os.fspath(path), format=predictor.card.get("format") or predictor.format,
            size_bytes=int(path_size(path)), top1_pct=top1,
            top5_pct=100.0 * float(np.mean(np.any(top == truth[:, None], axis=1))),
            top1_diff_pts=top1 - scores[0].top1_pct if scores else 0.0,
            latency_ms=median_latency_ms(predictor, first_inputs[_input_key(predictor)],
                                         latency_runs),
            predictions=top[:, 0]))
    return Evaluation(models=scores, labels=truth, kept_images=kept,
                      num_classes=num_classes or int(truth.max()) + 1)


def _input_key(predictor):
    """Models whose input size and preprocessing agree share their preprocessed inputs."""
    return json.dumps([predictor.input_size, predictor.card.get("preprocessing")])


def _predict_all(predictors, batches, num_classes, batch_size, progress):
    """One pass over the batches: each model's top-5 per image, the labels, the images the
    models disagree on (up to `MAX_KEPT_IMAGES`) and one preprocessed image per input key."""
    tops, truth, kept, first_inputs, done = [[] for _ in predictors], [], {}, {}, 0
    for batch, batch_labels in batches:
        truth.append(_check_labels(batch_labels, len(batch), num_classes))
        inputs = {}
        for predictor, top in zip(predictors, tops, strict=True):
            key = _input_key(predictor)
            if key not in inputs:
                inputs[key] = predictor.preprocess_images(batch)
                first_inputs.setdefault(key, inputs[key][:1])
            probs = predictor.predict(inputs[key], batch_size)
            _check_classes(predictor, probs.shape[1], num_classes, truth[-1])
            top.append(top_indices(probs, 5))
        best = np.stack([top[-1][:, 0] for top in tops])
        for i in np.flatnonzero(np.any(best != best[:1], axis=0))[:MAX_KEPT_IMAGES - len(kept)]:
            kept[done + int(i)] = np.asarray(batch[i])
        done += len(batch)
        if progress is not None:
            progress(done)
    if not done:
        raise ValueError("`images` is empty: pass at least one labelled image.")
    return [np.concatenate(top) for top in tops], np.concatenate(truth), kept, first_inputs


def _batches(images, labels, batch_size):
    if labels is None:  # already batches of (images, labels)
        return images
    labels = _check_labels(labels, len(images), None)
    return ((images[i:i + batch_size], labels[i:i + batch_size])
            for i in range(0, len(images), batch_size))


def _check_labels(labels, count, num_classes):
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != count or not np.issubdtype(labels.dtype, np.integer) or (count and (
            labels.min() < 0 or labels.max() >= (num_classes or np.inf))):
        raise ValueError(f"`labels` must be one integer in [0, {num_classes or 'classes'}) per "
                         f"image; received {len(labels)} {labels.dtype} labels for {count} images.")
    return labels


def _check_classes(predictor, outputs, num_classes, labels):
    if (num_classes and outputs != num_classes) or (len(labels) and labels.max() >= outputs):
        raise ValueError(
            f"`model` {predictor.path!r} scores {outputs} classes but the dataset has "
            f"{num_classes or int(labels.max()) + 1}: it was trained for other data.")


def confusion_matrix(labels, predictions, num_classes):
    """(num_classes, num_classes) counts: row = true class, column = predicted class."""
    flat = np.asarray(labels, dtype=np.int64) * num_classes + np.asarray(predictions)
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_recall(labels, predictions, num_classes):
    """Per class: the share of its images predicted as it (None for a class without any)."""
    matrix = confusion_matrix(labels, predictions, num_classes)
    totals = matrix.sum(axis=1)
    return [float(matrix[c, c] / totals[c]) if totals[c] else None for c in range(num_classes)]
