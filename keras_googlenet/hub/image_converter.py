"""`GoogLeNetImageConverter`: raw pixels to a GoogLeNet variant's input, as in evaluation."""

import keras
from keras import ops
from keras_hub.layers import ImageConverter

from keras_googlenet import spec as spec_lib
from keras_googlenet.checks import fraction, size_pair
from keras_googlenet.hub.backbone import GoogLeNetBackbone
from keras_googlenet.preprocessing import EVAL_CROP_FRACTION, MODE_SCALE_OFFSET, central_crop_box

# Set from `variant` and `crop_fraction`, never passed in.
_DERIVED_ARGUMENTS = ("scale", "offset", "crop_to_aspect_ratio", "pad_to_aspect_ratio")


class CentralCropResize(keras.layers.Layer):
    """Central crop of `crop_fraction` of each side, resize to (height, width), clip to [0, 255]:
    `preprocessing.resize_pixels` as a layer, the crop box computed in float32 like it.
    The converter's `image_size` setter sets `height` and `width`, read at call time."""

    def __init__(self, height, width, crop_fraction, interpolation, antialias, **kwargs):
        super().__init__(**kwargs)
        self.height = height
        self.width = width
        self.crop_fraction = crop_fraction
        self.interpolation = interpolation
        self.antialias = antialias

    def call(self, images):
        x = ops.cast(images, self.compute_dtype)
        if self.crop_fraction < 1.0:
            shape = ops.shape(x)
            top, left, crop_h, crop_w = central_crop_box(shape[-3], shape[-2], self.crop_fraction)
            x = x[..., top:top + crop_h, left:left + crop_w, :]
        x = ops.image.resize(x, (self.height, self.width), interpolation=self.interpolation,
                             antialias=self.antialias)
        return ops.clip(x, 0.0, 255.0)


@keras.saving.register_keras_serializable(package="keras_googlenet")
class GoogLeNetImageConverter(ImageConverter):
    """Raw RGB pixels in [0, 255] (any size) to the input of a GoogLeNet variant.

    The training pipeline's evaluation transform (central crop, resize, the variant's
    scaling): on the same pixels it equals `keras_googlenet.preprocessing.resize_pixels`.

    Args:
        image_size: `(height, width)` or one int for a square, at least the variant's
            minimum input size; `None` skips the crop and resize (images must then
            already have the model's size).
        variant: the GoogLeNet variant whose preprocessing to apply.
        crop_fraction: fraction of each side kept by the central crop, in (0, 1] (0.875,
            the Inception recipe; 1.0 resizes the whole image).
        interpolation: as in `keras.layers.Resizing` (`"bilinear"`, as in training).
        antialias: antialias when downsampling (off, as in training).
        **kwargs: `data_format`, `bounding_box_format`, `name` and `dtype`, as for
            `keras_hub.layers.ImageConverter`.
    """

    backbone_cls = GoogLeNetBackbone

    def __init__(self, image_size=(224, 224), variant="v1", crop_fraction=EVAL_CROP_FRACTION,
                 interpolation="bilinear", antialias=False, **kwargs):
        # Every variant's mode is "tf" today; `metadata.json` records it as "scaling".
        scale, offset = MODE_SCALE_OFFSET[spec_lib.get_variant(variant).preprocessing]
        if given := [key for key in _DERIVED_ARGUMENTS if key in kwargs]:
            raise ValueError(f"GoogLeNetImageConverter sets {given} itself (from `variant` and "
                             "`crop_fraction`); remove them.")
        image_size = size_pair("image_size", image_size, spec_lib.MIN_INPUT_SIZE)
        crop_fraction = fraction("crop_fraction", crop_fraction)
        super().__init__(image_size=image_size, scale=scale, offset=offset,
                         crop_to_aspect_ratio=False, interpolation=interpolation,
                         antialias=antialias, **kwargs)
        if self.data_format != "channels_last":
            raise ValueError("GoogLeNetImageConverter supports data_format='channels_last' only.")
        # Replaces the base class' resize (which crops to the aspect ratio) with training's.
        self.resizing = CentralCropResize(
            *(image_size or (None, None)), crop_fraction, interpolation, antialias,
            dtype=self.dtype_policy, name="central_crop_resize")
        self.variant = variant
        self.crop_fraction = crop_fraction

    def get_config(self):
        config = {k: v for k, v in super().get_config().items() if k not in _DERIVED_ARGUMENTS}
        return {**config, "variant": self.variant, "crop_fraction": self.crop_fraction}


