"""GoogLeNet for KerasHub (docs/keras_hub.md). Importing it registers the classes, as
`from_preset` needs: `import keras_googlenet.hub`, then `ImageClassifier.from_preset(DIR)`."""

try:
    import keras_hub  # noqa: F401
except ImportError as error:  # the core library works without it; say which extra to install
    raise ImportError(
        "keras_googlenet.hub needs KerasHub, an optional dependency: "
        "`pip install 'keras-googlenet[hub]'` (keras-hub>=0.32)."
    ) from error

from keras_googlenet.hub.backbone import GoogLeNetBackbone
from keras_googlenet.hub.classifier import GoogLeNetImageClassifier
from keras_googlenet.hub.image_converter import GoogLeNetImageConverter
from keras_googlenet.hub.preprocessor import GoogLeNetImageClassifierPreprocessor
from keras_googlenet.hub.presets import (
    PRESET_FILES,
    check_preset,
    check_preset_destination,
    image_classifier_from_googlenet,
    write_preset,
    write_torchvision_preset,
)

__all__ = [
    "PRESET_FILES", "GoogLeNetBackbone", "GoogLeNetImageClassifier",
    "GoogLeNetImageClassifierPreprocessor", "GoogLeNetImageConverter", "check_preset",
    "check_preset_destination", "image_classifier_from_googlenet", "write_preset",
    "write_torchvision_preset",
]
