"""`GoogLeNetBackbone`: `keras_googlenet.GoogLeNet`'s feature extractor as a KerasHub backbone."""

import contextlib
import warnings

import keras
from keras_hub.models import FeaturePyramidBackbone

from keras_googlenet import spec as spec_lib
from keras_googlenet.checks import fail
from keras_googlenet.googlenet import GoogLeNet
from keras_googlenet.layers import load_weights_or_explain

# Pyramid level -> the layer whose output is the last feature map at stride 2**level.
PYRAMID_LAYERS = {
    "P1": "conv1",
    "P2": "conv2",  # "norm2" in variants with LRN: the map that stage 3 reads
    "P3": "inception_3b",
    "P4": "inception_4e",
    "P5": "inception_5b",
}


@contextlib.contextmanager
def _dtype_policy(dtype):
    """Build under `dtype`: the GoogLeNet builder creates its layers under the global policy."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(previous if dtype is None else keras.dtype_policies.get(dtype))
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


@keras.saving.register_keras_serializable(package="keras_googlenet")
class GoogLeNetBackbone(FeaturePyramidBackbone):
    """GoogLeNet (Inception v1) feature extractor: the stem and Inception blocks 3a to 5b.

    The graph is `GoogLeNet(include_top=False, ...)`'s (same layers, names and weights);
    `pyramid_outputs` maps `"P1"` to `"P5"` to the map 2**n times smaller than the input.
    Inputs are RGB in [-1, 1] (`preprocess_input`), as `GoogLeNetImageConverter` makes them.

    Args:
        variant, widths, width_multiplier: as in `GoogLeNet`.
        image_shape: `(height, width, channels)` of the input; height and width may be
            `None` (any size of at least 32).
        dtype: a dtype policy (name or object) for the layers; `None`: the global policy.
        **kwargs: `name` and `trainable`, as for any `keras_hub.models.Backbone`.

    Example:
    ```python
    backbone = GoogLeNetBackbone(variant="torchvision")
    features = backbone(np.zeros((1, 224, 224, 3)))  # (1, 7, 7, 1024)
    pyramid = keras.Model(backbone.inputs, backbone.pyramid_outputs)
    ```
    """

    def __init__(self, variant="v1", widths=None, width_multiplier=1.0,
                 image_shape=(None, None, 3), dtype=None, **kwargs):
        variant_spec = spec_lib.get_variant(variant)
        if not isinstance(image_shape, (tuple, list)):
            fail("image_shape", "(height, width, channels)", image_shape)
        image_shape = spec_lib.check_input_shape(image_shape, False, variant, arg="image_shape")
        kwargs.setdefault("name", "googlenet_backbone")

        # === Functional model: the builder's own graph, from our input ===
        image_input = keras.Input(shape=image_shape, name="image")
        with _dtype_policy(dtype), warnings.catch_warnings():
            # The throwaway keras.Model only hands over its layers and tensors.
            warnings.simplefilter("ignore")
            features = GoogLeNet(include_top=False, input_tensor=image_input, variant=variant,
                                 widths=widths, width_multiplier=width_multiplier)
        layer_names = {**PYRAMID_LAYERS, **({"P2": "norm2"} if variant_spec.lrn else {})}
        pyramid_outputs = {level: features.get_layer(name).output
                           for level, name in layer_names.items()}
        super().__init__(inputs=image_input, outputs=features.output, dtype=dtype, **kwargs)

        # === Config ===
        self.variant = variant
        self.widths = _widths_config(widths)
        self.width_multiplier = width_multiplier
        self.image_shape = image_shape
        self.pyramid_outputs = pyramid_outputs
        self.data_format = "channels_last"

    def get_config(self):
        return {**super().get_config(), "variant": self.variant, "widths": self.widths,
                "width_multiplier": self.width_multiplier, "image_shape": self.image_shape}

    def load_weights(self, filepath, *args, **kwargs):
        """`keras.Model.load_weights`, with an error naming the architecture on a mismatch."""
        load_weights_or_explain(
            lambda: super(GoogLeNetBackbone, self).load_weights(filepath, *args, **kwargs),
            f"{filepath} does not hold the weights of this {type(self).__name__} "
            f"(variant={self.variant!r}, width_multiplier={self.width_multiplier!r}, "
            f"widths={self.widths!r}): it was saved from another architecture, variant or "
            "width.")


def _widths_config(widths):
    """`widths` in JSON form (lists, not tuples), so that configs round-trip unchanged."""
    if not isinstance(widths, dict):
        return widths  # None, or refused by `GoogLeNet` already
    return {str(block): dict(value) if isinstance(value, dict) else [int(v) for v in value]
            for block, value in widths.items()}
