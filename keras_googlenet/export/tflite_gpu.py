"""Which ops of a `.tflite` model LiteRT's GPU delegate can take, by the delegate's own op
table: `tf.lite.experimental.Analyzer` passes every model in TensorFlow 2.21 (docs/mobile.md)."""

import collections

from keras_googlenet._compat import tflite_schema

# Builtin ops the GPU delegate accepts (gpu_compatibility.cc, TensorFlow 2.21).
GPU_DELEGATE_OPS = frozenset({
    "ABS", "ADD", "ADD_N", "ATAN2", "AVERAGE_POOL_2D", "BATCH_MATMUL", "CAST", "CEIL",
    "CONCATENATION", "CONV_2D", "COS", "CUMSUM", "DENSIFY", "DEPTH_TO_SPACE",
    "DEPTHWISE_CONV_2D", "DEQUANTIZE", "DIV", "DYNAMIC_UPDATE_SLICE", "ELU",
    "EMBEDDING_LOOKUP", "EQUAL", "EXP", "FLOOR", "FLOOR_DIV", "FLOOR_MOD",
    "FULLY_CONNECTED", "GATHER", "GELU", "GREATER", "GREATER_EQUAL", "HARD_SWISH",
    "LEAKY_RELU", "LESS", "LESS_EQUAL", "LOG", "LOGICAL_AND", "LOGISTIC", "LSTM",
    "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM", "MIRROR_PAD", "MUL", "NEG", "NOT_EQUAL",
    "ONE_HOT", "PACK", "PAD", "PADV2", "POW", "PRELU", "QUANTIZE", "REDUCE_MAX",
    "REDUCE_MIN", "REDUCE_PROD", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE",
    "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SELECT", "SELECT_V2", "SIGN",
    "SIN", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SPLIT_V", "SQRT", "SQUARE",
    "SQUARED_DIFFERENCE", "STABLEHLO_CLAMP", "STRIDED_SLICE", "SUB", "SUM", "TANH", "TILE",
    "TRANSPOSE", "TRANSPOSE_CONV",
})
# Custom ops the delegate implements itself.
GPU_DELEGATE_CUSTOM_OPS = frozenset({"Convolution2DTransposeBias", "MaxPoolingWithArgmax2D",
                                     "MaxUnpooling2D", "Resampler"})


def model_ops(model_bytes):
    """`Counter` of op names (builtin names, or custom codes) in every subgraph."""
    schema = tflite_schema()

    from keras_googlenet.export.tflite_metadata import strip_appended_zip

    names = {value: name for name, value in vars(schema.BuiltinOperator).items()
             if not name.startswith("_") and isinstance(value, int)}
    model = schema.Model.GetRootAs(strip_appended_zip(bytes(model_bytes)), 0)
    codes = []
    for code in map(model.OperatorCodes, range(model.OperatorCodesLength())):
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        codes.append(("custom", code.CustomCode().decode())
                     if builtin == schema.BuiltinOperator.CUSTOM
                     else ("builtin", names.get(builtin, f"BUILTIN_{builtin}")))
    subgraphs = map(model.Subgraphs, range(model.SubgraphsLength()))
    return collections.Counter(codes[subgraph.Operators(o).OpcodeIndex()] for subgraph in subgraphs
                               for o in range(subgraph.OperatorsLength()))


def gpu_delegate_report(model_bytes):
    """Whether the GPU delegate can take every op of a TFLite model: `{"compatible": bool,
    "unsupported_ops": {op name: count}, "ops": {op name: count}, "method": str}`."""
    ops = sorted(model_ops(model_bytes).items(), key=lambda item: item[0][1])
    unsupported = {name: count for (kind, name), count in ops if name not in (
        GPU_DELEGATE_CUSTOM_OPS if kind == "custom" else GPU_DELEGATE_OPS)}
    return {"compatible": not unsupported, "unsupported_ops": unsupported,
            "ops": {name: count for (_, name), count in ops},
            "method": "op types checked against the GPU delegate's op table "
                      "(tensorflow/lite/tools/versioning/gpu_compatibility.cc); per-op shape "
                      "limits not checked"}
