"""Conversion, one function per format: SavedModel, TFLite, ONNX."""

import csv
import io
import math
import os
import re
import warnings

import keras

from keras_googlenet.export.formats import DEFAULT_INT8_IO, MIN_ONNX_OPSET, UINT8_SIGNATURE
from keras_googlenet.model_card import INPUT_NAME, OUTPUT_NAME, has_preprocessing_layer
from keras_googlenet.preprocessing import eval_crop_resize

INT8_REPORT_LAYERS = 10  # the layers the int8 report lists, worst first


def write_savedmodel(model, path, uint8_signature):
    """A SavedModel with `serving_default` (float32 'image' -> 'predictions') and, with
    `uint8_signature`, `serving_uint8` (uint8 pixels of any size, preprocessed in the graph);
    a model with its preprocessing inside takes pixels in [0, 255] in both."""
    import tensorflow as tf

    size = tuple(model.input_shape[1:3])
    in_model = has_preprocessing_layer(model)

    @tf.function(autograph=False)
    def serve(image):
        return {OUTPUT_NAME: model(image, training=False)}

    @tf.function(autograph=False)
    def serve_uint8(image):
        x = eval_crop_resize(image, size)  # the training pipeline's evaluation transform
        return {OUTPUT_NAME: model(x if in_model else x / 127.5 - 1.0, training=False)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve, input_signature=[
        tf.TensorSpec((None, *size, 3), tf.float32, name=INPUT_NAME)])
    if uint8_signature:
        archive.add_endpoint(UINT8_SIGNATURE, serve_uint8, input_signature=[
            tf.TensorSpec((None, None, None, 3), tf.uint8, name=INPUT_NAME)])
    archive.write_out(os.fspath(path), verbose=False)


def convert_tflite(savedmodel_dir, fmt, representative_dataset=None, int8_io=DEFAULT_INT8_IO):
    """The `.tflite` bytes of a `tflite-*` format (int8 needs `representative_dataset`)."""
    return _tflite_converter(savedmodel_dir, fmt, representative_dataset, int8_io).convert()


def _tflite_converter(savedmodel_dir, fmt, representative_dataset, int8_io):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(os.fspath(savedmodel_dir),
                                                         signature_keys=["serving_default"])
    if fmt != "tflite-fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if fmt == "tflite-fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif fmt == "tflite-int8":
        converter.representative_dataset = representative_dataset
        # LRN (v1) has no int8 kernel: the converter wraps it in dequantize/quantize.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = getattr(tf, int8_io)
    return converter


def int8_layer_errors(savedmodel_dir, representative_dataset, debug_dataset, layer_names,
                      float_layers, int8_io):
    """(the int8 model keeping `float_layers`, some of the Keras `layer_names`, in float, or
    None without them; the `INT8_REPORT_LAYERS` worst layers on `debug_dataset`, as `{"layer",
    "op", "rmse_per_scale", "max_abs_error", "scale"}`): docs/export.md; `int8_io` not uint8."""
    import tensorflow as tf

    with warnings.catch_warnings():  # the debugger runs TF's own (deprecated) interpreter
        warnings.filterwarnings("ignore", "(?s).*tf.lite.Interpreter is deprecated")
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=_tflite_converter(savedmodel_dir, "tflite-int8", representative_dataset,
                                        int8_io), debug_dataset=debug_dataset)
        debugger.run()
        if float_layers:
            debugger.options = tf.lite.experimental.QuantizationDebugOptions(
                denylisted_nodes=[row["tensor"] for row in _layer_rows(debugger, layer_names)
                                  if set(row["layers"]) & set(float_layers)],
                fully_quantize=int8_io == "int8")  # int8 in and out; else float32
            debugger.run()
        flatbuffer = debugger.get_nondebug_quantized_model() if float_layers else None
        return flatbuffer, _worst_layers(_layer_rows(debugger, layer_names))


def _layer_rows(debugger, layer_names):
    """The debugger's statistics per quantized tensor, with the Keras layers it is from."""
    layer_names = set(layer_names)
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)  # the public route to each tensor's scale
    rows = []
    for row in csv.DictReader(io.StringIO(dump.getvalue())):
        scale, rmse = float(row["scale"]), math.sqrt(float(row["mean_squared_error"]))
        rows.append({
            "tensor": row["tensor_name"], "op": row["op_name"],
            "layers": _keras_layers_of(row["tensor_name"], layer_names),
            # a constant tensor (say, from constant calibration images) has no steps
            "rmse_per_scale": rmse / scale if scale > 0 else math.nan,
            "max_abs_error": float(row["max_abs_error"]), "scale": scale})
    return rows


def _keras_layers_of(tensor_name, layer_names):
    """The layers a TFLite tensor comes from, in the order its name lists them: a fused op's
    is 'model_1/conv1_1/Relu;model_1/conv1_conv_1/convolution' (tracing adds the '_1')."""
    found = []
    for component in re.split(r"[;/]", tensor_name):
        for name in (component, re.sub(r"_\d+$", "", component)):
            if name in layer_names and name not in found:
                found.append(name)
                break
    return found


def _worst_layers(rows):
    worst = {}
    for row in sorted((r for r in rows if not math.isnan(r["rmse_per_scale"])),
                      key=lambda r: -r["rmse_per_scale"]):
        layer = row["layers"][0] if row["layers"] else None  # the output softmax has none
        if layer is not None and layer not in worst:
            worst[layer] = {"layer": layer, **{key: row[key] for key in
                            ("op", "rmse_per_scale", "max_abs_error", "scale")}}
    return list(worst.values())[:INT8_REPORT_LAYERS]


def convert_onnx(model, path, opset=MIN_ONNX_OPSET):
    """Write `model` as ONNX (tf2onnx), input 'image' [N,H,W,3], output 'predictions'."""
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, *model.input_shape[1:3], 3), tf.float32, name=INPUT_NAME),)

    # A traced function, not `from_keras`: tf2onnx's Keras path trips on some Keras 3
    # graphs ('keras_tensor_N'), and both write the same graph where it works.
    @tf.function(input_signature=spec, autograph=False)
    def forward(image):
        return {OUTPUT_NAME: model(image, training=False)}

    tf2onnx.convert.from_function(forward, input_signature=spec, opset=opset,
                                  output_path=os.fspath(path))
