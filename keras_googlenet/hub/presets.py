"""KerasHub preset directories from GoogLeNet models: write, verify, check (docs/keras_hub.md)."""

import json
import os
import tempfile

import keras
import numpy as np

from keras_googlenet import spec as spec_lib
from keras_googlenet.hub.backbone import GoogLeNetBackbone
from keras_googlenet.hub.classifier import GoogLeNetImageClassifier
from keras_googlenet.hub.image_converter import GoogLeNetImageConverter
from keras_googlenet.hub.preprocessor import GoogLeNetImageClassifierPreprocessor
from keras_googlenet.model_card import OUTPUT_NAME, find_layer, read_json, read_run_dir
from keras_googlenet.paths import child_path, writable_destination
from keras_googlenet.preprocessing import EVAL_CROP_FRACTION
from keras_googlenet.weights.mapping import copy_weights_by_name

# The class each JSON file must describe.
PRESET_CLASSES = {
    "config.json": GoogLeNetBackbone,
    "task.json": GoogLeNetImageClassifier,
    "preprocessor.json": GoogLeNetImageClassifierPreprocessor,
    "image_converter.json": GoogLeNetImageConverter,
}
PRESET_FILES = ("config.json", "model.weights.h5", "task.json", "task.weights.h5",
                "preprocessor.json", "image_converter.json", "metadata.json")
# Bound on |preset - source model| for the same uint8 images (probabilities or logits).
VERIFY_MAX_ABS_DIFF = 1e-4
VERIFY_IMAGES = 4
LOADING_NOTE = (
    "pip install 'keras-googlenet[hub]', then `import keras_googlenet.hub` (registers the "
    "classes) before keras_hub.models.ImageClassifier.from_preset(...)"
)


def image_classifier_from_googlenet(model, image_size=None, *, variant=None, widths=None,
                                    width_multiplier=None, crop_fraction=EVAL_CROP_FRACTION):
    """A `GoogLeNetImageClassifier` (with its preprocessor) holding a GoogLeNet's weights:
    its outputs on raw uint8 images equal `model`'s after `preprocessing.resize_pixels`.

    Args:
        model: a single-output `GoogLeNet` classifier (`include_top=True`; prune aux heads
            first with `keras_googlenet.inference_model`).
        image_size: `(height, width)` or an int: the converter's resize target. Default:
            the model's fixed input size.
        variant: the model's variant; default: read from its layers.
        widths: the `widths` the model was built with (`None`: Table 1).
        width_multiplier: default: read from its stem when `widths` is None (a model with
            custom widths and a multiplier needs both).
        crop_fraction: the converter's central crop (0.875, as in evaluation).

    Raises:
        ValueError: `model` is not a single-output GoogLeNet classifier, or its size,
            widths or weights do not fit.
    """
    from keras_googlenet.model_card import infer_variant

    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model; received {type(model).__name__}.")
    if isinstance(model.output, dict):
        raise ValueError("`model` has several outputs (aux heads): pass "
                         "`keras_googlenet.inference_model(model)`.")
    variant = variant or infer_variant(model)
    if variant is None:
        raise ValueError(f"model {model.name!r} is not a GoogLeNet (no `conv1`/`inception_*` "
                         "layers of a known variant).")
    if width_multiplier is None:
        width_multiplier = _infer_width_multiplier(model, widths)
    if image_size is None:
        image_size = model.input_shape[1:3]
        if None in image_size:
            raise ValueError("the model takes any input size: pass `image_size`.")
    predictions = find_layer(model, OUTPUT_NAME)
    if predictions is None:
        raise ValueError(f"model {model.name!r} has no `predictions` layer: build it with "
                         "include_top=True.")
    backbone = GoogLeNetBackbone(variant=variant, widths=widths, width_multiplier=width_multiplier,
                                 image_shape=(None, None, int(model.input_shape[-1])),
                                 dtype="float32")
    converter = GoogLeNetImageConverter(image_size, variant, crop_fraction)
    activation = getattr(predictions.activation, "__name__", None)
    classifier = GoogLeNetImageClassifier(
        backbone=backbone,
        num_classes=int(predictions.units),
        preprocessor=GoogLeNetImageClassifierPreprocessor(image_converter=converter),
        activation=None if activation in (None, "linear") else activation,
        dropout=float(getattr(find_layer(model, "dropout"), "rate", 0.4)),
    )
    targets = [*backbone.layers, classifier.get_layer(OUTPUT_NAME)]
    not_copied, unused = copy_weights_by_name(model, targets)
    if not_copied:
        name = not_copied[0]
        origin = find_layer(model, name)
        found = None if origin is None else [tuple(w.shape) for w in origin.weights]
        shapes = [tuple(w.shape) for w in next(t for t in targets if t.name == name).weights]
        raise ValueError(
            f"layer {name!r} has weights {found} in the source model but {shapes} in the "
            "preset's architecture: check `variant`, `widths` and `width_multiplier`.")
    if unused:
        raise ValueError(f"the source model has layers the preset does not: {unused}.")
    return classifier


def write_preset(source, preset_dir, *, image_size=None, crop_fraction=EVAL_CROP_FRACTION,
                 labels=None, source_info=None, verify=True):
    """Write a KerasHub preset directory from a GoogLeNet run, `.keras` file or model, and
    return its absolute path. It is swapped in whole, keeping the user's own files there
    (docs/keras_hub.md); a failure writes nothing.

    Args:
        source: a run directory, a `.keras` file or a `keras.Model`, as for `export_model`.
        preset_dir: the preset directory to write (its preset files replaced if it exists).
        image_size: the converter's resize target, `(height, width)` or an int. Default:
            the model's input size, else the run's `input_size`.
        crop_fraction: the converter's central crop (0.875, the evaluation transform).
        labels: class names for `metadata.json`; default: the run's `labels.txt`.
        source_info: a dict for `metadata.json` on where the weights come from (default:
            the run directory, dataset and metrics).
        verify: reload the preset with `ImageClassifier.from_preset` and compare it with the
            source model on random uint8 images (bound `VERIFY_MAX_ABS_DIFF`).

    Raises:
        ValueError: a bad `preset_dir` (a symlink, `.`, `..`, a file or read-only: refused
            before any work), `source` or `labels`, or a verification miss (nothing written).
    """
    from keras_googlenet.export.source import load_source
    from keras_googlenet.publish import discard_stage, json_default, replace_owned

    preset_dir = check_preset_destination(preset_dir)
    model, card = load_source(source, image_size)  # a fixed input: the converter's size
    run_dir = card["source"]["run_dir"]
    # The `widths` argument the run built with (the card holds the resolved ones).
    config = read_run_dir(run_dir).get("config") or {} if run_dir else {}
    classifier = image_classifier_from_googlenet(
        model, variant=card["model"]["variant"], widths=(config.get("model") or {}).get("widths"),
        width_multiplier=card["model"]["width_multiplier"], crop_fraction=crop_fraction)
    labels = list(labels) if labels is not None else card.get("labels")
    if labels is not None and len(labels) != classifier.num_classes:
        raise ValueError(f"`labels` has {len(labels)} names for {classifier.num_classes} classes.")
    parent = os.path.dirname(preset_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(preset_dir)}.tmp-")
    created = None  # everything in `tmp` is ours until the swap starts
    try:
        classifier.save_to_preset(tmp)
        converter = classifier.preprocessor.image_converter
        verification = _verify(tmp, model, converter) if verify else None
        metadata_path = os.path.join(tmp, "metadata.json")
        metadata = read_json(metadata_path)  # KerasHub's: versions, parameter_count, tasks
        metadata.update(_preset_metadata(classifier, card, labels, source_info, verification))
        with open(metadata_path, "w", encoding="utf-8") as f:
            json.dump(metadata, f, indent=4, default=json_default)
        check_preset(tmp)
        created = set(os.listdir(tmp))
        replace_owned(tmp, preset_dir, owned=set(PRESET_FILES).__contains__)
    finally:
        discard_stage(tmp, created if created is not None else set(os.listdir(tmp)))
    return preset_dir


def check_preset_destination(preset_dir, flag="--out"):
    """The absolute path of `preset_dir` to write, or a `ValueError` naming `preset_dir`
    (and the CLI's `flag`): its last component must be a plain name (not `.`, `..`, a
    link), and it must be a directory that can be created or written, not a file."""
    text = os.fspath(preset_dir).rstrip(os.sep) or os.sep
    path = child_path(os.path.dirname(text) or os.curdir, os.path.basename(text), "preset_dir")
    writable_destination(preset_dir, "preset_dir", flag)
    return os.path.abspath(path)


def _preset_metadata(classifier, card, labels, source_info, verification):
    """Our fields of `metadata.json`, beside KerasHub's own."""
    from keras_googlenet._version import __version__

    backbone = classifier.backbone
    converter = classifier.preprocessor.image_converter
    widths = spec_lib.resolve_widths(backbone.widths, backbone.width_multiplier)
    return {
        "keras_googlenet_version": __version__,
        "loading": LOADING_NOTE,
        "variant": backbone.variant,
        "width_multiplier": backbone.width_multiplier,
        "widths": {block: list(value) for block, value in widths.items()},
        "backbone_parameter_count": int(backbone.count_params()),
        "task_parameter_count": int(classifier.count_params()),
        "num_classes": classifier.num_classes,
        "activation": classifier.activation,
        "image_size": list(converter.image_size),
        "preprocessing": {
            "central_crop": converter.crop_fraction,
            "resize": f"{converter.interpolation}, antialias={converter.antialias}",
            "scaling": spec_lib.get_variant(backbone.variant).preprocessing,
            "pixel_range": [0, 255],
        },
        "labels": labels,
        "source": source_info if source_info is not None else {
            "kind": "training run" if card["source"]["run_dir"] else "keras model",
            **card["source"],
        },
        "verification": verification,
    }


def write_torchvision_preset(src, preset_dir, image_size=224, verify=True):
    """Write torchvision's GoogLeNet ImageNet weights (`src`, as for `from_torchvision`) as
    a KerasHub preset whose classifier returns logits; returns its absolute path.
    `image_size` is the converter's (224, torchvision's); `verify` as in `write_preset`."""
    from keras_googlenet.preprocessing import imagenet_labels
    from keras_googlenet.weights import from_torchvision
    from keras_googlenet.weights.imagenet import torchvision_source

    check_preset_destination(preset_dir, "--preset")  # before the port
    model = from_torchvision(src, classifier_activation=None,
                             input_shape=(image_size, image_size, 3))
    labels = imagenet_labels() if model.output_shape[-1] == 1000 else None
    return write_preset(model, preset_dir, image_size=image_size, labels=labels,
                        source_info=torchvision_source(src), verify=verify)


def check_preset(preset_dir):
    """Check that a local directory is a complete, consistent GoogLeNet preset (every file of
    `PRESET_FILES`, each JSON one describing this package's class for its role, all agreeing
    on the variant and widths), and return its `metadata.json` as a dict. The weights are
    checked when loaded (`GoogLeNetBackbone.load_weights` names a mismatch).

    Raises:
        FileNotFoundError: the directory or some of its files are missing (all named).
        ValueError: a file is not valid JSON, describes another class, or disagrees with
            the others.
    """
    preset_dir = os.fspath(preset_dir)
    if not os.path.isdir(preset_dir):
        raise FileNotFoundError(f"KerasHub preset directory not found: {preset_dir!r}.")
    missing = [name for name in PRESET_FILES if not os.path.isfile(os.path.join(preset_dir, name))]
    if missing:
        raise FileNotFoundError(
            f"KerasHub preset {preset_dir!r} lacks {', '.join(missing)}; a GoogLeNet preset "
            f"has {', '.join(PRESET_FILES)} (write one with `googlenet-export RUN --formats "
            "keras-hub --out DIR` or `keras_googlenet.hub.write_preset`).")
    configs = {name: read_json(os.path.join(preset_dir, name))
               for name in (*PRESET_CLASSES, "metadata.json")}
    for name, cls in PRESET_CLASSES.items():
        expected = keras.saving.get_registered_name(cls)
        found = configs[name].get("registered_name") if isinstance(configs[name], dict) else None
        if found != expected:
            raise ValueError(
                f"{name} of preset {preset_dir!r} describes {found!r}, not {expected!r}: the "
                "file comes from another architecture (or the directory mixes presets).")
    backbone = configs["config.json"]["config"]
    task_backbone = configs["task.json"]["config"].get("backbone", {}).get("config", {})
    metadata = configs["metadata.json"]
    others = [("task.json's backbone", key, task_backbone.get(key))
              for key in ("variant", "widths", "width_multiplier")]
    others += [("image_converter.json", "variant",
                configs["image_converter.json"]["config"].get("variant")),
               ("metadata.json", "variant", metadata.get("variant"))]
    for name, key, value in others:
        if value != backbone.get(key):
            raise ValueError(
                f"{name} has {key}={value!r} but config.json has {key}={backbone.get(key)!r} "
                f"in preset {preset_dir!r}: the files come from different models.")
    return metadata


def _infer_width_multiplier(model, widths):
    """The multiplier that rebuilds `model`: exact for Table 1 widths scaled by it."""
    from keras_googlenet.model_card import infer_widths

    conv1 = int(model.get_layer("conv1_conv").filters)
    multiplier = conv1 / spec_lib.STEM_WIDTHS["conv1"]
    if multiplier == 1.0:
        return 1.0
    expected = {k: list(v) for k, v in spec_lib.resolve_widths(widths, multiplier).items()}
    stem = {k: int(model.get_layer(f"{k}_conv").filters) for k in spec_lib.STEM_WIDTHS}
    if infer_widths(model) != expected or stem != spec_lib.stem_widths(multiplier):
        raise ValueError(
            f"cannot tell the width multiplier of model {model.name!r} (conv1 has {conv1} "
            "filters and the blocks do not follow Table 1 scaled alike): pass "
            "`width_multiplier` and `widths`, or export from the run directory, whose "
            "config.json records them.")
    return multiplier


def _verify(preset_dir, model, converter):
    """Max |preset - model| on random uint8 images, loaded through KerasHub's own API."""
    import keras_hub

    from keras_googlenet.preprocessing import resize_pixels

    height, width = converter.image_size
    # Not the model's size, so that the crop and the resize both run.
    images = np.random.default_rng(0).integers(
        0, 256, (VERIFY_IMAGES, height + 9, width + 5, 3), dtype="uint8")
    loaded = keras_hub.models.ImageClassifier.from_preset(preset_dir)
    got = np.asarray(loaded.predict(images, verbose=0))
    inputs = resize_pixels(images, (height, width), converter.crop_fraction)
    diff = float(np.max(np.abs(got - model.predict(inputs, verbose=0))))
    if not diff <= VERIFY_MAX_ABS_DIFF:
        raise ValueError(
            f"the preset's outputs differ from the source model's by {diff:.3g} (bound "
            f"{VERIFY_MAX_ABS_DIFF}) on the same images; nothing was written.")
    return {"max_abs_diff": diff, "images": VERIFY_IMAGES, "bound": VERIFY_MAX_ABS_DIFF,
            "loaded_with": "keras_hub.models.ImageClassifier.from_preset"}
