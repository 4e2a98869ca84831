"""Input preprocessing and ImageNet label decoding (class index shipped in the package)."""

import functools
import json
from importlib import resources

import numpy as np
from keras import layers, ops
from keras.applications import imagenet_utils

from keras_googlenet import spec as spec_lib
from keras_googlenet.checks import fail, one_of
from keras_googlenet.scores import top_indices

__all__ = ["EVAL_CROP_FRACTION", "MODE_SCALE_OFFSET", "PREPROCESSING_LAYER", "PREPROCESSING_MODES",
           "central_crop_box", "decode_predictions", "eval_crop_resize", "imagenet_class_index",
           "imagenet_labels", "preprocess_in_model", "preprocess_input", "resize_pixels"]

PREPROCESSING_MODES = ("tf", "torch", "caffe")
# Evaluation crop of the Inception recipe: the central 87.5 % of each side, then resize.
# Shared by the training pipeline, export's uint8 signature and googlenet-predict.
EVAL_CROP_FRACTION = 0.875
PREPROCESSING_LAYER = "preprocessing"

# Keras' "torch" and "caffe" constants (keras.applications.imagenet_utils), RGB order.
_TORCH_MEAN, _TORCH_STD = np.array((0.485, 0.456, 0.406)), np.array((0.229, 0.224, 0.225))
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# The modes that are one `x * scale + offset` on RGB in [0, 255] (a `Rescaling` layer).
MODE_SCALE_OFFSET = {
    "tf": (1.0 / 127.5, -1.0),
    "torch": ((1.0 / (255.0 * _TORCH_STD)).tolist(), (-_TORCH_MEAN / _TORCH_STD).tolist()),
}


def central_crop_box(height, width, fraction=EVAL_CROP_FRACTION, ops=ops):
    """(top, left, height, width) of the central `fraction` of each side, at least one pixel:
    the project's one crop arithmetic, in float32 wherever it runs (`ops`: `tf` in a `tf.data`
    graph, `keras.ops`, the default, in a layer or on plain ints)."""
    crop_h = ops.maximum(1, ops.cast(ops.cast(height, "float32") * fraction, "int32"))
    crop_w = ops.maximum(1, ops.cast(ops.cast(width, "float32") * fraction, "int32"))
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def eval_crop_resize(images, size, fraction=EVAL_CROP_FRACTION):
    """The evaluation transform as TensorFlow ops: central crop, bilinear resize, clip; the
    one behind training's evaluation, export's `serving_uint8` signature and `resize_pixels`.

    Args:
        images: a tensor (H, W, 3) or (N, H, W, 3) of RGB in [0, 255], any size and dtype.
        size: the (height, width) to resize to.
        fraction: the share of each side the central crop keeps (1.0: no crop).

    Returns:
        float32 pixels in [0, 255] of `size`.
    """
    import tensorflow as tf

    images = tf.cast(images, tf.float32)
    if fraction < 1.0:
        shape = tf.shape(images)
        images = tf.image.crop_to_bounding_box(
            images, *central_crop_box(shape[-3], shape[-2], fraction, ops=tf))
    images = tf.image.resize(images, tuple(size), method="bilinear")
    return tf.clip_by_value(images, 0.0, 255.0)  # bilinear can overshoot slightly


def resize_pixels(pixels, size, central_crop=EVAL_CROP_FRACTION, scale=True):
    """RGB pixels in [0, 255] (one image (H, W, 3), a batch (N, H, W, 3) or a list of images)
    -> float32 `size` in [-1, 1]: `eval_crop_resize`, then `x / 127.5 - 1`; with `scale=False`
    still pixels in [0, 255], for a model with its preprocessing inside. A batch, or a list of
    images of one size, is resized in one call."""
    if isinstance(pixels, (list, tuple)) and len({np.shape(p) for p in pixels}) > 1:
        return np.stack([resize_pixels(p, size, central_crop, scale) for p in pixels])
    pixels = np.asarray(pixels, dtype="float32")
    batch = pixels if pixels.ndim == 4 else pixels[None]
    resized = _traced_eval_crop_resize(tuple(size), central_crop)(batch).numpy()
    resized = resized if pixels.ndim == 4 else resized[0]
    return resized / 127.5 - 1.0 if scale else resized


@functools.cache
def _traced_eval_crop_resize(size, fraction):
    """`eval_crop_resize` as one graph for batches of any size: several times faster than
    its ops run eagerly, and traced once per output size and crop."""
    import tensorflow as tf

    return tf.function(functools.partial(eval_crop_resize, size=size, fraction=fraction),
                       input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])


def preprocess_input(x, variant="v1", mode=None, data_format=None):
    """Preprocess RGB images in [0, 255] for a GoogLeNet variant.

    Every variant expects mode `"tf"`: pixels scaled to [-1, 1] (`x / 127.5 - 1`).
    That is what torchvision's ported weights need (their `transform_input=True`
    folds ImageNet normalisation into `(x / 255 - 0.5) / 0.5`) and what the
    training pipelines here use. `mode="caffe"` (BGR, mean subtraction) would suit
    the BVLC Caffe weights of the paper's model; `mode="torch"` ImageNet mean/std.

    Args:
        x: float array or tensor of shape (..., height, width, 3), RGB in [0, 255].
        variant: a GoogLeNet variant name; selects its preprocessing.
        mode: override the variant's mode with one of "tf", "torch", "caffe".
        data_format: as in `keras.applications`.
    """
    mode = spec_lib.get_variant(variant).preprocessing if mode is None else mode
    one_of("mode", mode, PREPROCESSING_MODES)
    if isinstance(x, np.ndarray) and not np.issubdtype(x.dtype, np.floating):
        x = x.astype("float32")  # keras' preprocessing works in place on float arrays only
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode=mode)


def preprocess_in_model(x, mode="tf", name=PREPROCESSING_LAYER):
    """`preprocess_input(x, mode=mode)` as Keras layers on a tensor of RGB in [0, 255].

    Built from Keras' own layers only, so a model that contains them loads with
    `safe_mode=True` and without this package. `"tf"` and `"torch"` are one
    `Rescaling`; `"caffe"` (RGB -> BGR, then the ImageNet mean subtracted) is a frozen
    1x1 convolution whose kernel swaps the channels and whose bias is minus the mean:
    exact in float32, and a plain CONV_2D for every converter and runtime.
    """
    one_of("mode", mode, PREPROCESSING_MODES)
    if mode in MODE_SCALE_OFFSET:
        scale, offset = MODE_SCALE_OFFSET[mode]
        return layers.Rescaling(scale, offset=offset, name=name)(x)
    conv = layers.Conv2D(3, 1, name=name, trainable=False)
    y = conv(x)
    conv.set_weights([np.eye(3, dtype="float32")[::-1].reshape(1, 1, 3, 3),
                      -np.asarray(_CAFFE_MEAN_BGR, dtype="float32")])
    return y


@functools.cache
def imagenet_class_index():
    """`{index: (wordnet_id, class_name)}` for the 1000 ImageNet-1k classes."""
    text = resources.files("keras_googlenet").joinpath("imagenet_class_index.json").read_text()
    return {int(k): tuple(v) for k, v in json.loads(text).items()}


def imagenet_labels():
    """The 1000 ImageNet-1k class names in class order (a model card's `labels`)."""
    return [name for _, (_, name) in sorted(imagenet_class_index().items())]


def decode_predictions(preds, top=5):
    """Decode ImageNet predictions: per image a list of `(wordnet_id, class_name, score)`.

    Works offline: the class index ships with the package. Ranked as `Predictor.top_k`
    and `googlenet-predict` rank (`scores.top_indices`): ties to the lower class index.
    """
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError("`decode_predictions` expects a batch of ImageNet predictions of shape "
                         f"(samples, 1000); received shape {preds.shape}.")
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= 1000:
        fail("top", "an int in [1, 1000]", top)
    index = imagenet_class_index()
    return [[(*index[int(i)], float(row[i])) for i in best]
            for row, best in zip(preds, top_indices(preds, top), strict=True)]
