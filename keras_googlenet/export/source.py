"""The model to export, and the images to calibrate and verify it with."""

import zipfile

import keras
import numpy as np

from keras_googlenet.checks import size_pair
from keras_googlenet.heads import float32_inference_model, inference_model
from keras_googlenet.model_card import INPUT_NAME, describe_source, resolve_source
from keras_googlenet.preprocessing import preprocess_in_model, resize_pixels
from keras_googlenet.quantization import is_quantize_aware
from keras_googlenet.runtime import load_keras_model

__all__ = ["is_quantize_aware_source", "load_source", "take_images", "to_model_input",
           "to_pixels", "with_preprocessing"]


def load_source(source, input_size=None):
    """The float32 single-output inference model of `source` (a `.keras` file, run directory or
    `keras.Model`; a `quantize_aware` one stays one) and its card fields; `ValueError` for an
    `input_size` that is bad, missing (the model takes any size) or not its fixed one."""
    if isinstance(source, keras.Model):
        path, run_info, model = None, {}, source
    else:
        path, run_info = resolve_source(source)
        model = load_keras_model(path, "source")
    model = inference_model(model) if is_quantize_aware(model) else float32_inference_model(model)
    if input_size is not None or model.input_shape[1] is None or model.input_shape[2] is None:
        config_size = ((run_info.get("config") or {}).get("model") or {}).get("input_size")
        size = size_pair("input_size", input_size if input_size is not None else config_size)
        if size is None:
            raise ValueError("the model takes images of any size; pass `input_size` (CLI: "
                             "--input-size), e.g. 224, to fix the exported input shape.")
        if model.input_shape[1] is not None and tuple(model.input_shape[1:3]) != size:
            raise ValueError(f"`input_size={input_size!r}` does not match the model's fixed "
                             f"input {tuple(model.input_shape[1:3])}.")
        if model.input_shape[1] is None:
            # A flat copy with a fixed input (not a nested model: the card reads the layers).
            fixed = keras.models.clone_model(
                model, input_tensors=keras.Input((*size, 3), name=INPUT_NAME))
            fixed.set_weights(model.get_weights())
            model = fixed
    return model, describe_source(path, model, run_info)


def is_quantize_aware_source(source):
    """Whether `source` is a `quantize_aware` model, read from a file's config without loading
    it; False for a source that does not exist (`load_source` explains it)."""
    if isinstance(source, keras.Model):
        return is_quantize_aware(source)
    try:
        path, _ = resolve_source(source)
        with zipfile.ZipFile(path) as archive:
            config = archive.read("config.json").decode("utf-8", "replace")
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return False
    return '"keras_googlenet>ActivationQuantizer"' in config


def take_images(data, limit, size, what):
    """Up to `limit` float32 model-ready images (and labels if present) from `data`: an array,
    `(images, labels)`, a `tf.data.Dataset` (batched or not) or batches; integers are pixels."""
    import tensorflow as tf

    if isinstance(data, np.ndarray) or (isinstance(data, tuple) and len(data) == 2
                                        and not isinstance(data[0], (int, float))):
        chunks = [data]
    else:
        try:
            chunks = iter(data)
        except TypeError:
            raise ValueError(f"`{what}` must be an array of images, an (images, labels) tuple, a "
                             "tf.data.Dataset or an iterable of batches; received "
                             f"{type(data).__name__}.") from None
    images, labels = [], []
    for chunk in chunks:
        x, y = chunk if isinstance(chunk, (tuple, list)) and len(chunk) == 2 else (chunk, None)
        x = np.asarray(x)
        x = x[None] if x.ndim == 3 else x  # one image, as a tf.data.Dataset not batched gives
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"`{what}` must hold RGB images (..., H, W, 3); got shape {x.shape}.")
        if not np.issubdtype(x.dtype, np.floating):  # raw pixels: evaluation preprocessing
            x = resize_pixels(x, size)
        elif tuple(x.shape[1:3]) != tuple(size):
            x = tf.image.resize(x, size, method="bilinear").numpy()
        images.append(x.astype("float32"))
        labels.append(None if y is None else np.asarray(y).reshape(-1).astype("int64"))
        if sum(map(len, images)) >= limit:
            break
    if not images:
        raise ValueError(f"`{what}` is empty.")
    x = np.concatenate(images)[:limit]
    y = None if any(v is None for v in labels) else np.concatenate(labels)[:limit]
    return x, y


def with_preprocessing(model):
    """`model` (which takes preprocessed images) behind layers that preprocess RGB pixels."""
    pixels = keras.Input(model.input_shape[1:], name=INPUT_NAME)
    return keras.Model(pixels, model(preprocess_in_model(pixels)), name=model.name)


def to_pixels(x):
    """Preprocessed images (x / 127.5 - 1) as the RGB pixels in [0, 255] they come from."""
    return (np.asarray(x, dtype="float32") + 1.0) * 127.5


def to_model_input(x, card):
    """Preprocessed images (x / 127.5 - 1) as the artefact of `card` takes them."""
    return to_pixels(x) if card["preprocessing"]["in_model"] else x
