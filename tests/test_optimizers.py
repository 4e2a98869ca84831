"""keras_googlenet.optimizers: Keras' Adam and SGD with one fused kernel per variable."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_googlenet as kg
from keras_googlenet import optimizers

SETTINGS = [
    (optimizers.Adam, keras.optimizers.Adam, {}),
    (optimizers.Adam, keras.optimizers.Adam, {"weight_decay": 0.01, "use_ema": True,
                                              "ema_momentum": 0.5}),
    (optimizers.Adam, keras.optimizers.Adam, {"gradient_accumulation_steps": 2,
                                              "clipnorm": 0.1}),
    (optimizers.Adam, keras.optimizers.Adam, {"amsgrad": True}),  # Keras' own update
    (optimizers.SGD, keras.optimizers.SGD, {"momentum": 0.9}),
    (optimizers.SGD, keras.optimizers.SGD, {"momentum": 0.9, "nesterov": True}),
    (optimizers.SGD, keras.optimizers.SGD, {}),
]


def _trained(optimizer, steps=5):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D(3, 3, use_bias=False),
                              keras.layers.BatchNormalization(), keras.layers.Flatten(),
                              keras.layers.Dense(4)])
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 6, 6, 2)).astype("float32"), rng.integers(0, 4, 8)
    for _ in range(steps):
        model.train_on_batch(x, y)
    return model


@pytest.mark.parametrize("ours, theirs, kwargs", SETTINGS,
                         ids=["adam", "adam-decay-ema", "adam-accumulate-clip", "adam-amsgrad",
                              "sgd-momentum", "sgd-nesterov", "sgd"])
def test_updates_match_keras(ours, theirs, kwargs):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=2, decay_rate=0.5)
    fused = _trained(ours(learning_rate=schedule, **kwargs))
    plain = _trained(theirs(learning_rate=schedule, **kwargs))
    # Float rounding apart (TensorFlow's kernels order the arithmetic their own way).
    for a, b in zip(fused.optimizer.variables + fused.weights,
                    plain.optimizer.variables + plain.weights, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5,
                                   err_msg=a.path)
    assert not np.allclose(np.asarray(fused.weights[0]), np.asarray(_trained(ours(), 0).weights[0]))


@pytest.mark.parametrize("optimizer, kernel", [(optimizers.Adam(), "ResourceApplyAdam"),
                                               (optimizers.SGD(momentum=0.9),
                                                "ResourceApplyKerasMomentum")])
def test_one_fused_kernel_per_trainable_variable(optimizer, kernel):
    variables = _trained(optimizer, steps=0).trainable_variables

    @tf.function
    def step():
        optimizer.apply([tf.ones_like(v) for v in variables], variables)

    types = [op.type for op in step.get_concrete_function().graph.get_operations()]
    assert types.count(kernel) == len(variables) == 5
    assert "AssignSubVariableOp" not in types  # no unfused update left
    if kernel == "ResourceApplyAdam":  # the two bias corrections once, not per variable
        assert types.count("Pow") == 2


def test_the_step_cache_is_no_checkpoint_state():
    fused, plain = _trained(optimizers.Adam(), 1).optimizer, _trained(keras.optimizers.Adam(), 1)
    # TensorFlow's object graph (tf.train.Checkpoint, SavedModel) lists these children.
    assert set(fused._trackable_children()) == set(plain.optimizer._trackable_children())


def test_compile_googlenet_uses_the_fused_adam_for_the_default_and_keeps_yours():
    model = kg.GoogLeNet(input_shape=(32, 32, 3), classes=3, width_multiplier=0.125,
                         include_aux=False, weights=None)
    assert type(kg.compile_googlenet(model).optimizer) is optimizers.Adam
    assert type(kg.compile_googlenet(model, optimizer="sgd").optimizer) is optimizers.SGD
    mine = keras.optimizers.Adam()
    assert kg.compile_googlenet(model, optimizer=mine).optimizer is mine


def test_a_saved_model_restores_the_fused_optimizer(tmp_path):
    model = _trained(optimizers.Adam(learning_rate=0.01, use_ema=True), steps=2)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer) is optimizers.Adam
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
