"""GoogLeNet (Inception v1) for Keras 3. The top level holds what `keras.applications` users
expect; the rest is in submodules (`.export`, `.runtime`, `.weights`, `.spec`, ...), and
`import keras_googlenet.hub` registers the KerasHub classes, before `from_preset`."""

from keras_googlenet._version import __version__  # noqa: F401
from keras_googlenet.complexity import count_macs, count_params
from keras_googlenet.googlenet import GoogLeNet
from keras_googlenet.heads import float32_inference_model, inference_model
from keras_googlenet.losses import DEFAULT_LOSS_WEIGHTS, compile_googlenet, head_targets
from keras_googlenet.preprocessing import decode_predictions, preprocess_input
from keras_googlenet.spec import ENDPOINTS, VARIANTS

__all__ = ["DEFAULT_LOSS_WEIGHTS", "ENDPOINTS", "VARIANTS", "GoogLeNet", "compile_googlenet",
           "count_macs", "count_params", "decode_predictions", "float32_inference_model",
           "head_targets", "inference_model", "preprocess_input"]
