"""`GoogLeNetImageClassifierPreprocessor`: the image converter inside a KerasHub task."""

import keras
from keras_hub.models import ImageClassifierPreprocessor

from keras_googlenet.hub.backbone import GoogLeNetBackbone
from keras_googlenet.hub.image_converter import GoogLeNetImageConverter


@keras.saving.register_keras_serializable(package="keras_googlenet")
class GoogLeNetImageClassifierPreprocessor(ImageClassifierPreprocessor):
    """Preprocessing of `GoogLeNetImageClassifier`: `(x, y, sample_weight)` with `x` converted.

    `fit`, `evaluate` and `predict` of the classifier run it on raw images; labels and
    sample weights pass through unchanged.

    Args:
        image_converter: a `GoogLeNetImageConverter` (central crop, resize, the variant's
            scaling), or `None` for inputs that are already preprocessed.
        **kwargs: `name` and `dtype`, as for `keras_hub.models.ImageClassifierPreprocessor`.
    """

    backbone_cls = GoogLeNetBackbone
    image_converter_cls = GoogLeNetImageConverter
