"""TFLite Metadata for image classifiers, written with `flatbuffers` to the published schema
(`metadata_schema.fbs`): the official writers do not install beside TF 2.21 (docs/mobile.md)."""

import io
import zipfile

import flatbuffers
import numpy as np

from keras_googlenet._compat import tflite_schema

METADATA_BUFFER_NAME = "TFLITE_METADATA"
METADATA_FILE_IDENTIFIER = b"M001"
TFLITE_FILE_IDENTIFIER = b"TFL3"
LABELS_FILE = "labels.txt"
# The oldest parser that understands every field written here (all are schema 1.0.0).
MIN_PARSER_VERSION = "1.0.0"

# Enum and union values of metadata_schema.fbs.
_COLOR_SPACE_RGB = 1
_CONTENT_FEATURE_PROPERTIES = 1
_CONTENT_IMAGE_PROPERTIES = 2
_PROCESS_UNIT_NORMALIZATION = 1
_FILE_TENSOR_AXIS_LABELS = 2


class MetadataError(ValueError):
    """The metadata could not be written (bad arguments or an unreadable model)."""


def _table(builder, fields):
    """One table from `(slot, kind, value)` fields; `None` values are left out."""
    prepend = {"offset": builder.PrependUOffsetTRelativeSlot, "byte": builder.PrependInt8Slot,
               "ubyte": builder.PrependUint8Slot, "uint": builder.PrependUint32Slot}
    builder.StartObject(max(slot for slot, _, _ in fields) + 1)
    for slot, kind, value in fields:
        if value is not None:
            prepend[kind](slot, value, 0)
    return builder.EndObject()


def _offsets(builder, offsets):
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def _floats(builder, values):
    return builder.CreateNumpyVector(np.asarray(values, dtype=np.float32))


def _string(builder, text):
    return None if text is None else builder.CreateString(str(text))


def _stats(builder, low, high):
    # Stats: max 0, min 1
    return _table(builder, [(0, "offset", _floats(builder, [high])),
                            (1, "offset", _floats(builder, [low]))])


def _image_input(builder, mean, std, input_range, size):
    image_size = None if size is None else _table(  # ImageSize: width 0, height 1
        builder, [(0, "uint", int(size[1])), (1, "uint", int(size[0]))])
    # ImageProperties: color_space 0, default_size 1
    properties = _table(builder, [(0, "byte", _COLOR_SPACE_RGB), (1, "offset", image_size)])
    # Content: content_properties_type 0, content_properties 1 (a union takes two slots)
    content = _table(builder, [(0, "ubyte", _CONTENT_IMAGE_PROPERTIES), (1, "offset", properties)])
    # NormalizationOptions: mean 0, std 1; ProcessUnit: options_type 0, options 1
    normalization = _table(builder, [(0, "offset", _floats(builder, mean)),
                                     (1, "offset", _floats(builder, std))])
    unit = _table(builder, [(0, "ubyte", _PROCESS_UNIT_NORMALIZATION),
                            (1, "offset", normalization)])
    units = _offsets(builder, [unit])
    stats = _stats(builder, *input_range)
    # TensorMetadata: name 0, description 1, dimension_names 2, content 3,
    # process_units 4, stats 5, associated_files 6
    return _table(builder, [(0, "offset", _string(builder, "image")),
                            (1, "offset", _string(builder, "RGB image (height, width, 3).")),
                            (3, "offset", content), (4, "offset", units), (5, "offset", stats)])


def _scores_output(builder, output_range):
    properties = _table(builder, [(0, "byte", None)])  # FeatureProperties: no fields
    content = _table(builder, [(0, "ubyte", _CONTENT_FEATURE_PROPERTIES),
                               (1, "offset", properties)])
    # AssociatedFile: name 0, description 1, type 2
    labels = _table(builder, [(0, "offset", _string(builder, LABELS_FILE)),
                              (1, "offset", _string(builder, "Class names, one per line, in the "
                                                             "order of the output scores.")),
                              (2, "byte", _FILE_TENSOR_AXIS_LABELS)])
    files = _offsets(builder, [labels])
    stats = _stats(builder, *output_range) if output_range is not None else None
    return _table(builder, [(0, "offset", _string(builder, "probability")),
                            (1, "offset", _string(builder, "Class scores, one per label.")),
                            (3, "offset", content), (5, "offset", stats), (6, "offset", files)])


class _AlignedBuilder(flatbuffers.Builder):
    """Packs byte vectors 16-byte aligned, as the TFLite schema's `Buffer.data` declares
    (`force_align: 16`) but the generated `Pack` ignores: the interpreter maps weights in place."""

    def CreateNumpyVector(self, x):
        if x.dtype.itemsize != 1:
            return super().CreateNumpyVector(x)
        self.StartVector(1, x.size, 16)
        payload = np.ascontiguousarray(x).tobytes()
        self.head = self.head - len(payload)
        self.Bytes[self.head:self.head + len(payload)] = payload
        self.vectorNumElems = x.size
        return self.EndVector()


def strip_appended_zip(model_bytes):
    """The flatbuffer part of a model file (drops a zip of associated files, if any)."""
    schema = tflite_schema()

    if zipfile.is_zipfile(io.BytesIO(model_bytes)):
        with zipfile.ZipFile(io.BytesIO(model_bytes)) as archive:
            first = min((info.header_offset for info in archive.infolist()), default=None)
        if first:
            model_bytes = model_bytes[:first]
    if not schema.Model.ModelBufferHasIdentifier(model_bytes, 0):
        raise MetadataError("not a TFLite flatbuffer (no 'TFL3' identifier).")
    return model_bytes


def _with_metadata(model_bytes, metadata, labels_file):
    """`model_bytes` (tensors, ops and weights unchanged) with `metadata` as its only
    `TFLITE_METADATA` and `labels_file` as `labels.txt` in an uncompressed zip after it."""
    schema = tflite_schema()

    model_bytes = strip_appended_zip(bytes(model_bytes))
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model_bytes, 0))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata, dtype=np.uint8)
    model.buffers = list(model.buffers or []) + [buffer]
    entry = schema.MetadataT()
    entry.name = METADATA_BUFFER_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or [])
                      if (m.name.decode() if isinstance(m.name, bytes) else m.name)
                      != METADATA_BUFFER_NAME] + [entry]
    builder = _AlignedBuilder(len(model_bytes) + len(metadata) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_FILE_IDENTIFIER)
    packed = io.BytesIO(bytes(builder.Output()))
    with zipfile.ZipFile(packed, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(LABELS_FILE, labels_file)
    return packed.getvalue()


def add_image_classifier_metadata(model_bytes, *, labels, mean, std, input_range,
                                  output_range=(0.0, 1.0), name="googlenet", description=None,
                                  version=None, author=None, license=None, input_size=None):
    """Add image-classifier metadata and a `labels.txt` to a TFLite model (bytes).

    Args:
        model_bytes: the converted TFLite flatbuffer.
        labels: one class name per output score.
        mean, std: `NormalizationOptions`, one value or per channel: a runtime feeds a float
            input `(pixel - mean) / std`, a quantized one raw pixels.
        input_range: `(min, max)` of the model's input values (the input `Stats`).
        output_range: `(min, max)` of the scores, `None` for logits.
        name, description, version, author, license: shown by metadata readers.
        input_size: `(height, width)` recorded as the image's default size.

    Raises:
        MetadataError: bad labels, mean or std, or `model_bytes` not a TFLite flatbuffer.
    """
    labels = [str(label) for label in labels]
    if not labels or any("\n" in label or not label.strip() for label in labels):
        raise MetadataError("`labels` must be non-empty names without line breaks.")
    for arg, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, 3):
            raise MetadataError(f"`{arg}` must have 1 or 3 values; received {values!r}.")
    if any(float(s) == 0 for s in std):
        raise MetadataError(f"`std` must not contain 0; received {std!r}.")
    builder = flatbuffers.Builder(1024)  # the ModelMetadata of one image in, one scores out
    image = _image_input(builder, mean, std, input_range, input_size)
    scores = _scores_output(builder, output_range)
    # SubGraphMetadata: name 0, description 1, input_tensor_metadata 2, output_tensor_metadata 3
    subgraph = _table(builder, [(2, "offset", _offsets(builder, [image])),
                                (3, "offset", _offsets(builder, [scores]))])
    # ModelMetadata: name 0, description 1, version 2, subgraph_metadata 3, author 4,
    # license 5, associated_files 6, min_parser_version 7
    root = _table(builder, [(0, "offset", _string(builder, name)),
                            (1, "offset", _string(builder, description)),
                            (2, "offset", _string(builder, version)),
                            (3, "offset", _offsets(builder, [subgraph])),
                            (4, "offset", _string(builder, author)),
                            (5, "offset", _string(builder, license)),
                            (7, "offset", _string(builder, MIN_PARSER_VERSION))])
    builder.Finish(root, file_identifier=METADATA_FILE_IDENTIFIER)
    labels_file = ("\n".join(labels) + "\n").encode("utf-8")
    return _with_metadata(model_bytes, bytes(builder.Output()), labels_file)
