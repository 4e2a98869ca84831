"""Quantization-aware training (QAT) for GoogLeNet in Keras 3, and its full-integer `.tflite`
converted from the learned ranges. The scheme is TFLite's; docs/quantization.md explains it."""

import tempfile

import keras
import numpy as np
from keras import layers, ops

from keras_googlenet.checks import one_of
from keras_googlenet.heads import inference_model
from keras_googlenet.model_card import find_layer, has_preprocessing_layer
from keras_googlenet.preprocessing import preprocess_in_model

__all__ = ["ActivationQuantizer", "QuantizedConv2D", "QuantizedDense", "folded_float_model",
           "is_quantize_aware", "quantize_aware", "tflite_from_learned_ranges",
           "with_pixel_input"]

RANGE_DECAY = 0.99  # TFLite's and tfmot's moving-average decay for activation ranges
PIXEL_RANGE = (0.0, 255.0)  # uint8 pixels in: scale 1, zero point 0 (docs/export.md)
# TFLite runs these with their input's scale (or needs it: AVERAGE_POOL_2D, PAD, RESHAPE),
# so they get no range of their own.
_RANGE_KEEPING = (layers.MaxPooling2D, layers.AveragePooling2D, layers.ZeroPadding2D,
                  layers.Flatten, layers.Dropout, layers.Reshape)


def _fake_quant_kernel(kernel, per_channel):
    """Symmetric int8 from the current kernel, per output channel (the last axis) or not."""
    axis = tuple(range(len(kernel.shape) - 1)) if per_channel else None
    bound = ops.stop_gradient(ops.maximum(ops.max(ops.abs(kernel), axis=axis),
                                          keras.config.epsilon()))  # a dead channel
    return keras.quantizers.fake_quant_with_min_max_vars(
        kernel, -bound, bound, num_bits=8, narrow_range=True, axis=-1 if per_channel else None)


@keras.saving.register_keras_serializable(package="keras_googlenet")
class ActivationQuantizer(layers.Layer):
    """Per-tensor asymmetric 8-bit fake quantization with a range learned in training (a
    moving average of the batch min/max, with `decay`; docs/quantization.md), frozen in
    inference and empty ([0, 0]) until trained; `fixed_range=(lo, hi)` pins it instead."""

    def __init__(self, decay=RANGE_DECAY, fixed_range=None, **kwargs):
        kwargs["dtype"] = "float32"  # TensorFlow's fake-quant ops are float32 only
        super().__init__(**kwargs)
        self.decay = float(decay)
        self.fixed_range = None if fixed_range is None else tuple(map(float, fixed_range))

    def build(self, input_shape):
        low, high = self.fixed_range or (0.0, 0.0)
        self.range_min, self.range_max = (
            self.add_weight(shape=(), initializer=keras.initializers.Constant(value),
                            trainable=False, name=name)
            for name, value in (("range_min", low), ("range_max", high)))

    def call(self, inputs, training=None):
        x = ops.cast(inputs, "float32")
        if training and self.fixed_range is None:
            # decay 0 on the first batch (an empty range): the batch sets the range
            decay = self.decay * ops.cast(self.range_max > self.range_min, "float32")
            for variable, batch in ((self.range_min, ops.minimum(ops.min(x), 0.0)),
                                    (self.range_max, ops.maximum(ops.max(x), 0.0))):
                variable.assign(decay * variable + (1.0 - decay) * batch)
        return keras.quantizers.fake_quant_with_min_max_vars(x, self.range_min, self.range_max)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "decay": self.decay, "fixed_range": self.fixed_range}


@keras.saving.register_keras_serializable(package="keras_googlenet")
class QuantizedConv2D(layers.Conv2D):
    """`Conv2D` computing with its kernel fake-quantized (symmetric int8 per output channel);
    `quantize_aware` puts the folded BatchNorm in its kernel and bias."""

    def call(self, inputs):
        outputs = self.convolution_op(inputs, _fake_quant_kernel(self.kernel, per_channel=True))
        if self.use_bias:
            outputs = outputs + self.bias  # channels_last, the only format GoogLeNet builds
        return self.activation(outputs)


@keras.saving.register_keras_serializable(package="keras_googlenet")
class QuantizedDense(layers.Dense):
    """`Dense` computing with its kernel fake-quantized (symmetric int8, per tensor).
    An activation other than linear or ReLU (softmax) gets a learned range on its input: in
    TFLite it runs after an int8 FULLY_CONNECTED, on int8 logits."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        fused = self.activation in (keras.activations.linear, keras.activations.relu)
        self.logits_quantizer = None if fused else ActivationQuantizer(name="logits_quantizer")

    def build(self, input_shape):
        super().build(input_shape)
        if self.logits_quantizer is not None:
            self.logits_quantizer.build((None, self.units))

    def call(self, inputs, training=None):
        # per tensor: the converter cannot carry a per-channel range through its transpose
        # of the kernel to FULLY_CONNECTED's layout ("mismatched quantized axes")
        outputs = ops.matmul(inputs, _fake_quant_kernel(self.kernel, per_channel=False))
        if self.use_bias:
            outputs = outputs + self.bias
        if self.logits_quantizer is not None:
            outputs = self.logits_quantizer(outputs, training=training)
        return self.activation(outputs)


def _consumers(model):
    """{layer name: the layers its output feeds}, read from the public `.input`/`.output`."""
    producer = {id(t): layer for layer in model.layers for t in keras.tree.flatten(layer.output)}
    consumers = {layer.name: [] for layer in model.layers}
    for layer in model.layers:
        if not isinstance(layer, layers.InputLayer):
            for tensor in keras.tree.flatten(layer.input):
                consumers[producer[id(tensor)].name].append(layer)
    return consumers


def _batch_norm_folds(model, consumers_of):
    """{conv or dense name: the BatchNormalization that alone consumes it}."""
    folds = {}
    for layer in model.layers:
        consumers = consumers_of[layer.name]
        if (isinstance(layer, (layers.Conv2D, layers.Dense)) and len(consumers) == 1
                and isinstance(consumers[0], layers.BatchNormalization)
                and consumers[0].axis in (-1, [-1])):
            folds[layer.name] = consumers[0]
    return folds


def _folded_weights(layer, batch_norm):
    """(kernel, bias) of `layer` followed by `batch_norm` in inference: one affine map."""
    bias = ops.convert_to_numpy(layer.bias) if layer.use_bias else 0.0
    mean, variance = (ops.convert_to_numpy(v) for v in (batch_norm.moving_mean,
                                                        batch_norm.moving_variance))
    scale = 1.0 / (variance + batch_norm.epsilon) ** 0.5
    if batch_norm.scale:
        scale = scale * ops.convert_to_numpy(batch_norm.gamma)
    shift = ops.convert_to_numpy(batch_norm.beta) if batch_norm.center else 0.0
    return [ops.convert_to_numpy(layer.kernel) * scale, (bias - mean) * scale + shift]


def _quantized_weights(layer, folds):
    """The weights of `layer`'s quantization-aware copy."""
    if layer.name in folds:
        return _folded_weights(layer, folds[layer.name])
    if isinstance(layer, layers.Rescaling):  # x * scale + offset as a diagonal 1x1 conv
        channels = layer.input.shape[-1]
        scale, offset = (np.broadcast_to(np.asarray(v, "float32"), (channels,))
                         for v in (layer.scale, layer.offset))
        return [np.diag(scale)[None, None], offset]
    return layer.get_weights()


def _gets_own_range(layer, consumers_of, folds):
    """Whether `layer`'s output gets a learned range (see docs/quantization.md, "Where")."""
    consumers = consumers_of[folds.get(layer.name, layer).name]  # past a folded BatchNorm
    if isinstance(layer, _RANGE_KEEPING):
        return False
    if consumers and all(isinstance(c, layers.Concatenate) for c in consumers):
        return False  # the concatenation's range is its branches' (TFLite requires one)
    if isinstance(layer, (layers.Conv2D, layers.Dense)):
        # a ReLU after it is fused into the op: the ReLU's output range is the op's
        linear = layer.activation is keras.activations.linear
        relu_next = consumers and all(isinstance(c, layers.ReLU) for c in consumers)
        return (linear and not relu_next) or layer.activation is keras.activations.relu
    return True


def _assign(layer, values):
    """Set `layer`'s weights from `values`, or its first ones: a QuantizedDense's logits
    range comes after its kernel and bias, and the float layer has none."""
    for variable, value in zip(layer.weights, values, strict=False):
        variable.assign(value)


def _check_googlenet(model):
    if not isinstance(model, keras.Model) or isinstance(model, keras.Sequential) \
            or not hasattr(model, "output"):
        raise ValueError("`model` must be a functional GoogLeNet keras.Model (from "
                         f"keras_googlenet.GoogLeNet); received {type(model).__name__}.")
    if find_layer(model, "conv1_conv") is None or find_layer(model, "inception_3a") is None:
        raise ValueError("`model` must be a GoogLeNet (layers 'conv1_conv', 'inception_3a', "
                         f"...) from keras_googlenet.GoogLeNet; received model {model.name!r}.")
    for layer in model.layers:  # a subclass would stay float, or lose its own `call`
        if isinstance(layer, tuple(_QUANTIZED)) and type(layer) not in _QUANTIZED \
                and not isinstance(layer, tuple(_QUANTIZED.values())):
            raise ValueError(f"`model` has layer {layer.name!r} of type {type(layer).__name__}: "
                             "quantize_aware quantizes Keras' own Conv2D and Dense, no subclass.")


_QUANTIZED = {layers.Conv2D: QuantizedConv2D, layers.Dense: QuantizedDense}


def _quantized_clone(layer, folds):
    """The float32 copy of `layer`, its conv/dense as the fake-quantized kind."""
    if isinstance(layer, layers.Rescaling):
        # TFLite's MUL then ADD would need a range between them: one int8 CONV_2D needs none
        return QuantizedConv2D(layer.input.shape[-1], 1, trainable=False, dtype="float32",
                               name=layer.name)
    config = {**layer.get_config(), "dtype": "float32"}  # fake quant runs in float32
    if layer.name in folds:
        config["use_bias"] = True  # the folded BatchNorm's shift
    return _QUANTIZED.get(type(layer), type(layer)).from_config(config)


def quantize_aware(model):
    """A quantization-aware copy of a GoogLeNet, to fine-tune and then convert to int8.

    Same topology, layer names and (folded) weights, in float32 whatever the dtype policy,
    quantized as TFLite does (docs/quantization.md): each BatchNormalization is folded into
    the conv or dense layer before it, now a `QuantizedConv2D`/`QuantizedDense` of the same
    name, and activations get `ActivationQuantizer` layers named `<layer>_quant`.
    Train it with `compile_googlenet` and `fit` (aux heads train along), then convert it
    with `tflite_from_learned_ranges`; the activation ranges are empty until it has trained.

    Args:
        model: a functional GoogLeNet from `keras_googlenet.GoogLeNet` (any variant, with or
            without aux heads, trained or not), not one that is quantize-aware already. It
            is left unchanged.

    Returns:
        A new, uncompiled `keras.Model` with the same input names and shapes (float32)
        and the same outputs.

    Raises:
        ValueError: `model` is not a functional GoogLeNet, has a subclass of Conv2D/Dense,
            or is quantize-aware already.
    """
    _check_googlenet(model)
    if is_quantize_aware(model):  # its quantizers would be quantized again
        raise ValueError("`model` is quantize-aware already (it comes from quantize_aware): "
                         "fine-tune it as it is, or pass the float GoogLeNet it was made from.")
    consumers_of, sources = _consumers(model), {layer.name: layer for layer in model.layers}
    folds = _batch_norm_folds(model, consumers_of)
    folded = {bn.name for bn in folds.values()}
    new_inputs = keras.tree.map_structure(
        lambda t: keras.Input(batch_shape=t.shape, dtype="float32", name=t.name), model.input)
    pixels = PIXEL_RANGE if has_preprocessing_layer(model) else None
    quantized_inputs = {id(t): ActivationQuantizer(fixed_range=pixels, name=f"{t.name}_quant")(t)
                        for t in keras.tree.flatten(new_inputs)}

    def call(layer, *args, **kwargs):
        args = keras.tree.map_structure(lambda t: quantized_inputs.get(id(t), t), args)
        if layer.name in folded:
            return args[0]
        outputs = layer(*args, **kwargs)
        source = sources[layer.name]
        _assign(layer, _quantized_weights(source, folds))
        if _gets_own_range(source, consumers_of, folds):
            return ActivationQuantizer(name=f"{layer.name}_quant")(outputs)
        return outputs

    return keras.models.clone_model(
        model, input_tensors=new_inputs, clone_function=lambda layer: _quantized_clone(
            layer, folds), call_function=call)


def is_quantize_aware(model):
    """Whether `model` is a `keras.Model` from `quantize_aware` (it has `ActivationQuantizer`s)."""
    return isinstance(model, keras.Model) and any(
        isinstance(layer, ActivationQuantizer) for layer in model.layers)


def _check_quantized(model):
    if not is_quantize_aware(model):
        raise ValueError("`model` must be a model returned by quantize_aware; received "
                         f"{type(model).__name__} without fake quantization.")


def folded_float_model(model):
    """The float model `quantize_aware(...)` computes without its fake quantization: plain
    Keras `Conv2D`/`Dense` layers holding the folded, fine-tuned weights, and no quantizers.
    This is what a float export of a QAT model holds. `ValueError` unless `model` comes from
    `quantize_aware`."""
    _check_quantized(model)

    def clone(layer):
        float_cls = {q: f for f, q in _QUANTIZED.items()}.get(type(layer), type(layer))
        return float_cls.from_config(layer.get_config())

    def call(layer, *args, **kwargs):
        if isinstance(layer, ActivationQuantizer):
            return args[0]
        outputs = layer(*args, **kwargs)
        _assign(layer, model.get_layer(layer.name).get_weights())
        return outputs

    return keras.models.clone_model(model, clone_function=clone, call_function=call)


def with_pixel_input(model):
    """`model` (from `quantize_aware`) taking RGB pixels in [0, 255], sharing its layers:
    `preprocess_in_model`'s layer goes in front as a frozen 1x1 `QuantizedConv2D` after a
    fixed [0, 255] range. A model with its preprocessing inside is returned as it is."""
    _check_quantized(model)
    if has_preprocessing_layer(model):
        return model
    pixels = keras.Input(batch_shape=model.input.shape, name=model.input.name)
    preprocessing = keras.Model(pixels, preprocess_in_model(pixels)).layers[-1]
    conv = _quantized_clone(preprocessing, {})
    scaled = conv(ActivationQuantizer(fixed_range=PIXEL_RANGE, name="pixels_quant")(pixels))
    _assign(conv, _quantized_weights(preprocessing, {}))

    def call(layer, *args, **kwargs):  # the model's input quantizer now reads the conv
        args = keras.tree.map_structure(lambda t: scaled if t is pixels else t, args)
        return layer(*args, **kwargs)

    return keras.models.clone_model(model, input_tensors=pixels, clone_function=lambda x: x,
                                    call_function=call)


def tflite_from_learned_ranges(model, int8_io="uint8"):
    """The full-integer `.tflite` (bytes) of a trained `quantize_aware` model, converted
    from its learned ranges: no representative dataset, the converter does not recalibrate.

    Args:
        model: a model returned by `quantize_aware`, after training; with aux heads, the
            main head is converted (`inference_model`).
        int8_io: the input/output type, `"uint8"`, `"int8"` or `"float32"`. A uint8 input
            carries the pixels unchanged when the model has its preprocessing inside.

    Raises:
        ValueError: `model` is not from `quantize_aware` or has not trained (a range is
            still empty), or `int8_io` is not one of the three.
    """
    import tensorflow as tf

    from keras_googlenet.export.formats import INT8_IO_TYPES  # export imports this module

    _check_quantized(model)
    one_of("int8_io", int8_io, INT8_IO_TYPES)
    if untrained := [q.name for q in model.layers if isinstance(q, ActivationQuantizer)
                     and float(q.range_max) <= float(q.range_min)]:
        raise ValueError(f"`model` has not trained: {len(untrained)} activation ranges are "
                         f"still empty (first: {untrained[0]!r}); fit it for a few steps first.")
    with tempfile.TemporaryDirectory() as savedmodel:
        # a SavedModel freezes the variables: the converter reads the ranges as constants
        inference_model(model).export(savedmodel, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(savedmodel)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.inference_input_type = converter.inference_output_type = getattr(tf, int8_io)
        return converter.convert()
