import keras
import numpy as np
import pytest

from keras_googlenet import GoogLeNet
from keras_googlenet.layers import LocalResponseNormalization


@pytest.mark.parametrize("variant", ["v1", "v1_bn", "torchvision", "factorized"])
@pytest.mark.slow
def test_keras_file_round_trips_without_custom_objects(tmp_path, variant):
    model = GoogLeNet(variant=variant, include_aux=True, input_shape=(65, 65, 3), classes=4,
                      width_multiplier=0.5)
    path = tmp_path / f"{variant}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # safe_mode=True, no custom_objects
    x = np.random.default_rng(0).random((2, 65, 65, 3)).astype("float32")
    expected, got = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    assert set(got) == {"main", "aux1", "aux2"}
    for head in expected:
        np.testing.assert_allclose(got[head], expected[head], rtol=0, atol=1e-6)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in loaded.layers)


def test_serialize_deserialize_round_trip():
    model = GoogLeNet(variant="v1", input_shape=(64, 64, 3), classes=2, width_multiplier=0.25)
    config = keras.saving.serialize_keras_object(model)
    clone = keras.saving.deserialize_keras_object(config)
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    assert clone.count_params() == model.count_params()


def test_lrn_matches_caffe_formula():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 3, 3, 7)).astype("float32") * 30
    y = np.asarray(LocalResponseNormalization(size=5, alpha=1e-4, beta=0.75)(x))
    squares = np.pad(x**2, [(0, 0), (0, 0), (0, 0), (2, 2)])
    window = sum(squares[..., i:i + 7] for i in range(5))
    expected = x / (1 + 1e-4 / 5 * window) ** 0.75
    np.testing.assert_allclose(y, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="`size` must be a positive odd int"):
        LocalResponseNormalization(size=4)


@pytest.mark.parametrize("size,alpha,beta,bias", [(5, 1e-4, 0.75, 1.0), (3, 0.5, 0.5, 2.0)])
def test_lrn_off_tensorflow_computes_tensorflows_formula(size, alpha, beta, bias):
    """Other backends take the `keras.ops` path (tests/test_backends.py runs it on JAX)."""
    layer = LocalResponseNormalization(size=size, alpha=alpha, beta=beta, bias=bias)
    x = np.random.default_rng(1).normal(size=(2, 4, 4, 9)).astype("float32") * 10
    import tensorflow as tf

    expected = tf.nn.local_response_normalization(x, depth_radius=size // 2, bias=bias,
                                                  alpha=alpha / size, beta=beta)
    np.testing.assert_allclose(np.asarray(layer._ops_lrn(x, size // 2)), np.asarray(expected),
                               rtol=1e-5, atol=1e-6)
