"""Export a GoogLeNet to SavedModel, TFLite (fp32/fp16/dynamic-range/int8) and ONNX, verified.

    from keras_googlenet.export import export_model
    report = export_model("saved_models/run1", "exports/run1",
                          formats=["savedmodel", "tflite-fp32", "tflite-int8", "onnx"],
                          calibration_data=train_images, verification_data=val_images)

Whatever the source (a `.keras` training model with aux heads, an inference model, a
run directory, or a `keras.Model`), what is exported is the single-output float32
inference model (`float32_inference_model`): aux heads pruned, mixed precision undone.

Every artefact is converted in a staging directory beside the output directory, verified
against Keras on the same inputs, and given its sidecar model card `<artefact>.json`
(`keras_googlenet.model_card`, read by `keras_googlenet.runtime.load_predictor`); only then
is the stage swapped in with one rename, so each artefact appears together with its card,
a failed conversion or a missed verification bound never replaces a good artefact, and the
user's other files in the output directory stay (docs/export.md, "Publishing").

One module per role: `formats` (formats, bounds, argument checks), `source` (the model
and its images), `convert` (one converter per format), `verify`, `cards` (model cards,
labels, TFLite metadata), `publish` (atomic writes), `core` (`export_model`),
`tflite_metadata` and `tflite_gpu` (what phones read), `experimental`
(`optimize_for_inference`).
"""

from keras_googlenet.export.cards import gpu_warning, read_labels
from keras_googlenet.export.convert import convert_onnx, convert_tflite, write_savedmodel
from keras_googlenet.export.core import export_model
from keras_googlenet.export.experimental import ChannelSplit, optimize_for_inference
from keras_googlenet.export.formats import (
    DEFAULT_BOUNDS,
    DEFAULT_INT8_IO,
    FLOAT_FORMATS,
    FORMATS,
    INT8_IO_TYPES,
    MIN_ONNX_OPSET,
    UINT8_SIGNATURE,
    check_destination,
    validate_export_arguments,
)
from keras_googlenet.export.publish import (
    is_disk_full,
    publish,
    unwritable,
    write_json_atomic,
)
from keras_googlenet.export.report import (
    ArtifactResult,
    ExportError,
    ExportReport,
    format_verification,
)
from keras_googlenet.export.source import load_source, to_model_input, with_preprocessing
from keras_googlenet.export.verify import verify_artifact
from keras_googlenet.model_card import (
    INPUT_NAME,
    OUTPUT_NAME,
    PREPROCESSING,
    describe_source,
    has_preprocessing_layer,
    infer_variant,
    infer_widths,
    preprocessing_card,
    resolve_source,
)

__all__ = [
    "ArtifactResult", "ChannelSplit", "DEFAULT_BOUNDS", "DEFAULT_INT8_IO", "ExportError",
    "ExportReport", "FLOAT_FORMATS", "FORMATS", "INPUT_NAME", "INT8_IO_TYPES",
    "MIN_ONNX_OPSET", "OUTPUT_NAME", "PREPROCESSING", "UINT8_SIGNATURE", "check_destination",
    "convert_onnx", "convert_tflite", "describe_source", "export_model", "format_verification",
    "gpu_warning", "has_preprocessing_layer", "infer_variant", "infer_widths", "is_disk_full",
    "load_source", "optimize_for_inference", "preprocessing_card", "publish", "read_labels",
    "resolve_source", "to_model_input", "unwritable", "validate_export_arguments",
    "verify_artifact", "with_preprocessing", "write_json_atomic", "write_savedmodel",
]
