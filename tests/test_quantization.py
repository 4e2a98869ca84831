"""Quantization-aware training: `quantize_aware` folds BatchNorm and fake-quantizes as TFLite
will run the model, and `tflite_from_learned_ranges` converts it to full integer from the
ranges it learned (issue #20)."""

import keras
import numpy as np
import pytest

from keras_googlenet import (
    VARIANTS,
    GoogLeNet,
    _compat,
    compile_googlenet,
    head_targets,
    inference_model,
)
from keras_googlenet.quantization import (
    ActivationQuantizer,
    QuantizedConv2D,
    QuantizedDense,
    folded_float_model,
    quantize_aware,
    tflite_from_learned_ranges,
)

SIZE, CLASSES = 32, 4
INT8_OPS = ("CONV_2D", "FULLY_CONNECTED", "CONCATENATION", "MAX_POOL_2D", "MEAN")


def _googlenet(variant="v1_bn", **kwargs):
    return GoogLeNet(input_shape=(SIZE, SIZE, 3), classes=CLASSES, width_multiplier=0.25,
                     variant=variant, **kwargs)


def _images(count, seed=0, size=SIZE):
    return np.random.default_rng(seed).uniform(-1, 1, (count, size, size, 3)).astype("float32")


def _fit(qat_model, images, steps=2):
    labels = np.arange(len(images)) % CLASSES
    compile_googlenet(qat_model)
    qat_model.fit(images, head_targets(qat_model, labels), batch_size=len(images) // steps,
                  epochs=1, verbose=0)
    return qat_model


def _interpreter(flatbuffer):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    return interpreter


def _nodes_with_dtypes(interpreter):
    """[(op name, its input tensors' details, its output tensors' details)]."""
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    return [(node["op_name"], [tensors[i] for i in node["inputs"] if i >= 0],
             [tensors[i] for i in node["outputs"]])
            for node in _compat.tflite_nodes(interpreter) if node["op_name"] != "DELEGATE"]


def _randomize_batch_norms(model, seed=1):
    """Moving statistics and affine parameters far from the identity BN starts with."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape),
                               rng.normal(0, 0.2, mean.shape), rng.uniform(0.5, 2, variance.shape)])


def _googlenet_with_stats():
    model = _googlenet()
    _randomize_batch_norms(model)
    return model


# --- fast: structure, folding, bad input -------------------------------------------------

def test_layer_names_survive_except_the_folded_batch_norms():
    model = _googlenet()
    qat = quantize_aware(model)
    batch_norms = {layer.name for layer in model.layers
                   if isinstance(layer, keras.layers.BatchNormalization)}
    quantizers = {layer.name for layer in qat.layers if isinstance(layer, ActivationQuantizer)}
    assert batch_norms and all(name.endswith("_bn") for name in batch_norms)
    assert {layer.name for layer in qat.layers} - quantizers == \
        {layer.name for layer in model.layers} - batch_norms
    assert all(isinstance(qat.get_layer(layer.name), QuantizedConv2D)
               for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    assert isinstance(qat.get_layer("predictions"), QuantizedDense)


def test_ranges_sit_where_tflite_quantizes():
    qat = quantize_aware(_googlenet())
    names = {layer.name for layer in qat.layers}
    # the input, each conv's ReLU that does not feed a concatenation, each concatenation,
    # the pooled features; the softmax's logits inside `predictions`
    for expected in ("image_quant", "conv1_quant", "inception_3a_3x3_reduce_quant",
                     "inception_3a_quant", "inception_5b_quant", "avg_pool_quant"):
        assert expected in names
    # branches share their concatenation's range; max pools keep their input's
    for absent in ("inception_3a_1x1_quant", "inception_3a_3x3_quant", "inception_3a_5x5_quant",
                   "inception_3a_pool_proj_quant", "pool1_quant", "inception_3a_pool_quant",
                   "predictions_quant", "dropout_quant"):
        assert absent not in names
    assert qat.get_layer("predictions").logits_quantizer is not None


@pytest.mark.slow
def test_folding_is_exact_before_any_training():
    model = _googlenet_with_stats()
    folded = folded_float_model(quantize_aware(model))
    assert not any(isinstance(layer, (keras.layers.BatchNormalization, ActivationQuantizer))
                   for layer in folded.layers)
    images = _images(4)
    np.testing.assert_allclose(folded.predict(images, verbose=0),
                               model.predict(images, verbose=0), atol=1e-4)


def test_v1_lrn_stays_float_and_gets_no_range_of_its_own_input():
    qat = quantize_aware(_googlenet("v1"))
    names = {layer.name for layer in qat.layers}
    # LRN's output is what the next conv reads: quantized; its input is pool1's (conv1's range)
    assert {"norm1_quant", "norm2_quant", "conv1_quant"} <= names
    assert "pool1_quant" not in names
    assert isinstance(qat.get_layer("conv1_conv"), QuantizedConv2D)  # v1: bias, no BN


def test_mixed_precision_models_are_quantized_in_float32():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = _googlenet()
    qat = quantize_aware(model)
    assert model.get_layer("conv1_conv").compute_dtype == "bfloat16"
    assert {layer.compute_dtype for layer in qat.layers[1:]} == {"float32"}  # [0]: the input
    assert qat.input.dtype == "float32"


def test_quantizer_configs_round_trip():
    quantizer = ActivationQuantizer(decay=0.9, fixed_range=(0, 255), name="q")
    clone = ActivationQuantizer.from_config(quantizer.get_config())
    assert (clone.decay, clone.fixed_range, clone.name) == (0.9, (0.0, 255.0), "q")
    dense = QuantizedDense.from_config(QuantizedDense(3, activation="softmax").get_config())
    assert dense.logits_quantizer is not None
    assert QuantizedDense(3, activation="relu").logits_quantizer is None


@pytest.mark.parametrize("model", ["not a model", keras.Sequential([keras.layers.Dense(2)])])
def test_quantize_aware_refuses_what_is_not_a_functional_googlenet(model):
    with pytest.raises(ValueError, match="`model` must be a functional GoogLeNet"):
        quantize_aware(model)


def test_quantize_aware_names_what_it_expects_of_another_model():
    inputs = keras.Input((8, 8, 3))
    other = keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs), name="other")
    with pytest.raises(ValueError, match="must be a GoogLeNet .*'conv1_conv'.*'other'"):
        quantize_aware(other)


def test_quantize_aware_refuses_a_subclass_of_conv2d_it_would_leave_float():
    class MyConv(keras.layers.Conv2D):
        pass

    inputs = keras.Input((8, 8, 3))
    conv = MyConv(4, 1, name="conv1_conv")(inputs)
    model = keras.Model(inputs, keras.layers.Concatenate(name="inception_3a")([conv, conv]))
    with pytest.raises(ValueError, match="'conv1_conv' of type MyConv.*no subclass"):
        quantize_aware(model)


def test_quantize_aware_refuses_a_model_that_is_quantize_aware_already():
    qat = quantize_aware(_googlenet())
    with pytest.raises(ValueError, match="quantize-aware already"):
        quantize_aware(qat)


def test_tflite_refuses_float_untrained_and_unknown_io():
    model = _googlenet()
    with pytest.raises(ValueError, match="`model` must be a model returned by quantize_aware"):
        tflite_from_learned_ranges(model)
    qat = quantize_aware(model)
    with pytest.raises(ValueError, match="`int8_io` must be one of"):
        tflite_from_learned_ranges(qat, int8_io="int16")
    with pytest.raises(ValueError, match="has not trained.*ranges are still empty"):
        tflite_from_learned_ranges(qat)


# --- slow: training and conversion --------------------------------------------------------

@pytest.fixture(scope="module")
def trained():
    """A v1_bn GoogLeNet with aux heads, quantize_aware'd and fine-tuned for two steps."""
    keras.utils.set_random_seed(0)
    size = 65  # the smallest input with aux heads
    model = GoogLeNet(input_shape=(size, size, 3), classes=CLASSES, width_multiplier=0.25,
                      include_aux=True)
    _randomize_batch_norms(model)
    qat = quantize_aware(model)
    before = {layer.name: [float(layer.range_min), float(layer.range_max)]
              for layer in qat.layers if isinstance(layer, ActivationQuantizer)}
    _fit(qat, _images(8, size=size))
    return {"qat": qat, "before": before, "images": _images(32, seed=2, size=size),
            "tflite": tflite_from_learned_ranges(qat)}


@pytest.mark.slow
def test_fit_learns_every_range_the_aux_heads_included(trained):
    qat, before = trained["qat"], trained["before"]
    assert all(low == high == 0.0 for low, high in before.values())  # empty until trained
    after = {layer.name: (float(layer.range_min), float(layer.range_max))
             for layer in qat.layers if isinstance(layer, ActivationQuantizer)}
    assert all(low <= 0.0 <= high and high > low for low, high in after.values())
    assert "aux1_fc_quant" in after and "aux2_proj_quant" in after


@pytest.mark.slow
def test_keras_file_round_trips(trained, tmp_path):
    qat = trained["qat"]
    qat.save(tmp_path / "qat.keras")
    loaded = keras.models.load_model(tmp_path / "qat.keras")
    images = trained["images"][:4]
    np.testing.assert_allclose(inference_model(loaded).predict(images, verbose=0),
                               inference_model(qat).predict(images, verbose=0), atol=1e-6)


@pytest.mark.slow
def test_tflite_is_int8_throughout_with_the_learned_ranges(trained):
    interpreter = _interpreter(trained["tflite"])
    nodes = _nodes_with_dtypes(interpreter)
    for op, inputs, outputs in nodes:
        if op in INT8_OPS:
            # int8 activations and weights; int32 biases (and MEAN's axes)
            assert {t["dtype"].__name__ for t in inputs + outputs} <= {"int8", "int32"}, op
    assert sum(op == "CONV_2D" for op, _, _ in nodes) == 57
    assert sum(op == "FULLY_CONNECTED" for op, _, _ in nodes) == 1  # the aux heads are gone
    image = interpreter.get_input_details()[0]
    low, high = (float(getattr(trained["qat"].get_layer("image_quant"), name))
                 for name in ("range_min", "range_max"))
    assert image["dtype"].__name__ == "uint8"
    assert image["quantization"][0] == pytest.approx((high - low) / 255, rel=1e-3)
    for op, inputs, outputs in nodes:  # the four branches carry the concatenation's scale
        if op == "CONCATENATION":
            assert len({t["quantization"] for t in inputs + outputs}) == 1


@pytest.mark.slow
def test_tflite_top1_agrees_with_the_qat_model(trained):
    interpreter = _interpreter(trained["tflite"])
    (image,), (scores,) = interpreter.get_input_details(), interpreter.get_output_details()
    scale, zero_point = image["quantization"]
    keras_top1 = inference_model(trained["qat"]).predict(trained["images"], verbose=0).argmax(-1)
    lite_top1 = []
    for x in trained["images"]:
        quantized = np.clip(np.round(x / scale + zero_point), 0, 255).astype("uint8")
        interpreter.resize_tensor_input(image["index"], (1, *x.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(image["index"], quantized[None])
        interpreter.invoke()
        lite_top1.append(interpreter.get_tensor(scores["index"])[0].argmax())
    assert np.mean(np.array(lite_top1) == keras_top1) >= 0.8


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_converts_to_integer(variant):
    int8_io = {"v1_bn": "int8", "torchvision": "float32"}.get(variant, "uint8")
    keras.utils.set_random_seed(0)
    model = _googlenet(variant, include_preprocessing=variant == "v1")
    images = _images(4) * 127.5 + 127.5 if variant == "v1" else _images(4)
    qat = _fit(quantize_aware(model), images, steps=1)
    nodes = _nodes_with_dtypes(_interpreter(tflite_from_learned_ranges(qat, int8_io=int8_io)))
    ops = {op for op, _, _ in nodes}
    assert "CONV_2D" in ops and "FULLY_CONNECTED" in ops
    for op, inputs, outputs in nodes:
        if op in ("CONV_2D", "FULLY_CONNECTED"):
            assert {t["dtype"].__name__ for t in inputs + outputs} <= {"int8", "int32"}, op
        if op == "LOCAL_RESPONSE_NORMALIZATION":  # v1: float, as in the calibrated int8
            assert {t["dtype"].__name__ for t in inputs + outputs} == {"float32"}
    assert ("LOCAL_RESPONSE_NORMALIZATION" in ops) == (variant == "v1")
    assert nodes[0][1][0]["dtype"].__name__ == int8_io
