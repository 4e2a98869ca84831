"""torchvision's weights onto a new `GoogLeNet(variant="torchvision")`, and into files."""

import json
import os

import numpy as np

from keras_googlenet.googlenet import GoogLeNet
from keras_googlenet.layers import portable_model
from keras_googlenet.model_card import card_path_for, describe_source
from keras_googlenet.paths import child_path, writable_destination
from keras_googlenet.preprocessing import imagenet_labels
from keras_googlenet.publish import atomic_path
from keras_googlenet.weights.imagenet import torchvision_source
from keras_googlenet.weights.mapping import port_state_dict
from keras_googlenet.weights.state_dict import load_state_dict, save_state_dict_npz

__all__ = ["check_output", "convert_torchvision", "from_torchvision"]


def from_torchvision(src, include_aux=False, *, include_top=True, input_shape=None, pooling=None,
                     classifier_activation="softmax", name="googlenet", return_report=False):
    """A `GoogLeNet(variant="torchvision")` with torchvision's GoogLeNet weights.

    Expects inputs from `preprocess_input(x, variant="torchvision")` ([-1, 1]): torchvision's
    `transform_input=True` is folded into that scaling.

    Args:
        src: torchvision's state dict: a `.pth`/`.pt` file (needs PyTorch), a NumPy `.npz`
            of the same tensor names, or a mapping `{name: array or tensor}`.
        include_aux: also port the two auxiliary heads (the source must have them).
            torchvision's IMAGENET1K_V1 aux heads are NOT pretrained: train them first.
        include_top: build and port the classifier (`fc`, whose shape gives the classes).
        input_shape, pooling, name: as in `GoogLeNet`. Parity with torchvision's ceil-mode
            pooling holds for sides that are multiples of 32.
        classifier_activation: `"softmax"` or `None` (logits, as torchvision returns).
        return_report: also return the `PortReport`.

    Returns:
        the Keras model, or `(model, report)` with `return_report=True`.

    Raises:
        ValueError: `src` does not hold GoogLeNet's tensors (each offending one named).
    """
    state = load_state_dict(src)
    if include_top and "fc.weight" not in state:
        raise ValueError("the torchvision state dict lacks tensor 'fc.weight' (the "
                         "classifier); pass include_top=False for the backbone only.")
    classes = int(np.shape(state["fc.weight"])[0]) if include_top else 1000
    model = GoogLeNet(include_top=include_top, input_shape=input_shape, pooling=pooling,
                      classes=classes, classifier_activation=classifier_activation,
                      include_aux=include_aux, variant="torchvision", name=name)
    report = port_state_dict(model, state)
    return (model, report) if return_report else model


def convert_torchvision(src, out, include_aux=False, input_size=224):
    """Convert torchvision's weights into `out`; returns `(out, report)`, None for an `.npz`.

    `out` ending in `.weights.h5`: the weights of `GoogLeNet(variant="torchvision",
    include_aux=include_aux)` (load them with `weights=out`); `.keras`: the whole inference
    model at `input_size` with a model card `<out>.json` (ImageNet labels, preprocessing) for
    `googlenet-predict`; `.npz`: the state dict as NumPy arrays, readable without PyTorch.
    A bad `out` raises `ValueError` (`check_output`) before anything is read.
    """
    out = check_output(out, include_aux)
    lowered = out.lower()
    if lowered.endswith(".npz"):
        save_state_dict_npz(src, out)
        return out, None
    model, report = from_torchvision(src, include_aux=include_aux,
                                     input_shape=(input_size, input_size, 3), return_report=True)
    # Written beside the target and renamed, so a crash never leaves a half-written file.
    if not lowered.endswith(".keras"):
        with atomic_path(out, suffix=".weights.h5") as tmp:
            model.save_weights(tmp)
        return out, report
    # The model and its card are both written first, then renamed one after the other.
    with atomic_path(card_path_for(out), suffix=".json") as card_tmp, \
            atomic_path(out, suffix=".keras") as tmp:
        with open(card_tmp, "w", encoding="utf-8") as f:
            json.dump(_model_card(model, out, src), f, indent=2)
        portable_model(model).save(tmp)  # loads without keras_googlenet
    return out, report


def check_output(out, include_aux=False):
    """`out` as `convert_torchvision` writes it, or a `ValueError` naming it: a known suffix,
    a plain file name (not a link) in a folder that can be written, not a directory."""
    if not isinstance(out, (str, os.PathLike)):
        raise ValueError(f"`out` must be a file path; received {out!r}.")
    out = os.fspath(out)
    child_path(os.path.dirname(out) or os.curdir, os.path.basename(out), "out")
    lowered = out.lower()
    if not lowered.endswith((".weights.h5", ".keras", ".npz")):
        raise ValueError(f"output {out!r} must end in '.weights.h5' (weights), '.keras' (model + "
                         "model card) or '.npz' (the state dict as NumPy arrays).")
    if os.path.isdir(out):
        raise ValueError(f"output {out!r} is a directory; give a file name.")
    writable_destination(os.path.dirname(out) or os.curdir, "out", "OUT")
    if lowered.endswith(".keras") and include_aux:
        raise ValueError("a '.keras' output is the deployable main-head model; drop --aux.")
    return out


def _model_card(model, path, src):
    """The card of the converted `.keras` at `path`: export card, ImageNet labels, origin."""
    card = describe_source(None, model)
    card["source"].update(path=os.path.abspath(path), weights=torchvision_source(src))
    if card["model"]["classes"] == 1000:
        card["labels"] = imagenet_labels()
    return card
