"""Transfer learning: start from another GoogLeNet's weights, train the heads first."""

from __future__ import annotations

import os

from keras_googlenet.weights.mapping import copy_weights_by_name

HEAD_LAYER_PREFIXES = ("predictions", "aux1_", "aux2_")


def is_head_layer(layer):
    return layer.name.startswith(HEAD_LAYER_PREFIXES)


def set_backbone_trainable(model, trainable):
    """Freeze or unfreeze everything but the classifier heads.

    A frozen BatchNormalization layer runs in inference mode in Keras 3, so its moving
    statistics stay those of the source model (a frozen BN in training mode would
    normalise with the new dataset's batch statistics and ruin accuracy).
    """
    for layer in model.layers:
        if not is_head_layer(layer):
            layer.trainable = trainable


def transfer_weights(source, target):
    """Copy weights layer by layer (by name). Heads whose class count changed start fresh.

    Returns the names of the layers that were not copied.
    """
    skipped, _ = copy_weights_by_name(source, target.layers)
    backbone = [name for name in skipped if not name.startswith(HEAD_LAYER_PREFIXES)]
    if backbone:
        raise ValueError(
            f"`init_weights`: backbone layer {backbone[0]!r} is missing or has other shapes "
            "in the source model; the source must be a GoogLeNet of the same variant, "
            "widths and input channels."
        )
    return skipped


def load_source_model(path):
    if os.path.isdir(path):
        path = os.path.join(path, "model.keras")
    if not path.endswith(".keras") or not os.path.isfile(path):
        raise ValueError(
            f"`init_weights` must be a .keras model or a run directory holding model.keras; "
            f"received {path!r}."
        )
    from keras_googlenet.runtime import load_keras_model

    return load_keras_model(path, "init_weights")
