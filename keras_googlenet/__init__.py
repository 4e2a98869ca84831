"""GoogLeNet (Inception v1) for Keras 3: builder, aux-head training helpers, pruning, export."""

from keras_googlenet.export import ExportError, export_model, optimize_for_inference
from keras_googlenet.googlenet import (
    GoogLeNet,
    aux_head,
    conv_block,
    inception_block,
    set_batch_norm_momentum,
)
from keras_googlenet.layers import FusedBatchNormalization, LocalResponseNormalization
from keras_googlenet.losses import (
    DEFAULT_LOSS_WEIGHTS,
    SparseCategoricalCrossentropy,
    compile_googlenet,
    head_targets,
)
from keras_googlenet.preprocessing import decode_predictions, preprocess_input
from keras_googlenet.profile import count_macs, count_params, format_profile, model_profile
from keras_googlenet.pruning import float32_inference_model, inference_model
from keras_googlenet.runtime import load_predictor
from keras_googlenet.spec import ENDPOINTS, INCEPTION_WIDTHS, VARIANTS
from keras_googlenet.weights import from_torchvision

__version__ = "0.1.0"

# KerasHub presets (keras_googlenet.hub) load after `import keras_googlenet`, without making
# this import load keras_hub: registered now if keras_hub is imported, else when it is.
from keras_googlenet import _hub_registration  # noqa: E402

_hub_registration.register_when_keras_hub_is_imported()

__all__ = [
    "DEFAULT_LOSS_WEIGHTS",
    "ExportError",
    "ENDPOINTS",
    "INCEPTION_WIDTHS",
    "VARIANTS",
    "FusedBatchNormalization",
    "GoogLeNet",
    "LocalResponseNormalization",
    "SparseCategoricalCrossentropy",
    "aux_head",
    "compile_googlenet",
    "conv_block",
    "count_macs",
    "count_params",
    "decode_predictions",
    "export_model",
    "float32_inference_model",
    "format_profile",
    "from_torchvision",
    "head_targets",
    "inception_block",
    "inference_model",
    "load_predictor",
    "model_profile",
    "optimize_for_inference",
    "preprocess_input",
    "set_batch_norm_momentum",
]
