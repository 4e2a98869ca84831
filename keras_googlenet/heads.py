"""Dropping the auxiliary heads: from the multi-output training model to the model you deploy."""

import keras

from keras_googlenet.layers import clone_with_weights
from keras_googlenet.model_card import OUTPUT_NAME, find_layer

__all__ = ["float32_inference_model", "inference_model"]


def inference_model(model, name=None):
    """The single-output main-head model, sharing `model`'s layers and variables: the aux
    heads are dropped, `inference_model(m)(x)` equals `m(x)["main"]` in inference mode, and
    training either model trains both. `ValueError` if `model` has no main head."""
    if not isinstance(model, keras.Model) or not hasattr(model, "outputs"):
        raise ValueError("`model` must be a functional Keras model such as one built by "
                         f"GoogLeNet(); received {type(model).__name__}.")
    outputs = model.output
    if isinstance(outputs, dict):
        if "main" not in outputs:
            raise ValueError("`model` has dict outputs without a 'main' entry; expected "
                             f"GoogLeNet's {{'main', 'aux1', 'aux2'}}; received keys "
                             f"{sorted(outputs)}.")
        outputs = outputs["main"]
    elif isinstance(outputs, (list, tuple)):
        if (classifier := find_layer(model, OUTPUT_NAME)) is None:
            raise ValueError(f"`model` has {len(outputs)} outputs and no layer named "
                             f"{OUTPUT_NAME!r} to pick the main head from.")
        outputs = classifier.output
    return keras.Model(model.input, outputs, name=name or model.name)


def _float32_layer(layer):
    config = layer.get_config()
    return type(layer).from_config({**config, "dtype": "float32"} if "dtype" in config else config)


def float32_inference_model(model, name=None):
    """A float32 rebuild of `inference_model(model)`, with new variables holding the same
    weight values. Use it for export: a model built under `mixed_bfloat16`/`mixed_float16`
    keeps half-precision ops when merely sliced, and TFLite cannot convert those
    (`'tf.Conv2D' op is neither a custom op nor a flex op`)."""
    return clone_with_weights(inference_model(model, name=name), _float32_layer)
