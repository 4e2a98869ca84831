"""Export a GoogLeNet to SavedModel, TFLite and ONNX, each verified against Keras (docs/export.md).
The other names live in the submodule that owns them (`formats`, `convert`, `verify`, ...)."""

from keras_googlenet.export.core import export_model
from keras_googlenet.export.formats import FORMATS
from keras_googlenet.export.report import ArtifactResult, ExportError, ExportReport

__all__ = ["ArtifactResult", "ExportError", "ExportReport", "FORMATS", "export_model"]
