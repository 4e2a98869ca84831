"""Dropping the auxiliary heads: from the multi-output training model to the model you deploy."""

from __future__ import annotations

import keras

from keras_googlenet.model_card import OUTPUT_NAME as MAIN_CLASSIFIER

__all__ = ["MAIN_CLASSIFIER", "float32_inference_model", "inference_model"]


def _main_output(model):
    if not isinstance(model, keras.Model) or not hasattr(model, "outputs"):
        raise ValueError("`model` must be a functional Keras model such as one built by "
                         f"GoogLeNet(); received {type(model).__name__}.")
    outputs = model.output
    if isinstance(outputs, dict):
        if "main" not in outputs:
            raise ValueError("`model` has dict outputs without a 'main' entry; expected "
                             f"GoogLeNet's {{'main', 'aux1', 'aux2'}}; received keys "
                             f"{sorted(outputs)}.")
        return outputs["main"]
    if isinstance(outputs, (list, tuple)):
        try:
            return model.get_layer(MAIN_CLASSIFIER).output
        except ValueError:
            raise ValueError(f"`model` has {len(outputs)} outputs and no layer named "
                             f"{MAIN_CLASSIFIER!r} to pick the main head from.") from None
    return outputs


def inference_model(model, name=None):
    """The single-output main-head model, sharing `model`'s layers and variables.

    The auxiliary heads are dropped, so the parameter count is the main-only count and
    `inference_model(m)(x)` equals `m(x)["main"]` in inference mode. Training either
    model trains both: they hold the same variable objects.
    """
    main = _main_output(model)
    return keras.Model(model.input, main, name=name or model.name)


def _float32_layer(layer):
    config = layer.get_config()
    if "dtype" in config:
        config["dtype"] = "float32"
    return layer.__class__.from_config(config)


def float32_inference_model(model, name=None):
    """A float32 rebuild of `inference_model(model)` with copied weight values.

    Use it for export: a model built under `mixed_bfloat16`/`mixed_float16` keeps
    half-precision ops when merely sliced, and TFLite cannot convert those
    (`'tf.Conv2D' op is neither a custom op nor a flex op`). The result owns new
    variables; the weight values are identical.
    """
    pruned = inference_model(model, name=name)
    rebuilt = keras.models.clone_model(pruned, clone_function=_float32_layer)
    for source, target in zip(pruned.layers, rebuilt.layers, strict=True):
        if source.name != target.name:  # clone_model keeps order; guard against surprises
            raise RuntimeError(f"layer order changed while cloning: {source.name} vs {target.name}")
        target.set_weights(source.get_weights())
    return rebuilt
