"""Conversion, one function per format: SavedModel, TFLite, ONNX."""

from __future__ import annotations

import os

import keras

from keras_googlenet.export.formats import DEFAULT_INT8_IO, MIN_ONNX_OPSET, UINT8_SIGNATURE
from keras_googlenet.model_card import INPUT_NAME, OUTPUT_NAME, has_preprocessing_layer
from keras_googlenet.preprocessing import eval_crop_resize


def write_savedmodel(model, path, uint8_signature=True):
    """A SavedModel with `serving_default` (float32 'image' [N,H,W,3] -> 'predictions').

    With `uint8_signature`, also `serving_uint8`: uint8 'image' [N, any H, any W, 3]
    (decoded pixels), resized bilinearly and scaled to [-1, 1] inside the graph.
    A model with its preprocessing inside takes pixels in [0, 255] in both.
    """
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
