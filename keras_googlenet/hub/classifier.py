"""`GoogLeNetImageClassifier`: GoogLeNet's main classifier as a KerasHub `ImageClassifier`."""

import keras
from keras_hub.models import ImageClassifier

from keras_googlenet.hub.backbone import GoogLeNetBackbone
from keras_googlenet.hub.preprocessor import GoogLeNetImageClassifierPreprocessor


@keras.saving.register_keras_serializable(package="keras_googlenet")
class GoogLeNetImageClassifier(ImageClassifier):
    """KerasHub's `ImageClassifier` on a `GoogLeNetBackbone`, with its preprocessing inside.

    The arguments are `keras_hub.models.ImageClassifier`'s. Its head computes GoogLeNet's
    main one, so weights move by layer name (`image_classifier_from_googlenet`).

    Example:
    ```python
    import keras_googlenet.hub  # registers the classes, for from_preset
    classifier = keras_hub.models.ImageClassifier.from_preset("path/to/preset", num_classes=5)
    classifier.backbone.trainable = False
    classifier.fit(uint8_images, labels, epochs=3)
    ```
    """

    backbone_cls = GoogLeNetBackbone
    preprocessor_cls = GoogLeNetImageClassifierPreprocessor
