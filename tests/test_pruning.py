import keras
import numpy as np
import pytest

from keras_googlenet import GoogLeNet, count_params, float32_inference_model, inference_model


def test_inference_model_shares_variables_and_drops_aux_heads():
    model = GoogLeNet(variant="torchvision", include_aux=True)
    pruned = inference_model(model)
    assert count_params(pruned) == 6_624_904  # the main-only count
    training_ids = {id(v) for v in model.weights}
    assert pruned.weights and all(id(v) in training_ids for v in pruned.weights)
    assert not any(layer.name.startswith("aux") for layer in pruned.layers)
    assert pruned.layers[-1].name == "predictions"


def test_inference_model_matches_the_main_head_in_inference_mode():
    model = GoogLeNet(variant="v1_bn", include_aux=True, input_shape=(96, 96, 3), classes=6)
    pruned = inference_model(model)
    x = np.random.default_rng(0).random((3, 96, 96, 3)).astype("float32")
    np.testing.assert_allclose(pruned(x, training=False), model(x, training=False)["main"],
                               rtol=0, atol=1e-6)


def test_training_the_full_model_updates_the_pruned_one():
    model = GoogLeNet(variant="v1_bn", include_aux=True, input_shape=(96, 96, 3), classes=2)
    pruned = inference_model(model)
    kernel = pruned.get_layer("predictions").kernel
    model.get_layer("predictions").kernel.assign(np.ones(kernel.shape, "float32"))
    np.testing.assert_array_equal(kernel.numpy(), 1.0)


def test_inference_model_of_a_single_output_model_is_equivalent():
    model = GoogLeNet(input_shape=(64, 64, 3), classes=3)
    pruned = inference_model(model)
    x = np.random.rand(1, 64, 64, 3).astype("float32")
    np.testing.assert_array_equal(pruned(x), model(x))


def test_inference_model_rejects_non_functional_models():
    with pytest.raises(ValueError, match="functional Keras model"):
        inference_model(keras.Sequential())


def test_float32_rebuild_of_a_mixed_precision_model_has_identical_weights():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = GoogLeNet(variant="v1", include_aux=True, input_shape=(96, 96, 3), classes=4)
    keras.config.set_dtype_policy("float32")
    rebuilt = float32_inference_model(model)
    assert {layer.dtype_policy.name for layer in rebuilt.layers} == {"float32"}
    assert count_params(rebuilt) == count_params(inference_model(model))
    for a, b in zip(inference_model(model).weights, rebuilt.weights, strict=True):
        assert a is not b
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    x = np.random.default_rng(1).random((2, 96, 96, 3)).astype("float32") * 2 - 1
    # bf16 keeps ~3 significant digits: the float32 rebuild agrees to that precision
    np.testing.assert_allclose(rebuilt(x), model(x)["main"], atol=2e-2)
    assert keras.backend.standardize_dtype(rebuilt(x).dtype) == "float32"


@pytest.mark.slow
def test_float32_rebuild_converts_to_tflite(tmp_path):
    import tensorflow as tf

    keras.config.set_dtype_policy("mixed_bfloat16")
    model = GoogLeNet(variant="v1", include_aux=True, input_shape=(65, 65, 3), classes=3,
                      width_multiplier=0.25)
    keras.config.set_dtype_policy("float32")
    rebuilt = float32_inference_model(model)
    rebuilt.export(str(tmp_path / "sm"), verbose=False)
    flatbuffer = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "sm")).convert()
    assert len(flatbuffer) > 10_000
