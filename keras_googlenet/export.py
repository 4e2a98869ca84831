"""Export a GoogLeNet to SavedModel, TFLite (fp32/fp16/dynamic-range/int8) and ONNX, verified.

    from keras_googlenet.export import export_model
    report = export_model("saved_models/run1", "exports/run1",
                          formats=["savedmodel", "tflite-fp32", "tflite-int8", "onnx"],
                          calibration_data=train_images, verification_data=val_images)

Whatever the source (a `.keras` training model with aux heads, an inference model, a
run directory, or a `keras.Model`), what is exported is the single-output float32
inference model (`float32_inference_model`): aux heads pruned, mixed precision undone.

Every artefact is converted into a temporary path next to its destination, verified
against Keras on the same inputs, and only then moved into place (`os.replace`), so a
failed conversion or a missed verification bound never replaces a good artefact. Each
artefact gets a sidecar model card `<artefact>.json` (variant, widths, input size,
preprocessing, labels, precision, size, source run, verification figures) that
`keras_googlenet.runtime.load_predictor` reads.
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import json
import os
import shutil
import sys
import tempfile

import keras
import numpy as np

from keras_googlenet import spec as spec_lib
from keras_googlenet.preprocessing import PREPROCESSING_LAYER, preprocess_in_model
from keras_googlenet.runtime import (
    CARD_IN_SAVEDMODEL,
    EVAL_CROP_FRACTION,
    card_path_for,
    resize_pixels,
)
from keras_googlenet.tflite_gpu import gpu_delegate_report

# format -> (file name suffix after the base name, precision written in the card)
FORMATS = {
    "savedmodel": ("_savedmodel", "float32"),
    "tflite-fp32": ("_fp32.tflite", "float32"),
    "tflite-fp16": ("_fp16.tflite", "float16"),
    "tflite-dynamic": ("_dynamic.tflite", "dynamic-range int8 (int8 weights, float activations)"),
    "tflite-int8": ("_int8.tflite", "int8 (full integer)"),
    "onnx": (".onnx", "float32"),
}
FLOAT_FORMATS = ("savedmodel", "tflite-fp32", "tflite-fp16", "tflite-dynamic", "onnx")

# Verification bounds. "max_abs_diff": of the softmax outputs, on the same inputs as
# Keras. "top1_agreement": fraction of images where the artefact's top-1 class equals
# Keras', enforced only on real images (`verification_data`).
DEFAULT_BOUNDS = {
    "savedmodel": {"max_abs_diff": 1e-4},
    "tflite-fp32": {"max_abs_diff": 1e-4},
    "onnx": {"max_abs_diff": 1e-4},
    "tflite-fp16": {"top1_agreement": 0.995},
    "tflite-dynamic": {"top1_agreement": 0.99},
    "tflite-int8": {"top1_agreement": 0.99},
}
INT8_IO_TYPES = ("uint8", "int8", "float32")
# uint8 is what MediaPipe Tasks and the TFLite Task Library accept for a quantized
# image input (they refuse int8), and a uint8 input fed raw pixels is exact only when
# the model rescales them itself: so a uint8 int8 export always has the preprocessing
# inside (input quantization scale 1, zero point 0).
DEFAULT_INT8_IO = "uint8"
MIN_ONNX_OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "predictions"
UINT8_SIGNATURE = "serving_uint8"
PREPROCESSING = {
    "mode": "tf",
    "formula": "x / 127.5 - 1",
    "in_model": False,
    "color": "RGB",
    "pixel_range": [0, 255],
    "input_range": [-1.0, 1.0],
    "central_crop": EVAL_CROP_FRACTION,
    "resize": "bilinear (tf.image.resize, no antialiasing) to input_size, after the crop",
}


def preprocessing_card(in_model, mode="tf"):
    """The card's `preprocessing` section: scaled input, or pixels rescaled in the model."""
    card = dict(PREPROCESSING, mode=mode)
    if in_model:
        card.update(in_model=True, input_range=[0.0, 255.0],
                    formula=f"inside the model (layer {PREPROCESSING_LAYER!r}, mode "
                            f"{mode!r}): feed RGB pixels in [0, 255]")
    return card


def has_preprocessing_layer(model):
    """Whether `model` rescales raw pixels itself (`GoogLeNet(include_preprocessing=True)`)."""
    return any(layer.name == PREPROCESSING_LAYER for layer in model.layers)


def with_preprocessing(model, mode="tf"):
    """`model` (which takes preprocessed images) behind layers that preprocess RGB pixels."""
    pixels = keras.Input(model.input_shape[1:], name=INPUT_NAME)
    return keras.Model(pixels, model(preprocess_in_model(pixels, mode)), name=model.name)


def to_model_input(x, card):
    """Preprocessed images (x / 127.5 - 1) as the artefact of `card` takes them."""
    if (card.get("preprocessing") or {}).get("in_model"):
        return (np.asarray(x, dtype="float32") + 1.0) * 127.5
    return x
_PARITY_SAMPLES = 32
_BLOCK_COLUMNS = ("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj")


class ExportError(RuntimeError):
    """Some formats failed to convert or missed a verification bound.

    `report` holds every format's figures, including the ones that succeeded.
    """

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


@dataclasses.dataclass
class ArtifactResult:
    """The outcome for one format."""

    format: str
    path: str | None = None  # the published artefact; None if nothing was published
    card_path: str | None = None
    card: dict | None = None
    verification: dict | None = None
    error: str | None = None
    seconds: float = 0.0
    warnings: list = dataclasses.field(default_factory=list)

    @property
    def ok(self):
        return self.error is None


@dataclasses.dataclass
class ExportReport:
    out_dir: str
    results: list

    @property
    def ok(self):
        return all(r.ok for r in self.results)

    def __getitem__(self, fmt):
        for result in self.results:
            if result.format == fmt:
                return result
        raise KeyError(fmt)

    def summary(self):
        """A plain-text table: format, status, size, verification figures."""
        lines = [f"{'format':<15} {'status':<7} {'size':>10}  verification"]
        for r in self.results:
            size = r.card["file_size_bytes"] if r.card else None
            size_text = f"{size / 1e6:.2f} MB" if size is not None else "-"
            lines.append(
                f"{r.format:<15} {'ok' if r.ok else 'FAILED':<7} {size_text:>10}  "
                f"{format_verification(r.verification)}"
                + (f"\n{'':<35}error: {r.error}" if r.error else "")
                + "".join(f"\n{'':<35}WARNING: {w}" for w in r.warnings)
            )
        return "\n".join(lines)


def format_verification(v):
    if not v:
        return "skipped"
    parts = [f"max|Δp|={v['max_abs_diff']:.2e}",
             f"top-1 agreement={v['top1_agreement']:.2%} on {v['samples']} {v['data']} images"]
    if v.get("keras_accuracy") is not None:
        parts.append(f"accuracy keras={v['keras_accuracy']:.2%} artefact={v['accuracy']:.2%}")
    if "uint8_signature_max_abs_diff" in v:
        parts.append(f"uint8 signature max|Δp|={v['uint8_signature_max_abs_diff']:.2e}")
    for check in v.get("checks", []):
        if not check["enforced"]:
            parts.append(f"({check['metric']} bound not enforced: {check['note']})")
        elif not check["passed"]:
            parts.append(f"MISSED {check['metric']} bound {check['bound']}")
    return "; ".join(parts)


# --------------------------------------------------------------------------- sources


def _log(verbose, message):
    if verbose:
        print(message, file=sys.stderr, flush=True)


def _read_run_dir(run_dir):
    info = {"run_dir": os.path.abspath(run_dir)}
    config_path = os.path.join(run_dir, "config.json")
    if os.path.isfile(config_path):
        with open(config_path, encoding="utf-8") as f:
            try:
                info["config"] = json.load(f)
            except ValueError as error:
                raise ValueError(f"{config_path!r} is corrupt (not JSON: {error}).") from None
    labels_path = os.path.join(run_dir, "labels.txt")
    if os.path.isfile(labels_path):
        with open(labels_path, encoding="utf-8") as f:
            info["labels"] = [line.rstrip("\n") for line in f if line.strip()]
    metrics_path = os.path.join(run_dir, "metrics.json")
    if os.path.isfile(metrics_path):
        try:
            with open(metrics_path, encoding="utf-8") as f:
                info["metrics"] = json.load(f)
        except ValueError:
            pass
    return info


def resolve_source(source):
    """(path of the `.keras` file, run-directory info or {}) for a file or run directory."""
    path = os.fspath(source)
    if os.path.isdir(path):
        for candidate in ("inference.keras", "model.keras"):
            if os.path.isfile(os.path.join(path, candidate)):
                return os.path.join(path, candidate), _read_run_dir(path)
        raise FileNotFoundError(
            f"run directory {path!r} has neither inference.keras nor model.keras."
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"source not found: {path!r} (expected a .keras file or a "
                                "run directory).")
    if not path.endswith(".keras"):
        raise ValueError(f"`source` must be a '.keras' file or a run directory; received {path!r}.")
    parent = os.path.dirname(os.path.abspath(path))
    is_run = any(os.path.isfile(os.path.join(parent, f)) for f in ("config.json", "labels.txt"))
    return path, (_read_run_dir(parent) if is_run else {})


def _layer(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def infer_variant(model):
    """The GoogLeNet variant of a built model, from its layer names and kernels."""
    if _layer(model, "norm1") is not None:
        return "v1"
    if _layer(model, "inception_3a_5x5_pre_conv") is not None:
        return "factorized"
    conv = _layer(model, "inception_3a_5x5_conv")
    if conv is None:
        return None
    return "torchvision" if tuple(conv.kernel_size) == (3, 3) else "v1_bn"


def infer_widths(model):
    """Per-block widths `{"3a": [6 ints], ...}` read from the conv filter counts."""
    widths = {}
    for block in spec_lib.INCEPTION_WIDTHS:
        convs = [_layer(model, f"inception_{block}_{column}_conv") for column in _BLOCK_COLUMNS]
        if any(c is None for c in convs):
            return None
        widths[block] = [int(c.filters) for c in convs]
    return widths


def _activation_name(model):
    layer = _layer(model, OUTPUT_NAME)
    if layer is None or not hasattr(layer, "activation"):
        return "unknown"
    name = getattr(layer.activation, "__name__", str(layer.activation))
    return "softmax" if name == "softmax" else name


def describe_source(path, model, run_info=None):
    """Model-card fields for a (float32 inference) `model`, from its layers and run info.

    `config.json` of a run directory wins over what the layers say; labels come from
    `labels.txt`.
    """
    if run_info is None:
        run_info = {}
        if path is not None and os.path.isfile(os.fspath(path)):
            parent = os.path.dirname(os.path.abspath(path))
            if os.path.isfile(os.path.join(parent, "config.json")) or \
                    os.path.isfile(os.path.join(parent, "labels.txt")):
                run_info = _read_run_dir(parent)
    config_model = (run_info.get("config") or {}).get("model", {})
    shape = model.input_shape
    input_size = None
    if shape[1] is not None and shape[2] is not None:
        input_size = [int(shape[1]), int(shape[2])]
    elif config_model.get("input_size"):
        size = config_model["input_size"]
        input_size = [int(size), int(size)] if isinstance(size, int) else list(size)
    output_layer = _layer(model, OUTPUT_NAME)
    classes = int(model.output_shape[-1])
    labels = run_info.get("labels")
    if labels is not None and len(labels) != classes:
        labels = None  # a labels.txt that does not match the head is worse than none
    config = run_info.get("config") or {}
    card = {
        "model": {
            "name": model.name,
            "variant": config_model.get("variant") or infer_variant(model),
            "widths": infer_widths(model),
            "width_multiplier": config_model.get("width_multiplier"),
            "input_size": input_size,
            "classes": classes,
            "include_aux_in_source": config_model.get("include_aux"),
            "params": int(model.count_params()),
        },
        "input": {"name": INPUT_NAME, "shape": [None, *(input_size or [None, None]), 3],
                  "dtype": "float32"},
        "output": {"name": OUTPUT_NAME, "shape": [None, classes], "dtype": "float32",
                   "activation": _activation_name(model) if output_layer else "unknown"},
        "preprocessing": preprocessing_card(has_preprocessing_layer(model)),
        "labels": labels,
        "source": {
            "path": os.path.abspath(path) if path is not None else None,
            "run_dir": run_info.get("run_dir"),
            "dataset": config.get("dataset"),
            "data_dir": config.get("data_dir"),
            "metrics": run_info.get("metrics"),
        },
    }
    return card


def load_source(source, input_size=None):
    """The float32 single-output inference model of `source`, and its card fields.

    `source`: a `.keras` file (training or inference model), a run directory
    (`inference.keras`, else `model.keras`, plus `config.json`/`labels.txt`), or a
    `keras.Model`.
    """
    from keras_googlenet.pruning import float32_inference_model

    if isinstance(source, keras.Model):
        path, run_info, model = None, {}, source
    else:
        path, run_info = resolve_source(source)
        from keras_googlenet.runtime import load_keras_model

        model = load_keras_model(path, "source")
    model = float32_inference_model(model)
    if input_size is not None or model.input_shape[1] is None or model.input_shape[2] is None:
        size = _size_pair(input_size if input_size is not None else _config_size(run_info))
        if size is None:
            raise ValueError(
                "the model takes images of any size; pass `input_size` (e.g. 224) to fix the "
                "exported input shape."
            )
        if model.input_shape[1] is not None and tuple(model.input_shape[1:3]) != size:
            raise ValueError(
                f"`input_size={input_size!r}` does not match the model's fixed input "
                f"{tuple(model.input_shape[1:3])}."
            )
        if model.input_shape[1] is None:
            # A flat copy with a fixed input (not a nested model: the card and the graph
            # rewrites read the layers).
            fixed = keras.models.clone_model(
                model, input_tensors=keras.Input((*size, 3), name=INPUT_NAME))
            fixed.set_weights(model.get_weights())
            model = fixed
    return model, describe_source(path, model, run_info if path is not None else {})


def _config_size(run_info):
    return ((run_info.get("config") or {}).get("model") or {}).get("input_size")


def _size_pair(size):
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return (size, size)
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(
            isinstance(v, int) and v > 0 for v in size):
        return tuple(size)
    raise ValueError(f"`input_size` must be a positive int or (height, width); received {size!r}.")


# --------------------------------------------------------------------------- data


def _take_images(data, limit, size, what):
    """Up to `limit` float32 model-ready images (and labels if present) from `data`.

    Accepts an array (N, H, W, 3), an `(images, labels)` tuple, a `tf.data.Dataset`
    (batched or not, of images or `(image, label)`), or an iterable of those. Integer
    images are treated as raw pixels: resized and scaled with `x / 127.5 - 1`.
    """
    import tensorflow as tf

    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], (int, float)):
        chunks = [data]
    elif isinstance(data, np.ndarray):
        chunks = [data]
    else:
        try:
            iterator = iter(data)
        except TypeError:
            raise ValueError(
                f"`{what}` must be an array of images, an (images, labels) tuple, a "
                f"tf.data.Dataset or an iterable of batches; received {type(data).__name__}."
            ) from None
        chunks = iterator
    images, labels, count = [], [], 0
    for chunk in chunks:
        x, y = chunk if isinstance(chunk, (tuple, list)) and len(chunk) == 2 else (chunk, None)
        x = np.asarray(x)
        if x.ndim == 3:
            x = x[None]
            y = None if y is None else np.asarray(y).reshape(1)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"`{what}` must hold RGB images (..., H, W, 3); got shape {x.shape}.")
        if not np.issubdtype(x.dtype, np.floating):  # raw pixels: evaluation preprocessing
            x = np.stack([resize_pixels(image, size) for image in x])
        elif tuple(x.shape[1:3]) != tuple(size):
            x = tf.image.resize(x, size, method="bilinear").numpy()
        images.append(x.astype("float32"))
        labels.append(None if y is None else np.asarray(y).reshape(-1).astype("int64"))
        count += len(x)
        if count >= limit:
            break
    if not images:
        raise ValueError(f"`{what}` is empty.")
    x = np.concatenate(images)[:limit]
    y = None if any(v is None for v in labels) else np.concatenate(labels)[:limit]
    return x, y


# --------------------------------------------------------------------------- converters


def _serving_fns(model, size, in_model=False):
    import tensorflow as tf

    @tf.function(autograph=False)
    def serve(image):
        return {OUTPUT_NAME: model(image, training=False)}

    @tf.function(autograph=False)
    def serve_uint8(image):
        # The training pipeline's evaluation transform (runtime.resize_pixels).
        shape = tf.shape(image)
        height = tf.maximum(1, tf.cast(tf.cast(shape[1], tf.float32) * EVAL_CROP_FRACTION,
                                       tf.int32))
        width = tf.maximum(1, tf.cast(tf.cast(shape[2], tf.float32) * EVAL_CROP_FRACTION,
                                      tf.int32))
        x = tf.image.crop_to_bounding_box(image, (shape[1] - height) // 2,
                                          (shape[2] - width) // 2, height, width)
        x = tf.image.resize(tf.cast(x, tf.float32), size, method="bilinear")
        x = tf.clip_by_value(x, 0.0, 255.0)
        if not in_model:
            x = x / 127.5 - 1.0
        return {OUTPUT_NAME: model(x, training=False)}

    float_spec = tf.TensorSpec((None, *size, 3), tf.float32, name=INPUT_NAME)
    uint8_spec = tf.TensorSpec((None, None, None, 3), tf.uint8, name=INPUT_NAME)
    return (serve, float_spec), (serve_uint8, uint8_spec)


def write_savedmodel(model, path, uint8_signature=True):
    """A SavedModel with `serving_default` (float32 'image' [N,H,W,3] -> 'predictions').

    With `uint8_signature`, also `serving_uint8`: uint8 'image' [N, any H, any W, 3]
    (decoded pixels), resized bilinearly and scaled to [-1, 1] inside the graph.
    A model with its preprocessing inside takes pixels in [0, 255] in both.
    """

    size = tuple(model.input_shape[1:3])
    (serve, float_spec), (serve_uint8, uint8_spec) = _serving_fns(
        model, size, in_model=has_preprocessing_layer(model))
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve, input_signature=[float_spec])
    if uint8_signature:
        archive.add_endpoint(UINT8_SIGNATURE, serve_uint8, input_signature=[uint8_spec])
    archive.write_out(os.fspath(path), verbose=False)


def convert_tflite(savedmodel_dir, fmt, representative_dataset=None, int8_io=DEFAULT_INT8_IO):
    """TFLite flatbuffer bytes for one of the `tflite-*` formats."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(
        os.fspath(savedmodel_dir), signature_keys=["serving_default"]
    )
    if fmt == "tflite-fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif fmt == "tflite-dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif fmt == "tflite-int8":
        if representative_dataset is None:
            raise ValueError("full-integer int8 needs a representative dataset.")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        # LRN (variant v1) has no int8 kernel: the converter wraps it in
        # dequantize/quantize and keeps everything else integer.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[int8_io]
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
    elif fmt != "tflite-fp32":
        raise ValueError(f"not a TFLite format: {fmt!r}")
    return converter.convert()


def convert_onnx(model, path, opset=MIN_ONNX_OPSET):
    """Write `model` as ONNX (tf2onnx), input 'image' [N,H,W,3], output 'predictions'."""
    import tensorflow as tf
    import tf2onnx

    size = tuple(model.input_shape[1:3])
    spec = (tf.TensorSpec((None, *size, 3), tf.float32, name=INPUT_NAME),)
    try:
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset,
                                   output_path=os.fspath(path))
    except (KeyError, AttributeError, TypeError):
        # tf2onnx's Keras path trips on some Keras 3 graphs ('keras_tensor_N');
        # tracing a plain function is equivalent.
        @tf.function(input_signature=spec, autograph=False)
        def forward(image):
            return {OUTPUT_NAME: model(image, training=False)}

        tf2onnx.convert.from_function(forward, input_signature=spec, opset=opset,
                                      output_path=os.fspath(path))


# --------------------------------------------------------------------------- graph rewrites


@keras.saving.register_keras_serializable(package="keras_googlenet")
class ChannelSplit(keras.layers.Layer):
    """Split the last axis into pieces of `sizes` channels (undoes a merged conv)."""

    def __init__(self, sizes, **kwargs):
        super().__init__(**kwargs)
        self.sizes = [int(size) for size in sizes]

    def call(self, inputs):
        return keras.ops.split(inputs, np.cumsum(self.sizes)[:-1].tolist(), axis=-1)

    def compute_output_shape(self, input_shape):
        return [(*input_shape[:-1], size) for size in self.sizes]

    def get_config(self):
        return {**super().get_config(), "sizes": self.sizes}


def _folded_conv_weights(conv, bn):
    """(kernel, bias) of `conv` followed by inference-mode `bn`, as one conv with bias."""
    weights = conv.get_weights()
    kernel = weights[0].astype("float64")
    bias = weights[1].astype("float64") if conv.use_bias else np.zeros(kernel.shape[-1])
    if bn is not None:
        gamma = bn.gamma.numpy() if bn.scale else np.ones(kernel.shape[-1])
        beta = bn.beta.numpy() if bn.center else np.zeros(kernel.shape[-1])
        factor = gamma / np.sqrt(bn.moving_variance.numpy().astype("float64") + bn.epsilon)
        kernel = kernel * factor
        bias = (bias - bn.moving_mean.numpy()) * factor + beta
    return kernel.astype("float32"), bias.astype("float32")


def _plain_relu(layer):
    return isinstance(layer, keras.layers.ReLU) and layer.max_value is None \
        and not layer.negative_slope and not layer.threshold


def optimize_for_inference(model, fold_batch_norm=True, merge_1x1=True):
    """An equivalent model with inference-time rewrites that keep the math.

    - `fold_batch_norm`: every Conv2D -> BatchNormalization pair becomes one Conv2D with
      bias (inference-mode statistics).
    - `merge_1x1`: 1x1 convs (each followed by a plain ReLU) that read the same tensor,
      such as an Inception block's `1x1`, `3x3_reduce` and `5x5_reduce`, become one wider
      conv + ReLU whose output is split back by channels.

    The result shares the other layers (and their variables) with `model`; it is meant
    for export, not training. Outputs agree with `model` to float32 rounding.
    """
    from keras import layers as keras_layers

    if not hasattr(model, "_nodes_by_depth") or len(model.inputs) != 1:
        raise ValueError("`model` must be a single-input functional Keras model.")

    nodes = [n for depth in sorted(model._nodes_by_depth, reverse=True)
             for n in model._nodes_by_depth[depth]]
    consumers = {}
    for node in nodes:
        for tensor in node.input_tensors:
            consumers.setdefault(id(tensor), []).append(node)

    def only_consumer(tensor, kind):
        users = consumers.get(id(tensor), [])
        if len(users) == 1 and isinstance(users[0].operation, kind):
            return users[0]
        return None

    units = {}  # id(conv layer) -> dict(conv, bn, relu, input, pre_relu, out)
    for node in nodes:
        conv = node.operation
        if type(conv) is not keras_layers.Conv2D or len(node.input_tensors) != 1:
            continue
        if keras.activations.serialize(conv.activation) not in ("linear", {"class_name":
                                                                         "linear"}) \
                and getattr(conv.activation, "__name__", "") != "linear":
            continue
        out = node.outputs[0]
        bn_node = only_consumer(out, keras_layers.BatchNormalization) if fold_batch_norm \
            else None
        if bn_node is not None and bn_node.operation.axis not in (-1, 3):
            bn_node = None
        pre_relu = bn_node.outputs[0] if bn_node is not None else out
        relu_node = only_consumer(pre_relu, keras_layers.ReLU)
        if relu_node is not None and not _plain_relu(relu_node.operation):
            relu_node = None
        units[id(conv)] = {
            "conv": conv, "bn": bn_node.operation if bn_node else None,
            "bn_node": bn_node, "relu_node": relu_node,
            "input": node.input_tensors[0], "pre_relu": pre_relu,
            "out": relu_node.outputs[0] if relu_node else None,
        }

    groups = {}
    if merge_1x1:
        by_input = {}
        for unit in units.values():
            conv = unit["conv"]
            if unit["out"] is not None and tuple(conv.kernel_size) == (1, 1) \
                    and tuple(conv.strides) == (1, 1) and tuple(conv.dilation_rate) == (1, 1) \
                    and conv.groups == 1:
                by_input.setdefault(id(unit["input"]), []).append(unit)
        for members in by_input.values():
            if len(members) > 1:
                for unit in members:
                    groups[id(unit["conv"])] = members

    new_input = keras.Input(shape=model.inputs[0].shape[1:], name=model.inputs[0].name
                            if model.inputs[0].name else INPUT_NAME)
    tensors = {id(model.inputs[0]): new_input}
    built = set()
    pending_weights = []
    replaced = set()  # BN nodes folded away, ReLU nodes merged away
    for unit in units.values():
        if unit["bn_node"] is not None:
            replaced.add(id(unit["bn_node"]))
        if id(unit["conv"]) in groups:
            replaced.add(id(unit["relu_node"]))
    for node in nodes:
        if node.is_input or not node.operation or id(node) in replaced:
            continue
        layer = node.operation
        if id(layer) in groups and id(layer) not in built:
            members = groups[id(layer)]
            built.update(id(u["conv"]) for u in members)
            sizes = [u["conv"].filters for u in members]
            stem = os.path.commonprefix([u["conv"].name for u in members]).rstrip("_")
            merged = keras_layers.Conv2D(sum(sizes), 1, use_bias=True,
                                         name=f"{stem or 'merged'}_merged_1x1")
            y = keras_layers.ReLU(name=f"{stem or 'merged'}_merged_1x1_relu")(
                merged(tensors[id(members[0]["input"])]))
            pieces = ChannelSplit(sizes, name=f"{stem or 'merged'}_split")(y)
            for unit, piece in zip(members, pieces, strict=True):
                tensors[id(unit["out"])] = piece
            folded = [_folded_conv_weights(u["conv"], u["bn"]) for u in members]
            pending_weights.append((merged, [np.concatenate([k for k, _ in folded], axis=-1),
                                             np.concatenate([b for _, b in folded])]))
            continue
        if id(layer) in units and units[id(layer)]["bn"] is not None:
            unit = units[id(layer)]
            config = layer.get_config()
            config["use_bias"] = True
            conv = keras_layers.Conv2D.from_config(config)
            tensors[id(unit["pre_relu"])] = conv(tensors[id(unit["input"])])
            pending_weights.append((conv, list(_folded_conv_weights(layer, unit["bn"]))))
            continue
        args, kwargs = node.arguments.fill_in(tensors)
        outputs = layer(*args, **kwargs)
        for original, new in zip(node.outputs, keras.tree.flatten(outputs), strict=True):
            tensors[id(original)] = new
    for layer, weights in pending_weights:
        layer.set_weights(weights)
    outputs = keras.tree.map_structure(lambda t: tensors[id(t)], model._outputs_struct)
    return keras.Model(new_input, outputs, name=model.name)


# --------------------------------------------------------------------------- verification


def _softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def _keras_probs(model, x, activation):
    if has_preprocessing_layer(model):  # references are kept in the x / 127.5 - 1 space
        x = (x + 1.0) * 127.5
    y = np.concatenate([np.asarray(model(x[i:i + 64], training=False))
                        for i in range(0, len(x), 64)]).astype("float32")
    return y if activation == "softmax" else _softmax(y)


def verify_artifact(predictor, reference, fmt, bounds=None, savedmodel_path=None):
    """Compare an artefact with the Keras reference outputs; return the figures.

    `reference` is the dict `_reference(...)` builds: parity inputs and Keras
    probabilities, agreement inputs, Keras probabilities and labels.
    """
    bounds = DEFAULT_BOUNDS.get(fmt, {}) if bounds is None else bounds
    parity = predictor.predict(to_model_input(reference["parity_x"], predictor.card))
    max_abs_diff = float(np.max(np.abs(parity - reference["parity_p"])))
    probs = predictor.predict(to_model_input(reference["agree_x"], predictor.card))
    agreement = float(np.mean(probs.argmax(-1) == reference["agree_p"].argmax(-1)))
    figures = {
        "max_abs_diff": max_abs_diff,
        "top1_agreement": agreement,
        "samples": int(len(reference["agree_x"])),
        "parity_samples": int(len(reference["parity_x"])),
        "data": reference["data"],
        "keras_accuracy": None,
        "accuracy": None,
    }
    if reference["labels"] is not None:
        figures["keras_accuracy"] = float(
            np.mean(reference["agree_p"].argmax(-1) == reference["labels"]))
        figures["accuracy"] = float(np.mean(probs.argmax(-1) == reference["labels"]))
    checks = []
    for metric, bound in bounds.items():
        value = figures[metric]
        if metric == "max_abs_diff":
            checks.append({"metric": metric, "bound": bound, "value": value, "enforced": True,
                           "passed": value <= bound})
        else:
            real = reference["data"] != "random"
            checks.append({"metric": metric, "bound": bound, "value": value, "enforced": real,
                           "passed": value >= bound if real else None,
                           "note": None if real else "no validation images (random inputs)"})
    if savedmodel_path is not None and reference.get("uint8_x") is not None:
        uint8_probs = _savedmodel_uint8(savedmodel_path, reference["uint8_x"])
        diff = float(np.max(np.abs(uint8_probs - reference["uint8_p"])))
        figures["uint8_signature_max_abs_diff"] = diff
        bound = bounds.get("max_abs_diff", 1e-4)
        checks.append({"metric": "uint8_signature_max_abs_diff", "bound": bound,
                       "value": diff, "enforced": True, "passed": diff <= bound})
    figures["checks"] = checks
    figures["bounds"] = dict(bounds)
    figures["passed"] = all(c["passed"] for c in checks if c["enforced"])
    return figures


def _savedmodel_uint8(path, images):
    import tensorflow as tf

    loaded = tf.saved_model.load(os.fspath(path))
    out = loaded.signatures[UINT8_SIGNATURE](**{INPUT_NAME: tf.constant(images)})
    return out[OUTPUT_NAME].numpy()


def _reference(model, activation, verification, samples, seed=0):

    size = tuple(model.input_shape[1:3])
    rng = np.random.default_rng(seed)
    if verification is not None:
        agree_x, labels = _take_images(verification, samples, size, "verification_data")
        data = "validation"
        parity_x = agree_x[:_PARITY_SAMPLES]
    else:
        agree_x = rng.uniform(-1, 1, (min(samples, 64), *size, 3)).astype("float32")
        labels, data = None, "random"
        parity_x = agree_x[:8]
    # Raw pixels of an odd size exercise the resize inside the uint8 signature.
    uint8_x = rng.integers(0, 256, (2, size[0] + 7, size[1] + 3, 3), dtype=np.uint8)
    resized = np.stack([resize_pixels(image, size) for image in uint8_x])
    return {
        "parity_x": parity_x,
        "parity_p": _keras_probs(model, parity_x, activation),
        "agree_x": agree_x,
        "agree_p": _keras_probs(model, agree_x, activation),
        "labels": labels,
        "data": data,
        "uint8_x": uint8_x,
        "uint8_p": _keras_probs(model, resized.astype("float32"), activation),
    }


# --------------------------------------------------------------------------- atomic writes


def _path_size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, f))
                   for root, _, files in os.walk(path) for f in files)
    return os.path.getsize(path)


def is_disk_full(error):
    """Whether `error` means the disk is full. h5py and TensorFlow raise their own types
    (RuntimeError, tf.errors) carrying errno 28 only in the message."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    text = str(error)
    return "No space left on device" in text or "errno = 28" in text


def _remove(path):
    if path and os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif path and os.path.lexists(path):
        os.remove(path)


def publish(tmp_path, target):
    """Move a finished file or directory onto `target` atomically (as far as the OS allows).

    Files: `os.replace`. Directories: the old one is renamed aside, the new one renamed
    in, then the old one deleted; if the second rename fails the old one is restored.
    """
    if not os.path.isdir(tmp_path):
        _default_mode(tmp_path)
        os.replace(tmp_path, target)
        return
    _default_mode(tmp_path, directory=True)
    backup = None
    if os.path.lexists(target):
        backup = tempfile.mkdtemp(dir=os.path.dirname(target),
                                  prefix=f".{os.path.basename(target)}.old-")
        os.rmdir(backup)
        os.rename(target, backup)
    try:
        os.rename(tmp_path, target)
    except BaseException:
        if backup is not None:
            os.rename(backup, target)
        raise
    _remove(backup)


def _default_mode(path, directory=False):
    """mkstemp/mkdtemp create 0600/0700; give published artefacts the usual umask mode."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if directory else 0o666) & ~umask)


def write_json_atomic(obj, path):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                               prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, default=_json_default)
            f.write("\n")
        _default_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


# --------------------------------------------------------------------------- the export


def check_destination(source, out_dir, name=None):
    """`ValueError` naming the argument for a bad `source` type, `out_dir` or `name`,
    before any work: a name such as '../x' would write outside `out_dir`."""
    if not isinstance(source, (str, os.PathLike, keras.Model)):
        raise ValueError("`source` must be a '.keras' file, a run directory or a keras.Model; "
                         f"received {source!r}.")
    if not isinstance(out_dir, (str, os.PathLike)) or not os.fspath(out_dir):
        raise ValueError(f"`out_dir` must be a directory path; received {out_dir!r}.")
    existing = os.fspath(out_dir)
    while existing and not os.path.exists(existing):  # the nearest existing ancestor
        parent = os.path.dirname(existing.rstrip(os.sep))
        existing = parent if parent != existing else ""
    if existing and not os.path.isdir(existing):
        raise ValueError(f"`out_dir` {os.fspath(out_dir)!r}: {existing!r} is a file, not a "
                         "directory.")
    if name is not None:
        separators = [sep for sep in (os.sep, os.altsep) if sep]
        if not isinstance(name, str) or name in ("", ".", "..") or any(
                sep in name for sep in separators) or name.startswith("."):
            raise ValueError("`name` must be a file name without a path (no '/', not '.' or "
                             f"'..', not starting with '.'); received name={name!r}.")


def validate_export_arguments(formats, calibration_data, calibration_steps, int8_io, opset,
                              verification_samples):
    """The resolved format list; `ValueError` naming the argument on any bad value."""
    if formats is None:
        formats = list(FLOAT_FORMATS) + (["tflite-int8"] if calibration_data is not None else [])
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = list(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(
            f"unknown format(s) {unknown or formats!r}: `formats` must be a subset of "
            f"{list(FORMATS)}."
        )
    formats = [f for f in FORMATS if f in formats]  # canonical order: SavedModel first
    if "tflite-int8" in formats and calibration_data is None:
        raise ValueError(
            "format 'tflite-int8' (full-integer quantization) needs `calibration_data`: a "
            "representative sample of training images (CLI: --calibration-data DATASET). "
            "Use 'tflite-dynamic' for int8 weights without calibration."
        )
    if isinstance(calibration_steps, bool) or not isinstance(calibration_steps, int) \
            or calibration_steps < 1:
        raise ValueError(
            f"`calibration_steps` must be a positive int; received {calibration_steps!r}.")
    if int8_io not in INT8_IO_TYPES:
        raise ValueError(f"`int8_io` must be one of {INT8_IO_TYPES}; received {int8_io!r}.")
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_ONNX_OPSET:
        raise ValueError(f"`opset` must be an int >= {MIN_ONNX_OPSET}; received {opset!r}.")
    if isinstance(verification_samples, bool) or not isinstance(verification_samples, int) \
            or verification_samples < 1:
        raise ValueError("`verification_samples` must be a positive int; received "
                         f"{verification_samples!r}.")
    return formats


def _versions():
    import tensorflow as tf

    versions = {"tensorflow": tf.__version__, "keras": keras.version()}
    try:
        from keras_googlenet import __version__
        versions["keras_googlenet"] = __version__
    except ImportError:  # pragma: no cover
        pass
    return versions


def export_model(
    source,
    out_dir,
    formats=None,
    *,
    name=None,
    input_size=None,
    calibration_data=None,
    calibration_steps=200,
    int8_io=DEFAULT_INT8_IO,
    include_preprocessing=False,
    labels=None,
    tflite_metadata=True,
    author=None,
    license=None,
    uint8_signature=True,
    verify=True,
    verification_data=None,
    verification_samples=512,
    bounds=None,
    opset=MIN_ONNX_OPSET,
    optimize=False,
    strict=True,
    verbose=True,
):
    """Export the float32 inference model of `source` to each format, verified.

    Args:
        source: a `.keras` file (training or inference model), a run directory
            (`inference.keras` or `model.keras`, with `config.json`, `labels.txt`), or a
            `keras.Model`.
        out_dir: destination directory (created). Artefacts are named
            `{name}_savedmodel/`, `{name}_fp32.tflite`, `{name}_fp16.tflite`,
            `{name}_dynamic.tflite`, `{name}_int8.tflite`, `{name}.onnx`, each with a
            model card `<artefact>.json`.
        formats: a list (or comma-separated string) from `FORMATS`. Default: every
            float format, plus `"tflite-int8"` when `calibration_data` is given.
        name: base name of the artefacts (default: the model's name).
        input_size: fixes the input size of a model built with `input_shape=(None,
            None, 3)` (default: `config.json`'s `input_size`).
        calibration_data: representative images for full-integer int8: preprocessed
            float32 images, an `(images, labels)` tuple, a `tf.data.Dataset` or an
            iterable of batches (uint8 pixels are resized and scaled for you), or a
            callable usable directly as the converter's `representative_dataset`.
        calibration_steps: how many images (one per converter step) to calibrate on.
        int8_io: input/output type of the full-int8 model: `"uint8"` (default; what
            MediaPipe and the TFLite Task Library accept, fed raw pixels: the
            preprocessing is put inside that artefact), `"int8"` or `"float32"`
            (integer internals with a float interface).
        include_preprocessing: put the variant's preprocessing inside every exported
            model (as `GoogLeNet(include_preprocessing=True)` does), so that they all
            take RGB pixels in [0, 255]. A model built that way keeps it regardless.
        labels: class names (a list, or the path of a text file with one per line);
            default: the run's `labels.txt`, else ImageNet's names for 1000 classes,
            else the class indices. A count that differs from the model's classes is
            a `ValueError` before any conversion.
        tflite_metadata: write TFLite Metadata into every `.tflite` (name, version,
            input normalization, value ranges, the labels as `labels.txt`), which
            MediaPipe Tasks, the TFLite Task Library and Android Studio read.
        author, license: recorded in the cards and the TFLite metadata.
        uint8_signature: add the SavedModel signature `serving_uint8` that takes uint8
            images of any size and resizes and scales them in the graph.
        verify: compare every artefact with Keras before publishing it (default on).
        verification_data: real validation images (same forms as `calibration_data`;
            labels, when present, add accuracy figures). Without them, parity is
            checked on random inputs and the top-1 agreement bounds of the quantized
            formats are reported but not enforced.
        verification_samples: at most this many verification images are used.
        bounds: per-format overrides of `DEFAULT_BOUNDS`.
        opset: ONNX opset (>= 17).
        optimize: export `optimize_for_inference(model)` (BatchNorm folded into the
            convs, the 1x1 convs that read the same input merged into one). Same math;
            verification compares against the unmodified model. Off by default: the
            TFLite converter and onnxruntime already fold BatchNorm, and merging the 1x1
            convs measured no faster on a 2-core CPU (docs/export.md).
        strict: raise `ExportError` at the end when any format failed (after trying
            them all). With `strict=False` the report says what failed.
        verbose: progress on stderr.

    Returns:
        An `ExportReport` (`report["tflite-int8"].verification`, `.summary()`).

    Raises:
        ValueError: bad arguments (unknown format, int8 without calibration data, ...),
            checked before any work.
        FileNotFoundError: `source` does not exist.
        ExportError: with `strict`, a conversion failed or a bound was missed; nothing
            was published for that format and an existing artefact was kept.
    """
    import time

    check_destination(source, out_dir, name)
    formats = validate_export_arguments(formats, calibration_data, calibration_steps, int8_io,
                                        opset, verification_samples)
    all_bounds = {fmt: dict(DEFAULT_BOUNDS.get(fmt, {})) for fmt in FORMATS}
    for fmt, override in (bounds or {}).items():
        if fmt not in FORMATS:
            raise ValueError(f"`bounds` has an unknown format {fmt!r}; allowed: {list(FORMATS)}.")
        all_bounds[fmt].update(override)

    if not isinstance(include_preprocessing, bool):
        raise ValueError("`include_preprocessing` must be True or False; received "
                         f"{include_preprocessing!r}.")
    explicit_labels = read_labels(labels) if labels is not None else None

    _log(verbose, f"[export] loading {source if not hasattr(source, 'name') else source.name}")
    model, base_card = load_source(source, input_size=input_size)
    size = tuple(model.input_shape[1:3])
    name = name or model.name
    activation = base_card["output"]["activation"]
    base_card["labels"] = _resolve_labels(explicit_labels, source, base_card, verbose)
    for key, value in (("author", author), ("license", license)):
        if value is not None:
            base_card[key] = str(value)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    source_in_model = has_preprocessing_layer(model)
    mode = base_card["preprocessing"]["mode"]
    pixel_model = model if source_in_model else None

    def in_model_for(fmt):
        return source_in_model or include_preprocessing or (
            fmt == "tflite-int8" and int8_io == "uint8")

    representative = None
    if "tflite-int8" in formats:
        if callable(calibration_data) and not hasattr(calibration_data, "__iter__"):
            representative = calibration_data
        else:
            calib_x, _ = _take_images(calibration_data, calibration_steps, size,
                                      "calibration_data")
            base_card["calibration"] = {"images": int(len(calib_x))}
            if in_model_for("tflite-int8"):
                # Pixels, with one 0..255 gradient so that the input range calibrates to
                # exactly [0, 255]: a uint8 input then carries the pixels unchanged.
                gradient = np.broadcast_to(np.linspace(-1.0, 1.0, size[1], dtype="float32")
                                           [None, None, :, None], (1, *size, 3))
                calib_x = (np.concatenate([calib_x, gradient]) + 1.0) * 127.5

            def representative():
                for i in range(len(calib_x)):
                    yield [calib_x[i:i + 1]]



    exported_model = model
    if optimize:
        _log(verbose, "[export] graph rewrites: fold BatchNorm, merge sibling 1x1 convs")
        exported_model = optimize_for_inference(model)
        base_card["graph_rewrites"] = ["fold_batch_norm", "merge_1x1_convs"]
    else:
        base_card["graph_rewrites"] = []

    def model_for(fmt):
        """The Keras model behind `fmt`'s artefact: scaled input, or pixels."""
        nonlocal pixel_model
        if not in_model_for(fmt):
            return exported_model
        if pixel_model is None:
            pixel_model = with_preprocessing(exported_model, mode)
        return pixel_model

    reference = None
    if verify:
        _log(verbose, "[export] computing Keras reference outputs")
        reference = _reference(model, activation, verification_data, verification_samples)

    results = []
    work_dir = tempfile.mkdtemp(prefix="googlenet-export-")
    conversion_savedmodels = {}  # in-model preprocessing? -> SavedModel for the converter
    try:
        for fmt in formats:
            suffix, precision = FORMATS[fmt]
            target = os.path.join(out_dir, name + suffix)
            result = ArtifactResult(format=fmt)
            results.append(result)
            start = time.perf_counter()
            tmp = tmp_parent = None
            try:
                _log(verbose, f"[export] {fmt}: converting -> {target}")
                if fmt == "savedmodel":
                    tmp_parent = tempfile.mkdtemp(dir=out_dir, prefix=f".{name + suffix}.tmp-")
                    tmp = os.path.join(tmp_parent, "savedmodel")
                    write_savedmodel(model_for(fmt), tmp, uint8_signature=uint8_signature)
                else:
                    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{name + suffix}.",
                                               suffix=".tmp")
                    os.close(fd)
                    if fmt == "onnx":
                        convert_onnx(model_for(fmt), tmp, opset=opset)
                    else:
                        key = in_model_for(fmt)
                        if key not in conversion_savedmodels:
                            conversion_savedmodels[key] = os.path.join(
                                work_dir, f"savedmodel_{'pixels' if key else 'scaled'}")
                            write_savedmodel(model_for(fmt), conversion_savedmodels[key],
                                             uint8_signature=False)
                        flatbuffer = convert_tflite(conversion_savedmodels[key], fmt,
                                                    representative if fmt == "tflite-int8"
                                                    else None, int8_io=int8_io)

                card = _card(base_card, fmt, precision, target, opset, int8_io, uint8_signature)
                card["preprocessing"] = preprocessing_card(in_model_for(fmt), mode)
                if fmt.startswith("tflite"):
                    if tflite_metadata:
                        _log(verbose, f"[export] {fmt}: writing TFLite metadata")
                        flatbuffer = _with_tflite_metadata(flatbuffer, card)
                        card["tflite_metadata"] = _metadata_summary(card)
                    card["gpu_delegate"] = gpu_delegate_report(flatbuffer)
                    with open(tmp, "wb") as f:
                        f.write(flatbuffer)
                if verify:
                    _log(verbose, f"[export] {fmt}: verifying against Keras")
                    predictor = _predictor_for(fmt, tmp, card)
                    _fill_io(card, fmt, predictor)
                    result.verification = verify_artifact(
                        predictor, reference, fmt, all_bounds[fmt],
                        savedmodel_path=tmp if fmt == "savedmodel" and uint8_signature else None)
                    del predictor
                    card["verification"] = result.verification
                    if not result.verification["passed"]:
                        missed = [c for c in result.verification["checks"]
                                  if c["enforced"] and not c["passed"]]
                        raise _BoundMissedError(
                            "verification bound missed: " + ", ".join(
                                f"{c['metric']}={c['value']:.6g} (bound {c['bound']})"
                                for c in missed))
                else:
                    _fill_io(card, fmt, None, path=tmp)
                    card["verification"] = None
                card["file_size_bytes"] = _path_size(tmp)
                if fmt == "savedmodel":
                    write_json_atomic(card, os.path.join(tmp, CARD_IN_SAVEDMODEL))
                publish(tmp, target)
                tmp = None
                if fmt == "savedmodel":  # the TFLite converter reuses it
                    conversion_savedmodels.setdefault(in_model_for(fmt), target)
                write_json_atomic(card, card_path_for(target))
                result.path, result.card_path, result.card = target, card_path_for(target), card
                _log(verbose, f"[export] {fmt}: ok, {card['file_size_bytes'] / 1e6:.2f} MB; "
                              f"{format_verification(result.verification)}")
                gpu = card.get("gpu_delegate")
                if gpu is not None and not gpu["compatible"]:
                    result.warnings.append(gpu_warning(gpu))
                    _log(verbose, f"[export] {fmt}: WARNING: {result.warnings[-1]}")
            except Exception as error:  # record, clean up, try the other formats
                result.error = f"{type(error).__name__}: {error}" if not isinstance(
                    error, _BoundMissedError) else str(error)
                if is_disk_full(error):  # the tmp file goes; a previous artefact stays
                    result.error = f"no space left on {out_dir!r} while writing {target!r}"
                _log(verbose, f"[export] {fmt}: FAILED: {result.error}")
            finally:
                _remove(tmp)
                _remove(tmp_parent)
                result.seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    report = ExportReport(out_dir=out_dir, results=results)
    if strict and not report.ok:
        failed = [r.format for r in results if not r.ok]
        raise ExportError(
            f"export failed for {failed}; nothing was written for them.\n{report.summary()}",
            report,
        )
    return report


class _BoundMissedError(Exception):
    pass


def gpu_warning(gpu):
    """One line for an artefact the GPU delegate cannot take whole."""
    ops = ", ".join(f"{op} (x{count})" for op, count in gpu["unsupported_ops"].items())
    return (f"LiteRT's GPU delegate cannot run {ops}: on a phone those ops fall back to "
            "the CPU and split the graph (slower than all-GPU); the v1_bn, torchvision "
            "and factorized variants have no such op.")


def read_labels(labels):
    """Class names from a list or a text file (one per line); `ValueError` otherwise."""
    if isinstance(labels, (str, os.PathLike)):
        path = os.fspath(labels)
        if not os.path.isfile(path):
            raise ValueError(f"`labels` file not found: {path!r}.")
        with open(path, encoding="utf-8") as f:
            labels = [line.rstrip("\r\n") for line in f if line.strip()]
    if not isinstance(labels, (list, tuple)) or not labels or not all(
            isinstance(label, str) and label.strip() and "\n" not in label
            for label in labels):
        raise ValueError("`labels` must be a non-empty list of class names (strings without "
                         "line breaks) or the path of a text file with one per line.")
    return [label.strip() for label in labels]


def _resolve_labels(explicit, source, card, verbose):
    """The class names for the cards and the TFLite metadata (see `export_model`)."""
    classes = card["model"]["classes"]
    if explicit is not None:
        if len(explicit) != classes:
            raise ValueError(f"`labels` has {len(explicit)} names but the model has {classes} "
                             "classes; give one name per class.")
        return explicit
    if not isinstance(source, keras.Model):
        run_labels = resolve_source(source)[1].get("labels")
        if run_labels is not None and len(run_labels) != classes:
            raise ValueError(
                f"the run's labels.txt has {len(run_labels)} names but the model has "
                f"{classes} classes; fix labels.txt or pass labels (CLI: --labels FILE).")
        if run_labels is not None:
            return run_labels
    if classes == 1000:
        from keras_googlenet.preprocessing import imagenet_class_index

        _log(verbose, "[export] no labels given: using ImageNet's 1000 class names")
        return [name for _, name in (imagenet_class_index()[i] for i in range(1000))]
    _log(verbose, "[export] no labels (no labels.txt, no --labels): classes are named by "
                  "their index")
    return None


def _tflite_metadata_fields(card):
    """What the TFLite metadata of `card`'s artefact says (also recorded in the card)."""
    from keras_googlenet import __version__

    model = card["model"]
    in_model = card["preprocessing"]["in_model"]
    dataset = (card.get("source") or {}).get("dataset")
    return {
        "name": model["name"],
        "description": (f"GoogLeNet (Inception v1, Szegedy et al. 2014), variant "
                        f"{model['variant']}, {model['classes']} classes"
                        + (f", trained on {dataset}" if dataset else "") + ". "
                        + ("Input: RGB pixels in [0, 255]." if in_model else
                           "Input: RGB scaled to [-1, 1] (x / 127.5 - 1).")),
        "version": f"keras_googlenet {__version__}, exported {card['created']}",
        "author": card.get("author"),
        "license": card.get("license"),
        "mean": [0.0] if in_model else [127.5],
        "std": [1.0] if in_model else [127.5],
        "input_range": [0.0, 255.0] if in_model else [-1.0, 1.0],
        "output_range": [0.0, 1.0] if card["output"]["activation"] == "softmax" else None,
        "labels": card["labels"] or [str(i) for i in range(model["classes"])],
        "input_size": model["input_size"],
    }


def _with_tflite_metadata(flatbuffer, card):
    from keras_googlenet.tflite_metadata import add_image_classifier_metadata

    fields = _tflite_metadata_fields(card)
    return add_image_classifier_metadata(flatbuffer, **fields)


def _metadata_summary(card):
    from keras_googlenet.tflite_metadata import LABELS_FILE

    fields = _tflite_metadata_fields(card)
    return {**{k: v for k, v in fields.items() if k != "labels"},
            "labels_file": LABELS_FILE, "labels_count": len(fields["labels"])}


def _predictor_for(fmt, path, card):
    from keras_googlenet import runtime

    if fmt == "savedmodel":
        return runtime.SavedModelPredictor(path, card=card)
    if fmt == "onnx":
        return runtime.ONNXPredictor(path, card=card)
    return runtime.TFLitePredictor(path, card=card)


def _fill_io(card, fmt, predictor, path=None):
    """Record the artefact's real input/output dtypes and quantization in the card."""
    if fmt.startswith("tflite"):
        if predictor is None:
            from keras_googlenet.runtime import TFLitePredictor

            predictor = TFLitePredictor(path, card=card)
        for key, details in (("input", predictor.input), ("output", predictor.output)):
            card[key]["dtype"] = np.dtype(details["dtype"]).name
            scale, zero_point = details["quantization"]
            card[key]["quantization"] = (
                {"scale": float(scale), "zero_point": int(zero_point)} if scale else None)


def _card(base_card, fmt, precision, target, opset, int8_io, uint8_signature):
    card = json.loads(json.dumps(base_card, default=_json_default))
    card.update({
        "format": fmt,
        "file": os.path.basename(target),
        "precision": precision,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
    })
    if fmt == "savedmodel":
        card["signatures"] = {
            "serving_default": {"inputs": {INPUT_NAME: "float32 [N, H, W, 3] in [-1, 1]"},
                                "outputs": {OUTPUT_NAME: "float32 [N, classes]"}},
        }
        if uint8_signature:
            card["signatures"][UINT8_SIGNATURE] = {
                "inputs": {INPUT_NAME: "uint8 [N, any H, any W, 3] RGB pixels"},
                "outputs": {OUTPUT_NAME: "float32 [N, classes]"},
                "note": "central crop (87.5 %), bilinear resize and x / 127.5 - 1 run in "
                        "the graph",
            }
    elif fmt == "onnx":
        import tf2onnx

        card["onnx"] = {"opset": opset, "tf2onnx": tf2onnx.__version__}
    elif fmt == "tflite-int8":
        card["int8_io"] = int8_io
    else:
        card.pop("calibration", None)
    if fmt != "tflite-int8":
        card.pop("calibration", None)
    return card
