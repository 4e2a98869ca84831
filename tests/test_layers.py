"""FusedBatchNormalization must be a drop-in for keras.layers.BatchNormalization, and
`portable_model` must turn it back into one."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_googlenet import GoogLeNet
from keras_googlenet.layers import FusedBatchNormalization, portable_model


def _pair(dtype, rng, channels=8, **kwargs):
    reference = keras.layers.BatchNormalization(epsilon=1e-3, momentum=0.9, dtype=dtype,
                                                **kwargs)
    fused = FusedBatchNormalization(epsilon=1e-3, momentum=0.9, dtype=dtype, **kwargs)
    shape = (4, 5, 5, channels)
    reference.build(shape)
    fused.build(shape)
    gamma, beta = rng.uniform(0.5, 2, channels), rng.normal(0, 1, channels)
    statistics = [rng.normal(0, 1, channels), rng.uniform(0.5, 2, channels)]
    values = [*([gamma] if reference.scale else []), *([beta] if reference.center else []),
              *statistics]
    for layer in (reference, fused):
        layer.set_weights([v.astype("float32") for v in values])
    return reference, fused


def _step(layer, x, weighting, training=True):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(tf.cast(y, "float32") * weighting)
    grads = tape.gradient(loss, [x, *layer.trainable_weights])
    return tf.cast(y, "float32").numpy(), [g.numpy() for g in grads]


@pytest.mark.parametrize("dtype,tolerance", [("float32", 1e-5), ("mixed_bfloat16", 2e-2),
                                             ("mixed_float16", 2e-3)])
def test_training_step_matches_keras_batchnorm(dtype, tolerance):
    rng = np.random.default_rng(0)
    reference, fused = _pair(dtype, rng)
    x = rng.normal(2, 3, (4, 5, 5, 8)).astype("float32")
    weighting = rng.normal(size=x.shape).astype("float32")
    y_ref, grads_ref = _step(reference, x, weighting)
    y_fused, grads_fused = _step(fused, x, weighting)
    assert y_fused.dtype == y_ref.dtype
    np.testing.assert_allclose(y_fused, y_ref, atol=tolerance * np.abs(y_ref).max())
    for g_fused, g_ref in zip(grads_fused, grads_ref, strict=True):
        np.testing.assert_allclose(g_fused, g_ref, atol=tolerance * np.abs(g_ref).max())
    # moving statistics: same update, biased batch variance like Keras 3
    np.testing.assert_allclose(fused.moving_mean.numpy(), reference.moving_mean.numpy(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused.moving_variance.numpy(),
                               reference.moving_variance.numpy(), rtol=1e-5, atol=1e-6)


def test_without_scale_and_center_it_still_matches():
    rng = np.random.default_rng(1)
    reference, fused = _pair("float32", rng, scale=False, center=False)
    x = rng.normal(0, 1, (4, 5, 5, 8)).astype("float32")
    weighting = rng.normal(size=x.shape).astype("float32")
    np.testing.assert_allclose(_step(fused, x, weighting)[0], _step(reference, x, weighting)[0],
                               atol=1e-5)


def test_inference_and_frozen_layers_use_the_moving_statistics():
    rng = np.random.default_rng(2)
    reference, fused = _pair("float32", rng)
    x = rng.normal(2, 3, (4, 5, 5, 8)).astype("float32")
    before = fused.moving_mean.numpy().copy()
    np.testing.assert_allclose(fused(x, training=False), reference(x, training=False), atol=1e-5)
    fused.trainable = False  # frozen: inference mode even when training=True (Keras 3 rule)
    reference.trainable = False
    np.testing.assert_allclose(fused(x, training=True), reference(x, training=True), atol=1e-5)
    np.testing.assert_array_equal(fused.moving_mean.numpy(), before)


@pytest.mark.slow
def test_builder_uses_it_and_it_round_trips(tmp_path):
    model = GoogLeNet(variant="v1_bn", input_shape=(48, 48, 3), classes=3, width_multiplier=0.25)
    batch_norms = [layer for layer in model.layers
                   if isinstance(layer, keras.layers.BatchNormalization)]
    assert batch_norms and all(isinstance(layer, FusedBatchNormalization)
                               for layer in batch_norms)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")  # registered: no custom_objects
    assert type(loaded.get_layer("conv1_bn")) is FusedBatchNormalization
    x = np.random.default_rng(0).random((2, 48, 48, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


@pytest.mark.slow
def test_portable_model_has_keras_own_batch_norm_and_keeps_compile_and_optimizer(tmp_path):
    model = GoogLeNet(variant="v1_bn", input_shape=(48, 48, 3), classes=3, width_multiplier=0.25)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x = np.random.default_rng(0).random((4, 48, 48, 3)).astype("float32")
    # A trained optimizer's state, without tracing a train step: its slots, some values, a step.
    model.optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(1)
    for variable in model.optimizer.variables[1:]:
        variable.assign(rng.random(variable.shape).astype(variable.dtype))
    model.optimizer.iterations.assign(1)
    portable = portable_model(model)
    assert portable is not model and [layer.name for layer in portable.layers] == [
        layer.name for layer in model.layers]
    assert not any(isinstance(layer, FusedBatchNormalization) for layer in portable.layers)
    assert type(portable.get_layer("conv1_bn")) is keras.layers.BatchNormalization
    np.testing.assert_array_equal(portable(x), model(x))
    assert portable.get_compile_config() == model.get_compile_config()
    for ours, theirs in zip(portable.optimizer.variables, model.optimizer.variables,
                            strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    portable.save(tmp_path / "p.keras")
    loaded = keras.models.load_model(tmp_path / "p.keras")
    assert type(loaded.get_layer("conv1_bn")) is keras.layers.BatchNormalization
    assert int(loaded.optimizer.iterations.numpy()) == 1
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    plain = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert portable_model(plain) is plain  # nothing to replace
