import warnings

import keras
import numpy as np
import pytest

from keras_googlenet import GoogLeNet, count_params, spec

PARAMS = {  # trainable, 224x224, 1000 classes: (main only, with aux)
    "v1": (6_998_552, 13_378_280),
    "v1_bn": (7_005_832, 13_385_816),
    "torchvision": (6_624_904, 13_004_888),  # torchvision's published figure
    "factorized": (7_292_264, 13_672_248),  # documented in README
}

TABLE1_SHAPES = {
    "pool2": (28, 28, 192),
    "inception_3a": (28, 28, 256),
    "inception_3b": (28, 28, 480),
    "pool3": (14, 14, 480),
    "inception_4a": (14, 14, 512),
    "inception_4b": (14, 14, 512),
    "inception_4c": (14, 14, 512),
    "inception_4d": (14, 14, 528),
    "inception_4e": (14, 14, 832),
    "pool4": (7, 7, 832),
    "inception_5a": (7, 7, 832),
    "inception_5b": (7, 7, 1024),
}


@pytest.mark.parametrize("variant", sorted(PARAMS))
@pytest.mark.parametrize("include_aux", [False, True])
def test_trainable_parameter_counts_are_exact(variant, include_aux):
    model = GoogLeNet(variant=variant, include_aux=include_aux)
    assert count_params(model) == PARAMS[variant][include_aux]


@pytest.mark.parametrize("variant", sorted(PARAMS))
def test_table1_shapes_at_224(variant):
    model = GoogLeNet(variant=variant)
    got = {name: tuple(model.get_layer(name).output.shape[1:]) for name in TABLE1_SHAPES}
    assert got == TABLE1_SHAPES
    assert tuple(model.get_layer("conv1").output.shape[1:]) == (112, 112, 64)
    assert tuple(model.get_layer("pool1").output.shape[1:]) == (56, 56, 64)
    assert tuple(model.output.shape) == (None, 1000)


def test_blocks_and_branches_have_stable_names():
    model = GoogLeNet(variant="v1_bn")
    block = model.get_layer("inception_4e")
    assert isinstance(block, keras.layers.Concatenate)
    for branch in ("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool", "pool_proj"):
        model.get_layer(f"inception_4e_{branch}")
    for name in spec.ENDPOINTS:
        model.get_layer(name)


def test_feature_taps_build_a_multi_scale_extractor():
    model = GoogLeNet(include_top=False, input_shape=(64, 64, 3), variant="v1_bn")
    taps = keras.Model(model.input, {n: model.get_layer(n).output
                                     for n in ("inception_3b", "inception_4e", "inception_5b")})
    out = taps(np.zeros((1, 64, 64, 3), "float32"))
    assert out["inception_3b"].shape == (1, 8, 8, 480)
    assert out["inception_4e"].shape == (1, 4, 4, 832)
    assert out["inception_5b"].shape == (1, 2, 2, 1024)


@pytest.mark.slow
def test_variant_options_show_in_the_layers():
    kernel = {v: GoogLeNet(variant=v, include_top=False, input_shape=(64, 64, 3))
              .get_layer("inception_3a_5x5_conv").kernel.shape[0] for v in PARAMS}
    assert kernel == {"v1": 5, "v1_bn": 5, "torchvision": 3, "factorized": 3}
    v1 = GoogLeNet(variant="v1", include_top=False, input_shape=(64, 64, 3))
    assert [layer.name for layer in v1.layers if "norm" in layer.name] == ["norm1", "norm2"]
    assert v1.get_layer("conv1_conv").use_bias
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in v1.layers)
    bn = GoogLeNet(variant="v1_bn", include_top=False, input_shape=(64, 64, 3))
    assert not bn.get_layer("conv1_conv").use_bias
    assert bn.get_layer("conv1_bn").epsilon == pytest.approx(1e-3)
    factorized = GoogLeNet(variant="factorized", include_top=False, input_shape=(64, 64, 3))
    factorized.get_layer("inception_3a_5x5_pre")
    tv = GoogLeNet(variant="torchvision", include_top=False, input_shape=(64, 64, 3))
    assert tv.get_layer("pool4").pool_size == (2, 2)


@pytest.mark.parametrize("variant", sorted(PARAMS))
def test_aux_heads_follow_the_paper(variant):
    model = GoogLeNet(variant=variant, include_aux=True, classes=10)
    assert set(model.output) == {"main", "aux1", "aux2"}
    assert tuple(model.get_layer("aux1_pool").output.shape[1:]) == (4, 4, 512)
    assert tuple(model.get_layer("aux2_pool").output.shape[1:]) == (4, 4, 528)
    assert model.get_layer("aux1_proj_conv").filters == 128
    assert model.get_layer("aux1_fc").units == 1024
    assert model.get_layer("aux1_dropout").rate == pytest.approx(0.7)
    assert model.get_layer("aux2_predictions").units == 10
    # aux1 hangs off 4a, aux2 off 4d
    assert model.get_layer("aux1_pool").input is model.get_layer("inception_4a").output
    assert model.get_layer("aux2_pool").input is model.get_layer("inception_4d").output
    assert model.layers[-1].name == "predictions"
    assert model.layers[-1].activation is keras.activations.softmax


def test_main_classifier_is_the_last_layer_with_the_requested_activation():
    model = GoogLeNet(classes=7, classifier_activation=None, input_shape=(64, 64, 3))
    assert model.layers[-1].name == "predictions"
    assert model.layers[-1].activation is keras.activations.linear
    assert model.get_layer("dropout").rate == pytest.approx(0.4)


def test_heads_run_in_float32_under_mixed_precision():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = GoogLeNet(variant="v1", include_aux=True, input_shape=(96, 96, 3), classes=5)
    assert model.get_layer("inception_4e_3x3_conv").compute_dtype == "bfloat16"
    outputs = model(np.random.rand(2, 96, 96, 3).astype("float32"))
    assert {k: keras.backend.standardize_dtype(v.dtype) for k, v in outputs.items()} == {
        "main": "float32", "aux1": "float32", "aux2": "float32"}
    np.testing.assert_allclose(np.sum(outputs["main"], axis=-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("pooling, rank", [(None, 4), ("avg", 2), ("max", 2)])
@pytest.mark.parametrize("channels", [1, 4])
def test_feature_extractor_accepts_any_size_and_channel_count(pooling, rank, channels):
    model = GoogLeNet(include_top=False, input_shape=(None, None, channels), pooling=pooling)
    assert not any(isinstance(layer, keras.layers.Dense) for layer in model.layers)
    out = model(np.zeros((2, 64, 96, channels), "float32"))
    assert len(out.shape) == rank and out.shape[-1] == 1024
    if rank == 4:
        assert tuple(out.shape[1:3]) == (2, 3)


def test_include_top_false_defaults_to_dynamic_spatial_size():
    model = GoogLeNet(include_top=False)
    assert tuple(model.input.shape) == (None, None, None, 3)


def test_custom_input_tensor_is_used():
    image = keras.Input((80, 80, 3), name="camera")
    model = GoogLeNet(input_tensor=image, classes=3, variant="v1_bn")
    assert model.inputs[0] is image
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert model(np.zeros((1, 80, 80, 3), "float32")).shape == (1, 3)
    # a single source input is the model's input, not a one-element list of inputs
    assert not [w for w in caught if "structure of `inputs`" in str(w.message)]


def test_input_tensor_downstream_of_other_layers_keeps_the_source_input():
    raw = keras.Input((100, 100, 3))
    resized = keras.layers.Resizing(64, 64)(raw)
    model = GoogLeNet(input_tensor=resized, include_top=False, pooling="avg")
    assert model.inputs[0] is raw


def test_dynamic_size_aux_heads_work_for_the_adaptive_torchvision_variant():
    model = GoogLeNet(variant="torchvision", include_aux=True, input_shape=(None, None, 3),
                      classes=4)
    out = model(np.zeros((1, 80, 112, 3), "float32"))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "main": (1, 4), "aux1": (1, 4), "aux2": (1, 4)}


def test_smallest_inputs_build_and_run():
    assert GoogLeNet(input_shape=(32, 32, 3), classes=2)(np.zeros((1, 32, 32, 3))).shape == (1, 2)
    aux = GoogLeNet(input_shape=(65, 65, 3), classes=2, include_aux=True)
    assert aux(np.zeros((1, 65, 65, 3)))["aux1"].shape == (1, 2)
    tv = GoogLeNet(input_shape=(49, 49, 3), classes=2, include_aux=True, variant="torchvision")
    assert tv(np.zeros((1, 49, 49, 3)))["aux2"].shape == (1, 2)


def test_widths_and_width_multiplier_change_the_network():
    model = GoogLeNet(widths={"4e": (8, 16, 24, 8, 16, 8)}, input_shape=(64, 64, 3))
    assert model.get_layer("inception_4e").output.shape[-1] == 8 + 24 + 16 + 8
    assert model.get_layer("inception_4e_3x3_reduce_conv").filters == 16
    half = GoogLeNet(width_multiplier=0.5, include_top=False, input_shape=(64, 64, 3))
    assert half.get_layer("conv1_conv").filters == 32
    assert half.get_layer("inception_5b").output.shape[-1] == 512
    assert count_params(half) < count_params(GoogLeNet(include_top=False,
                                                       input_shape=(64, 64, 3))) / 3


def test_two_instances_nest_in_one_model():
    a = GoogLeNet(include_top=False, pooling="avg", input_shape=(64, 64, 3), name="left")
    b = GoogLeNet(include_top=False, pooling="avg", input_shape=(64, 64, 3), name="right")
    image = keras.Input((64, 64, 3))
    both = keras.Model(image, keras.layers.Concatenate()([a(image), b(image)]))
    assert both(np.zeros((1, 64, 64, 3))).shape == (1, 2048)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"variant": "inception_v3"}, "`variant` must be one of"),
        ({"variant": ["v1"]}, "`variant` must be one of"),  # unhashable: still a ValueError
        ({"include_top": False, "include_aux": True}, "`include_aux=True` needs `include_top"),
        ({"include_top": False, "pooling": "mean"}, "`pooling` must be one of"),
        ({"classes": 0}, "`classes` must be a positive int"),
        ({"classes": 2.5}, "`classes` must be a positive int"),
        ({"classifier_activation": "no_such_fn"}, "`classifier_activation` must be"),
        ({"widths": {"3a": (1, 2)}}, "six positive ints"),
        ({"width_multiplier": 0}, "`width_multiplier` must be a positive number"),
        ({"dropout": 1.0}, "`dropout` must be a rate"),
        ({"aux_dropout": -0.1, "include_aux": True}, "`aux_dropout` must be a rate"),
        ({"input_shape": (31, 224, 3)}, r"at least 32x32 .*65 with"),
        ({"input_shape": (64, 64, 3), "include_aux": True}, r"at least 65x65"),
        ({"input_shape": (48, 48, 3), "include_aux": True, "variant": "torchvision"},
         r"at least 49x49"),
        ({"input_shape": (224, 224)}, "`input_shape` must be"),
        ({"input_shape": (224, 224, 0)}, "`input_shape` must be"),
        ({"input_shape": (None, None, 3), "include_aux": True}, "fixed height and width"),
        ({"weights": "imagenet"}, "needs variant=.torchvision."),
        ({"weights": "missing.weights.h5"}, "`weights` file not found"),
        ({"weights": "model.h5"}, "ending in '.weights.h5'"),
        ({"weights": 3}, "`weights` must be None, 'imagenet' or a path"),
    ],
)
def test_bad_arguments_raise_clear_value_errors(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        GoogLeNet(**kwargs)


def test_activation_other_than_softmax_is_refused_with_weights(tmp_path):
    path = tmp_path / "w.weights.h5"
    GoogLeNet(input_shape=(64, 64, 3), classes=3).save_weights(path)
    with pytest.raises(ValueError, match="With `weights`, `classifier_activation`"):
        GoogLeNet(input_shape=(64, 64, 3), classes=3, weights=str(path),
                  classifier_activation="sigmoid")


def test_incompatible_input_tensor_is_rejected():
    with pytest.raises(ValueError, match="incompatible with `input_shape"):
        GoogLeNet(input_tensor=keras.Input((96, 96, 3)), input_shape=(128, 128, 3))
    with pytest.raises(ValueError, match="`input_tensor` must be a Keras tensor"):
        GoogLeNet(input_tensor=np.zeros((1, 96, 96, 3)))
    with pytest.raises(ValueError, match="batch of images"):
        GoogLeNet(input_tensor=keras.Input((96, 3)))


@pytest.mark.slow
def test_weights_file_round_trips_and_mismatches_are_explained(tmp_path):
    model = GoogLeNet(variant="v1_bn", input_shape=(64, 64, 3), classes=3)
    path = tmp_path / "g.weights.h5"
    model.save_weights(path)
    loaded = GoogLeNet(variant="v1_bn", input_shape=(64, 64, 3), classes=3, weights=str(path))
    x = np.random.rand(2, 64, 64, 3).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="built with the same arguments"):
            GoogLeNet(variant="v1_bn", input_shape=(64, 64, 3), classes=5, weights=str(path))
    # Keras' own "Skipping nested container ..." warning is not shown on top of the error
    assert not [w for w in caught if issubclass(w.category, UserWarning)]


def test_set_batch_norm_momentum_reaches_every_batchnorm():
    from keras_googlenet.googlenet import set_batch_norm_momentum

    model = set_batch_norm_momentum(
        GoogLeNet(variant="v1_bn", include_aux=True, input_shape=(65, 65, 3), classes=2), 0.9)
    momenta = {layer.momentum for layer in model.layers
               if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta == {0.9}
