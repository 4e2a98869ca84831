import keras
import numpy as np
import pytest

from keras_googlenet import (
    GoogLeNet,
    compile_googlenet,
    head_targets,
)
from keras_googlenet.losses import (
    SmoothedSparseCategoricalCrossentropy,
)


def _data(n=8, size=65, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, size, size, 3)).astype("float32"), rng.integers(0, classes, n)


@pytest.mark.slow
def test_aux_model_reports_per_head_metrics_with_main_prefix():
    model = GoogLeNet(variant="v1_bn", include_aux=True, input_shape=(65, 65, 3), classes=3,
                      width_multiplier=0.25)
    compile_googlenet(model)
    x, y = _data()
    history = model.fit(x, head_targets(model, y), validation_data=(x, head_targets(model, y)),
                        epochs=1, batch_size=4, verbose=0)
    for key in ("main_accuracy", "val_main_accuracy", "aux1_accuracy", "aux2_accuracy",
                "main_loss", "aux1_loss", "aux2_loss", "val_loss"):
        assert key in history.history, key


@pytest.mark.parametrize("weights", [None, {"aux1": 0.5, "aux2": 0.1}])
@pytest.mark.slow
def test_total_loss_is_the_weighted_sum_of_head_losses(weights):
    model = GoogLeNet(variant="v1_bn", include_aux=True, input_shape=(65, 65, 3), classes=3,
                      width_multiplier=0.25)
    compile_googlenet(model, loss_weights=weights)
    x, y = _data()
    logs = model.evaluate(x, head_targets(model, y), verbose=0, return_dict=True)
    w = {"aux1": 0.3, "aux2": 0.3, **(weights or {})}
    expected = logs["main_loss"] + w["aux1"] * logs["aux1_loss"] + w["aux2"] * logs["aux2_loss"]
    assert logs["loss"] == pytest.approx(expected, rel=1e-4)
    assert logs["aux1_loss"] != pytest.approx(logs["main_loss"])  # heads really differ


@pytest.mark.slow
def test_single_output_model_also_reports_main_accuracy():
    model = GoogLeNet(input_shape=(64, 64, 3), classes=3, width_multiplier=0.25)
    compile_googlenet(model)
    x, y = _data(size=64)
    history = model.fit(x, y, validation_data=(x, y), epochs=1, verbose=0)
    assert {"main_accuracy", "val_main_accuracy", "loss"} <= set(history.history)


def test_logits_models_are_compiled_from_logits():
    model = GoogLeNet(input_shape=(64, 64, 3), classes=3, classifier_activation=None,
                      width_multiplier=0.25)
    compile_googlenet(model)
    x, y = _data(size=64)
    logits = model.predict(x, verbose=0)
    expected = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
    loss = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(float(np.mean(expected)), rel=1e-4)


def test_a_main_weight_scales_the_loss_of_a_model_without_aux_heads():
    x, y = _data(size=64)
    losses = []
    for weights in (None, {"main": 2.0}):
        model = GoogLeNet(input_shape=(64, 64, 3), classes=3, width_multiplier=0.25)
        model.set_weights([np.full(w.shape, 0.01, w.dtype) for w in model.get_weights()])
        compile_googlenet(model, loss_weights=weights)
        losses.append(model.evaluate(x, y, verbose=0, return_dict=True)["loss"])
    assert losses[1] == pytest.approx(2 * losses[0], rel=1e-5)


def test_unknown_head_in_loss_weights_is_rejected():
    model = GoogLeNet(include_aux=True, input_shape=(65, 65, 3), classes=3, width_multiplier=0.25)
    with pytest.raises(ValueError, match="unknown head 'aux3'"):
        compile_googlenet(model, loss_weights={"aux3": 1.0})
    plain = GoogLeNet(input_shape=(64, 64, 3), classes=3, width_multiplier=0.25)
    with pytest.raises(ValueError, match="has none"):
        compile_googlenet(plain, loss_weights={"aux1": 0.3})
    with pytest.raises(ValueError, match="include_top=True"):
        compile_googlenet(GoogLeNet(include_top=False, input_shape=(64, 64, 3)))


def test_label_smoothing_matches_dense_cross_entropy():
    y = np.array([0, 2, 1])
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]], "float32")
    ours = SmoothedSparseCategoricalCrossentropy(label_smoothing=0.1)(y, probs)
    reference = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(
        keras.ops.one_hot(y, 3), probs)
    assert float(ours) == pytest.approx(float(reference), rel=1e-6)
    plain = SmoothedSparseCategoricalCrossentropy()(y, probs)
    assert float(plain) < float(ours)
    with pytest.raises(ValueError, match="label_smoothing"):
        SmoothedSparseCategoricalCrossentropy(label_smoothing=1.0)
