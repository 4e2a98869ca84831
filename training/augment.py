"""Inception-style image augmentation in TensorFlow ops (runs inside tf.data).

Training: a random crop covering 8 %-100 % of the image area with an aspect ratio
in [3/4, 4/3] (Szegedy et al. 2014, Section 6), resized to the input size, a random
horizontal flip and photometric distortions. Evaluation: a central crop of 87.5 %
of each side, resized. Every random op is stateless and takes an explicit seed, so
a pipeline's augmentation is a pure function of the seeds it is fed.

Images go in as uint8 (or float in [0, 255]) with shape (height, width, 3) and come
out as float32 in [0, 255]; scaling for the model is `preprocess_input`'s job.
"""

from __future__ import annotations

import tensorflow as tf

from keras_googlenet import checks
from keras_googlenet.preprocessing import EVAL_CROP_FRACTION, eval_crop_resize

# The paper's crop distribution.
AREA_RANGE = (0.08, 1.0)
ASPECT_RATIO_RANGE = (3.0 / 4.0, 4.0 / 3.0)
# Attempts before `sample_distorted_bounding_box` falls back to the whole image.
MAX_ATTEMPTS = 10

# Photometric distortions of the Inception training recipe (TF-slim `distort_color`).
BRIGHTNESS_MAX_DELTA = 32.0 / 255.0
SATURATION_RANGE = (0.5, 1.5)
HUE_MAX_DELTA = 0.2
CONTRAST_RANGE = (0.5, 1.5)


def _as_seed(seed):
    """A stateless-op seed: a shape-[2] int tensor, from an int or a pair."""
    seed = tf.convert_to_tensor(seed)
    if not seed.dtype.is_integer:
        raise ValueError(f"`seed` must be an int or a pair of ints; received dtype {seed.dtype}.")
    seed = tf.cast(seed, tf.int64)
    if seed.shape.rank == 0:
        return tf.stack([seed, tf.constant(0, tf.int64)])
    if seed.shape.rank != 1 or seed.shape[0] != 2:
        raise ValueError(f"`seed` must be an int or a pair of ints; received shape {seed.shape}.")
    return seed


def check_area_range(area_range):
    """Validate a crop `area_range`; returns it as a pair of floats."""
    try:
        low, high = (float(v) for v in area_range)
    except (TypeError, ValueError):
        low = high = float("nan")
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(
            "`area_range` must be a pair (min, max) of area fractions with "
            f"0 < min <= max <= 1; received area_range={area_range!r}."
        )
    return low, high


def inception_crop_box(image_shape, seed, area_range=AREA_RANGE):
    """Sample the training crop window of an image.

    Args:
        image_shape: `(height, width, channels)` of the image (a tensor or list).
        seed: an int or a shape-[2] int tensor, for the stateless sampler.
        area_range: bounds of the crop's share of the image area; the paper's
            (0.08, 1.0) by default. Small images such as 8x8 digits may want more.

    Returns:
        `(offset_height, offset_width, target_height, target_width)`, int32 scalars.
        The window covers `area_range` of the image area (exactly, in pixels); its
        aspect ratio width/height is in [3/4, 4/3] up to rounding the width to
        whole pixels. If no window is found in 10 attempts (tiny images), the
        whole image is used, as in the Inception recipe.
    """
    image_shape = tf.cast(tf.convert_to_tensor(image_shape), tf.int32)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        image_shape,
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, shape=(1, 1, 4)),
        seed=_as_seed(seed),
        min_object_covered=0.0,  # the whole-image box; `area_range` alone bounds the area
        aspect_ratio_range=ASPECT_RATIO_RANGE,
        area_range=check_area_range(area_range),
        max_attempts=MAX_ATTEMPTS,
        use_image_if_no_bounding_boxes=True,
    )
    return begin[0], begin[1], size[0], size[1]


def inception_crop(image, size, seed, area_range=AREA_RANGE):
    """The Inception training crop: a random window (see `inception_crop_box`) resized.

    Args:
        image: uint8 or float tensor of shape (height, width, 3), values in [0, 255].
        size: output side length in pixels.
        seed: an int or a shape-[2] int tensor.
        area_range: bounds of the crop's share of the image area.

    Returns:
        float32 tensor of shape (size, size, 3) in [0, 255].
    """
    checks.positive_int("size", size)
    image = tf.convert_to_tensor(image)
    offset_y, offset_x, height, width = inception_crop_box(tf.shape(image), seed, area_range)
    image = tf.image.crop_to_bounding_box(image, offset_y, offset_x, height, width)
    return _resize(image, size)


def central_crop(image, size, fraction=EVAL_CROP_FRACTION):
    """The evaluation crop: the central `fraction` of each side, resized to `size`.

    Args:
        image: uint8 or float tensor of shape (height, width, 3), values in [0, 255].
        size: output side length in pixels.
        fraction: share of the height and of the width kept, in (0, 1].

    Returns:
        float32 tensor of shape (size, size, 3) in [0, 255].
    """
    checks.positive_int("size", size)
    fraction = checks.fraction("fraction", fraction)
    image = eval_crop_resize(image, (size, size), fraction)
    image.set_shape((size, size, 3))
    return image


def distort_color(image, seed):
    """Random brightness, saturation, hue and contrast (the Inception recipe's order 0).

    Args:
        image: float tensor (height, width, 3) in [0, 255].
        seed: an int or a shape-[2] int tensor.

    Returns:
        float32 tensor of the same shape, clipped to [0, 255]. On grayscale images
        replicated to RGB, saturation and hue leave the pixels gray (their HSV
        saturation is 0), so only brightness and contrast change them.
    """
    seeds = tf.random.experimental.stateless_split(_as_seed(seed), num=4)
    image = tf.cast(image, tf.float32) / 255.0  # the HSV ops expect [0, 1]
    image = tf.image.stateless_random_brightness(image, BRIGHTNESS_MAX_DELTA, seed=seeds[0])
    image = tf.image.stateless_random_saturation(image, *SATURATION_RANGE, seed=seeds[1])
    image = tf.image.stateless_random_hue(image, HUE_MAX_DELTA, seed=seeds[2])
    image = tf.image.stateless_random_contrast(image, *CONTRAST_RANGE, seed=seeds[3])
    return tf.clip_by_value(image, 0.0, 1.0) * 255.0


def train_augment(image, size, seed, flip=True, distort=True, area_range=AREA_RANGE):
    """Crop, resize, optionally flip and distort one training image.

    Returns:
        float32 tensor (size, size, 3) in [0, 255].
    """
    crop_seed, flip_seed, color_seed = tf.unstack(
        tf.random.experimental.stateless_split(_as_seed(seed), num=3)
    )
    image = inception_crop(image, size, crop_seed, area_range)
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    if distort:
        image = distort_color(image, color_seed)
    return tf.clip_by_value(image, 0.0, 255.0)


def _resize(image, size):
    image = tf.image.resize(image, (size, size), method="bilinear")
    image = tf.clip_by_value(image, 0.0, 255.0)  # bilinear can overshoot float inputs slightly
    image.set_shape((size, size, 3))
    return image
