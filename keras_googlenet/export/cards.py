"""The model card of each artefact, its labels, and its TFLite metadata."""

import datetime
import json
import os

import keras
import numpy as np

from keras_googlenet import runtime
from keras_googlenet._version import __version__
from keras_googlenet.export.formats import FORMATS, UINT8_SIGNATURE
from keras_googlenet.export.report import log_progress
from keras_googlenet.input_files import read_lines
from keras_googlenet.model_card import INPUT_NAME, OUTPUT_NAME, preprocessing_card, resolve_source
from keras_googlenet.preprocessing import imagenet_labels
from keras_googlenet.publish import json_default

__all__ = ["fill_io", "format_card", "gpu_warning", "read_labels", "resolve_labels",
           "with_tflite_metadata"]


def read_labels(labels):
    """Class names from a list or a text file (one per line); `ValueError` otherwise."""
    if isinstance(labels, (str, os.PathLike)):
        path = os.fspath(labels)
        if not os.path.isfile(path):
            raise ValueError(f"`labels` file not found: {path!r}.")
        labels = read_lines(path, "`labels` file")  # UTF-8, BOM and CRLF handled
    if not isinstance(labels, (list, tuple)) or not labels or not all(
            isinstance(label, str) and label.strip() and "\n" not in label for label in labels):
        raise ValueError("`labels` must be a non-empty list of class names (strings without "
                         "line breaks) or the path of a text file with one per line.")
    return [label.strip() for label in labels]


def resolve_labels(explicit, source, card, verbose):
    """The class names for the cards and the TFLite metadata (see `export_model`)."""
    classes = card["model"]["classes"]
    if explicit is not None:
        if len(explicit) != classes:
            raise ValueError(f"`labels` has {len(explicit)} names but the model has {classes} "
                             "classes; give one name per class.")
        return explicit
    if not isinstance(source, keras.Model):
        run_labels = resolve_source(source)[1].get("labels")
        if run_labels is not None:
            if len(run_labels) != classes:
                raise ValueError(f"the run's labels.txt has {len(run_labels)} names but the "
                                 f"model has {classes} classes; fix labels.txt or pass labels "
                                 "(CLI: --labels FILE).")
            return run_labels
    if classes == 1000:
        log_progress(verbose, "[export] no labels given: using ImageNet's 1000 class names")
        return imagenet_labels()
    log_progress(verbose, "[export] no labels (no labels.txt, no --labels): classes are named "
                          "by their index")
    return None


def format_card(base_card, fmt, target, options, in_model):
    """A copy of `base_card` with the fields of `fmt`'s artefact at `target`; `options`: as
    `export_model`'s; `in_model`: whether the artefact has the preprocessing inside."""
    import tensorflow as tf

    card = json.loads(json.dumps(base_card, default=json_default))
    card.update(format=fmt, file=os.path.basename(target), precision=FORMATS[fmt][1],
                created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                versions={"tensorflow": tf.__version__, "keras": keras.version(),
                          "keras_googlenet": __version__})
    card["preprocessing"] = preprocessing_card(in_model)
    if fmt == "savedmodel":
        pixels = "RGB pixels in [0, 255]" if in_model else "in [-1, 1]"
        outputs = {OUTPUT_NAME: "float32 [N, classes]"}
        card["signatures"] = {"serving_default": {
            "inputs": {INPUT_NAME: f"float32 [N, H, W, 3] {pixels}"}, "outputs": outputs}}
        if options["uint8_signature"]:
            card["signatures"][UINT8_SIGNATURE] = {
                "inputs": {INPUT_NAME: "uint8 [N, any H, any W, 3] RGB pixels"}, "outputs": outputs,
                "note": "central crop (87.5 %), bilinear resize and x / 127.5 - 1 run in the graph",
            }
    elif fmt == "onnx":
        import tf2onnx

        card["onnx"] = {"opset": options["opset"], "tf2onnx": tf2onnx.__version__}
    if fmt == "tflite-int8":
        card["int8_io"] = options["int8_io"]
    else:  # only the int8 artefact was calibrated
        card.pop("calibration", None)
    return card


def fill_io(card, path):
    """Record the real input/output dtypes and quantization of the `.tflite` at `path`."""
    predictor = runtime.TFLitePredictor(path, card=card)
    for key, details in (("input", predictor.input), ("output", predictor.output)):
        card[key]["dtype"] = np.dtype(details["dtype"]).name
        scale, zero_point = details["quantization"]
        card[key]["quantization"] = (
            {"scale": float(scale), "zero_point": int(zero_point)} if scale else None)


def with_tflite_metadata(flatbuffer, card):
    """(the `.tflite` bytes with the TFLite Metadata that `card` describes, what it says for
    the card: the labels counted, not listed)."""
    from keras_googlenet.export.tflite_metadata import LABELS_FILE, add_image_classifier_metadata

    model = card["model"]
    in_model = card["preprocessing"]["in_model"]
    dataset = (card.get("source") or {}).get("dataset")
    fields = {
        "name": model["name"],
        "description": (f"GoogLeNet (Inception v1, Szegedy et al. 2014), variant "
                        f"{model['variant']}, {model['classes']} classes"
                        + (f", trained on {dataset}" if dataset else "") + ". "
                        + ("Input: RGB pixels in [0, 255]." if in_model else
                           "Input: RGB scaled to [-1, 1] (x / 127.5 - 1).")),
        "version": f"keras_googlenet {__version__}, exported {card['created']}",
        "author": card.get("author"),
        "license": card.get("license"),
        "mean": [0.0] if in_model else [127.5],
        "std": [1.0] if in_model else [127.5],
        "input_range": [0.0, 255.0] if in_model else [-1.0, 1.0],
        "output_range": [0.0, 1.0] if card["output"]["activation"] == "softmax" else None,
        "labels": card["labels"] or [str(i) for i in range(model["classes"])],
        "input_size": model["input_size"],
    }
    summary = {**{k: v for k, v in fields.items() if k != "labels"},
               "labels_file": LABELS_FILE, "labels_count": len(fields["labels"])}
    return add_image_classifier_metadata(flatbuffer, **fields), summary


def gpu_warning(gpu):
    """One line for an artefact the GPU delegate cannot take whole."""
    ops = ", ".join(f"{op} (x{count})" for op, count in gpu["unsupported_ops"].items())
    return (f"LiteRT's GPU delegate cannot run {ops}: on a phone those ops fall back to "
            "the CPU and split the graph (slower than all-GPU); the v1_bn, torchvision "
            "and factorized variants have no such op.")
