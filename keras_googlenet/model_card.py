"""The model card: the JSON that travels with every exported artefact (docs/export.md). The
export writes cards and the runtime reads them; both take the format from here."""

import json
import os

from keras_googlenet import spec as spec_lib
from keras_googlenet.input_files import read_lines
from keras_googlenet.preprocessing import EVAL_CROP_FRACTION, PREPROCESSING_LAYER

# The classifier layer of every GoogLeNet and the output name of every artefact.
OUTPUT_NAME = "predictions"
INPUT_NAME = "image"
CARD_SUFFIX = ".json"
CARD_IN_SAVEDMODEL = "model_card.json"
RUN_FILES = ("config.json", "labels.txt")  # what makes a folder a training run directory

__all__ = [
    "CARD_IN_SAVEDMODEL", "CARD_SUFFIX", "INPUT_NAME", "OUTPUT_NAME", "card_path_for",
    "describe_source", "find_layer", "has_preprocessing_layer", "infer_variant", "infer_widths",
    "preprocessing_card", "read_json", "read_model_card", "read_run_dir", "resolve_source",
]


def card_path_for(path):
    """Where the sidecar model card of artefact `path` lives: `<path>.json`."""
    return os.fspath(path).rstrip("/\\") + CARD_SUFFIX


def read_model_card(path):
    """The model card of an artefact (sidecar, or inside a SavedModel dir), or None."""
    for candidate in (card_path_for(path), os.path.join(path, CARD_IN_SAVEDMODEL)):
        if os.path.isfile(candidate):
            card = read_json(candidate)
            if not isinstance(card, dict):
                raise ValueError(f"the model card {candidate!r} is corrupt (not a JSON "
                                 "object); fix or delete it.")
            return card
    return None


def read_json(path):
    """The JSON file at `path`; a `ValueError` naming it if it is not JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except ValueError as error:  # UnicodeDecodeError is one too
        raise ValueError(f"{path!r} is corrupt (not JSON: {error}); fix or delete it.") from None


def preprocessing_card(in_model):
    """The card's `preprocessing` section: scaled input, or pixels rescaled in the model."""
    card = {
        "mode": "tf", "formula": "x / 127.5 - 1", "in_model": False, "color": "RGB",
        "pixel_range": [0, 255], "input_range": [-1.0, 1.0], "central_crop": EVAL_CROP_FRACTION,
        "resize": "bilinear (tf.image.resize, no antialiasing) to input_size, after the crop",
    }
    if in_model:
        card.update(in_model=True, input_range=[0.0, 255.0],
                    formula=f"inside the model (layer {PREPROCESSING_LAYER!r}, mode 'tf'): "
                            "feed RGB pixels in [0, 255]")
    return card


def has_preprocessing_layer(model):
    """Whether `model` rescales raw pixels itself (`GoogLeNet(include_preprocessing=True)`)."""
    return any(layer.name == PREPROCESSING_LAYER for layer in model.layers)


def read_run_dir(run_dir):
    """What a run directory says about its model: config.json, labels.txt, metrics.json."""
    info = {"run_dir": os.path.abspath(run_dir)}
    for key in ("config", "metrics"):
        path = os.path.join(run_dir, f"{key}.json")
        if os.path.isfile(path):
            try:
                info[key] = read_json(path)
            except ValueError:  # a corrupt metrics.json only costs the card figures
                if key == "config":
                    raise
    labels_path = os.path.join(run_dir, "labels.txt")
    if os.path.isfile(labels_path):
        info["labels"] = read_lines(labels_path, "the run's labels.txt")
    return info


def _run_beside(path):
    """`read_run_dir` of the folder holding the file `path` if it is a run directory, else {}."""
    parent = os.path.dirname(os.path.abspath(path))
    is_run = any(os.path.isfile(os.path.join(parent, name)) for name in RUN_FILES)
    return read_run_dir(parent) if is_run else {}


def resolve_source(source):
    """(path of the `.keras` file, run-directory info or {}) for a file or run directory."""
    path = os.fspath(source)
    if os.path.isdir(path):
        for candidate in ("qat.keras", "inference.keras", "model.keras"):  # QAT: docs/export.md
            if os.path.isfile(os.path.join(path, candidate)):
                return os.path.join(path, candidate), read_run_dir(path)
        raise FileNotFoundError(f"run directory {path!r} has neither inference.keras nor "
                                "model.keras.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"source not found: {path!r} (expected a .keras file or a "
                                "run directory).")
    if not path.endswith(".keras"):
        raise ValueError(f"`source` must be a '.keras' file or a run directory; received {path!r}.")
    return path, _run_beside(path)


def find_layer(model, name):
    """`model.get_layer(name)`, or None if `model` has no layer of that name."""
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def infer_variant(model):
    """The GoogLeNet variant of a built model, from its layer names and kernels."""
    if find_layer(model, "norm1") is not None:
        return "v1"
    if find_layer(model, "inception_3a_5x5_pre_conv") is not None:
        return "factorized"
    conv = find_layer(model, "inception_3a_5x5_conv")
    if conv is None:
        return None
    return "torchvision" if tuple(conv.kernel_size) == (3, 3) else "v1_bn"


def infer_widths(model):
    """Per-block widths `{"3a": [6 ints], ...}` read from the conv filter counts."""
    widths = {}
    for block in spec_lib.INCEPTION_WIDTHS:
        convs = [find_layer(model, f"inception_{block}_{column}_conv")
                 for column in spec_lib.WIDTH_COLUMNS]
        if any(c is None for c in convs):
            return None
        widths[block] = [int(c.filters) for c in convs]
    return widths


def describe_source(path, model, run_info=None):
    """Model-card fields for a (float32 inference) `model`, from its layers and run info: a
    run directory's `config.json` wins over what the layers say; labels are its `labels.txt`."""
    if run_info is None:
        run_info = _run_beside(path) if path is not None and os.path.isfile(path) else {}
    config = run_info.get("config") or {}
    config_model = config.get("model", {})
    size = model.input_shape[1:3]
    if None in size:  # a model built for any size: the size it was trained at
        size = config_model.get("input_size")
        size = [size, size] if isinstance(size, int) else size
    input_size = [int(v) for v in size] if size else None
    classes = int(model.output_shape[-1])
    labels = run_info.get("labels")
    if labels is not None and len(labels) != classes:
        labels = None  # a labels.txt that does not match the head is worse than none
    activation = getattr(find_layer(model, OUTPUT_NAME), "activation", None)
    return {
        "model": {
            "name": model.name,
            "variant": config_model.get("variant") or infer_variant(model),
            "widths": infer_widths(model),
            "width_multiplier": config_model.get("width_multiplier"),
            "input_size": input_size,
            "classes": classes,
            "include_aux_in_source": config_model.get("include_aux"),
            "params": int(model.count_params()),
        },
        "input": {"name": INPUT_NAME, "shape": [None, *(input_size or [None, None]), 3],
                  "dtype": "float32"},
        "output": {"name": OUTPUT_NAME, "shape": [None, classes], "dtype": "float32",
                   "activation": "unknown" if activation is None
                   else getattr(activation, "__name__", str(activation))},
        "preprocessing": preprocessing_card(has_preprocessing_layer(model)),
        "labels": labels,
        "source": {
            "path": os.path.abspath(path) if path is not None else None,
            "run_dir": run_info.get("run_dir"),
            "dataset": config.get("dataset"),
            "data_dir": config.get("data_dir"),
            "metrics": run_info.get("metrics"),
        },
    }
