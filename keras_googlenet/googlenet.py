"""GoogLeNet (Inception v1) for Keras 3: Szegedy et al., "Going deeper with convolutions",
CVPR 2015 (arXiv:1409.4842)."""

import os

import keras
import numpy as np
from keras import layers

from keras_googlenet import checks
from keras_googlenet import spec as spec_lib
from keras_googlenet.layers import (
    FusedBatchNormalization,
    LocalResponseNormalization,
    load_weights_or_explain,
)
from keras_googlenet.preprocessing import preprocess_in_model

__all__ = ["GoogLeNet", "aux_head", "conv_block", "imagenet_reference_model", "inception_block",
           "set_batch_norm_momentum"]


def GoogLeNet(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
              classes=1000, classifier_activation="softmax", include_aux=False, variant="v1",
              widths=None, width_multiplier=1.0, dropout=0.4, aux_dropout=0.7,
              name="googlenet", include_preprocessing=False):
    """Instantiates the GoogLeNet (Inception v1) architecture.

    Reference:
    - [Going deeper with convolutions](https://arxiv.org/abs/1409.4842) (CVPR 2015)

    The network follows Table 1 of the paper (`keras_googlenet.spec.INCEPTION_WIDTHS`). Layer
    names are stable (README, "Layer names"): blocks `inception_3a` ... `inception_5b`, the
    classifier `predictions`; `keras_googlenet.spec.ENDPOINTS` lists the feature maps to tap.

    Note: each variant expects its own preprocessing: call
    `keras_googlenet.preprocess_input(x, variant=...)` on RGB images in [0, 255], or build
    with `include_preprocessing=True` to feed the pixels as they are.

    Args:
        include_top: whether to include the classifier (global average pool, dropout, dense).
        weights: `None` (random initialization), `"imagenet"` (torchvision's IMAGENET1K_V1
            weights ported onto `variant="torchvision"`, cached in `$KERAS_GOOGLENET_HOME`
            or `~/.keras/models`; docs/weights.md), or the path to a `.weights.h5` file saved
            from a GoogLeNet built with the same arguments.
        input_tensor: optional Keras tensor (output of `keras.Input()`) to use as the input.
        input_shape: optional `(height, width, channels)`; defaults to `(224, 224, 3)` with
            `include_top=True` and `(None, None, 3)` without. Height and width must be at
            least 32, or 65 with auxiliary heads (49 for `"torchvision"`, whose aux heads
            pool adaptively). Any channel count works when `weights=None`.
        pooling: feature pooling when `include_top=False`: `None` (the 4D output of
            `inception_5b`), `"avg"` or `"max"` (global pooling to a 2D tensor).
        classes: number of classes, when `include_top=True`.
        classifier_activation: activation of every classification head, computed in
            float32 (mixed-precision safe). `None` returns logits. With `weights`, only
            `None` or `"softmax"` are allowed.
        include_aux: add the paper's two auxiliary classifiers after `inception_4a` and
            `inception_4d`. The model then has dict outputs `{"main", "aux1", "aux2"}`;
            train it with `compile_googlenet` (loss weights 1.0 / 0.3 / 0.3) and deploy
            `inference_model(model)`.
        variant: `"v1"` (the paper: conv bias, LRN, true 5x5), `"v1_bn"` (BatchNorm after
            every conv), `"torchvision"` (torchvision's topology, for its weights) or
            `"factorized"` (BN, 5x5 as two stacked 3x3). See `keras_googlenet.spec.VARIANTS`.
        widths: optional dict overriding Table 1 widths per block, e.g.
            `{"4e": (256, 160, 320, 32, 128, 128)}` or `{"3a": {"1x1": 48}}`; columns in
            the order `#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj`.
        width_multiplier: scales every conv's width (MobileNet's alpha), to a multiple of 8.
        dropout: dropout rate before the main classifier (the paper: 0.4).
        aux_dropout: dropout rate in the auxiliary heads (the paper: 0.7).
        name: the model's name.
        include_preprocessing: when True the model takes RGB pixels in [0, 255] and applies
            the variant's `preprocess_input` itself, in a `Rescaling` layer named
            `preprocessing` after the input. Needs 3 input channels. The weights are the
            same either way, so weights files and `weights="imagenet"` load into both.

    Returns:
        A `keras.Model`.

    Raises:
        ValueError: an argument is invalid (the message names it), or `weights` does not
            fit the architecture built.
    """
    variant_spec = spec_lib.get_variant(variant)
    block_widths = spec_lib.resolve_widths(widths, width_multiplier)
    _validate_arguments(include_top, weights, pooling, classes, classifier_activation,
                        include_aux, dropout, aux_dropout, include_preprocessing)
    x, model_inputs = _model_inputs(input_tensor, input_shape, include_top, include_aux,
                                    variant_spec, include_preprocessing)

    if include_preprocessing:
        x = preprocess_in_model(x, variant_spec.preprocessing)
    stem = spec_lib.stem_widths(width_multiplier)
    # Pad 3 on every side as Caffe and torchvision do; Keras "same" would pad 2 before
    # and 3 after, shifting the grid and breaking weight parity.
    x = layers.ZeroPadding2D(3, name="conv1_pad")(x)
    x = conv_block(x, stem["conv1"], 7, "conv1", variant_spec, strides=2, padding="valid")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    if variant_spec.lrn:
        x = LocalResponseNormalization(name="norm1")(x)
    x = conv_block(x, stem["conv2_reduce"], 1, "conv2_reduce", variant_spec)
    x = conv_block(x, stem["conv2"], 3, "conv2", variant_spec)
    if variant_spec.lrn:
        x = LocalResponseNormalization(name="norm2")(x)

    aux_outputs = {}
    aux_after = {block: head for head, block in spec_lib.AUX_TAPS.items()}
    for stage_index, stage in enumerate(spec_lib.STAGES):
        last_stage = stage_index == len(spec_lib.STAGES) - 1
        x = layers.MaxPooling2D(variant_spec.last_pool_size if last_stage else 3, strides=2,
                                padding="same", name=f"pool{stage_index + 2}")(x)
        for block in stage:
            x = inception_block(x, block_widths[block], f"inception_{block}", variant_spec)
            if include_aux and (head := aux_after.get(block)):
                aux_outputs[head] = aux_head(
                    x, classes, classifier_activation, aux_dropout, head, variant_spec)

    if include_top or pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    if include_top:
        x = layers.Dropout(dropout, name="dropout")(x)
        # float32 so softmax stays accurate under a mixed-precision policy.
        x = layers.Dense(classes, activation=classifier_activation, dtype="float32",
                         name="predictions")(x)

    model = keras.Model(model_inputs, {"main": x, **aux_outputs} if include_aux else x,
                        name=name)
    if weights == "imagenet":  # validated: None, "imagenet" or a path
        # Imported here: the weights port needs no builder, the builder no port.
        from keras_googlenet.weights.imagenet import load_imagenet_weights

        load_imagenet_weights(model, variant=variant, include_top=include_top, classes=classes,
                              build_reference=imagenet_reference_model, widths=widths,
                              width_multiplier=width_multiplier)
    elif weights is not None:
        load_weights_or_explain(
            lambda: model.load_weights(weights),
            f"Could not load `weights={weights!r}` into this GoogLeNet "
            f"(variant={variant!r}, include_top={include_top}, include_aux={include_aux}, "
            f"classes={classes}, input channels={model.input_shape[-1]}): the file must be "
            "saved from a model built with the same arguments.")
    return model


def imagenet_reference_model():
    """The main-head model whose weights `weights="imagenet"` caches."""
    return GoogLeNet(variant="torchvision", classifier_activation=None, input_shape=(224, 224, 3))


def set_batch_norm_momentum(model, momentum):
    """Set every BatchNormalization's moving-average momentum; returns `model`. 0.9 suits
    short runs: Keras' default 0.99 needs thousands of steps for usable moving statistics."""
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = momentum
    return model


def conv_block(x, filters, kernel_size, name, variant_spec, strides=1, padding="same"):
    """Conv -> [BatchNorm] -> ReLU. The ReLU carries `name`, so taps see activations."""
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding=padding,
                      use_bias=not variant_spec.batch_norm, name=f"{name}_conv")(x)
    if variant_spec.batch_norm:
        # A keras BatchNormalization whose training step is one fused op: faster on CPU.
        x = FusedBatchNormalization(epsilon=variant_spec.batch_norm_epsilon, name=f"{name}_bn")(x)
    return layers.ReLU(name=name)(x)


def inception_block(x, widths, name, variant_spec):
    """The Inception module (paper Figure 2b): four branches concatenated on channels."""
    n1x1, n3x3_reduce, n3x3, n5x5_reduce, n5x5, n_pool_proj = widths
    branch_1x1 = conv_block(x, n1x1, 1, f"{name}_1x1", variant_spec)

    branch_3x3 = conv_block(x, n3x3_reduce, 1, f"{name}_3x3_reduce", variant_spec)
    branch_3x3 = conv_block(branch_3x3, n3x3, 3, f"{name}_3x3", variant_spec)

    branch_5x5 = conv_block(x, n5x5_reduce, 1, f"{name}_5x5_reduce", variant_spec)
    if variant_spec.five_by_five_branch == "two_3x3":
        # Two stacked 3x3 convs see 5x5 with fewer weights (Inception v2/v3).
        branch_5x5 = conv_block(branch_5x5, n5x5, 3, f"{name}_5x5_pre", variant_spec)
    # torchvision's "5x5" is 3x3 (vision#906); the branch keeps the paper's name.
    kernel = 5 if variant_spec.five_by_five_branch == "5x5" else 3
    branch_5x5 = conv_block(branch_5x5, n5x5, kernel, f"{name}_5x5", variant_spec)

    branch_pool = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    branch_pool = conv_block(branch_pool, n_pool_proj, 1, f"{name}_pool_proj", variant_spec)

    return layers.Concatenate(name=name)([branch_1x1, branch_3x3, branch_5x5, branch_pool])


def aux_head(x, classes, classifier_activation, dropout, name, variant_spec):
    """Auxiliary classifier (paper Section 5): pool, 1x1 conv 128, FC 1024, dropout, FC."""
    if variant_spec.aux_pool == "avg_5x5_stride_3":
        x = layers.AveragePooling2D(5, strides=3, padding="valid", name=f"{name}_pool")(x)
    else:
        # torchvision: adaptive pooling to 4x4 (windows at 0, 3, 7, 10 on a 14x14 map).
        x = layers.AdaptiveAveragePooling2D(spec_lib.AUX_POOLED_SIZE, name=f"{name}_pool")(x)
    x = conv_block(x, spec_lib.AUX_CONV_FILTERS, 1, f"{name}_proj", variant_spec)
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.Dense(spec_lib.AUX_DENSE_UNITS, activation="relu", name=f"{name}_fc")(x)
    x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return layers.Dense(classes, activation=classifier_activation, dtype="float32",
                        name=f"{name}_predictions")(x)


def _validate_arguments(include_top, weights, pooling, classes, classifier_activation,
                        include_aux, dropout, aux_dropout, include_preprocessing):
    """`ValueError` naming the first argument of `GoogLeNet` that is wrong on its own."""
    if weights is not None and not (isinstance(weights, str) and weights == "imagenet"):
        if not isinstance(weights, (str, os.PathLike)) or not str(weights).endswith(".weights.h5"):
            hint = (" A torchvision state dict must be converted first: "
                    f"`python -m keras_googlenet convert-torchvision {weights} "
                    "OUT.weights.h5`, or `keras_googlenet.weights.from_torchvision`."
                    if str(weights).lower().endswith((".pth", ".pt", ".npz")) else "")
            raise ValueError("`weights` must be None, 'imagenet' or a path ending in "
                             "'.weights.h5' (as written by `model.save_weights`); received "
                             f"weights={weights!r}.{hint}")
        if not os.path.isfile(weights):
            raise ValueError(f"`weights` file not found: {weights!r}.")
    # A string such as "no" is truthy: it would silently build the classifier.
    for arg, value in (("include_top", include_top), ("include_aux", include_aux),
                       ("include_preprocessing", include_preprocessing)):
        if not isinstance(value, (bool, np.bool_)):
            checks.fail(arg, "True or False", value)
    if include_aux and not include_top:
        raise ValueError("`include_aux=True` needs `include_top=True`: the auxiliary heads are "
                         "classifiers. Use include_aux=False for a feature extractor.")
    checks.one_of("pooling", pooling, (None, "avg", "max"))
    if include_top:
        checks.positive_int("classes", classes)
        if weights is not None and classifier_activation not in (None, "softmax"):
            raise ValueError("With `weights`, `classifier_activation` must be None or 'softmax'; "
                             f"received classifier_activation={classifier_activation!r}.")
        checks.activation("classifier_activation", classifier_activation)
    checks.rate("dropout", dropout)
    checks.rate("aux_dropout", aux_dropout)


def _model_inputs(input_tensor, input_shape, include_top, include_aux, variant_spec,
                  include_preprocessing):
    """(the tensor the network starts from, the model's inputs); `ValueError` unless
    `input_tensor` (if given) is a batch of images agreeing with `input_shape`, and the input
    can carry the chosen heads and preprocessing."""
    if (data_format := keras.config.image_data_format()) != "channels_last":
        checks.fail("keras.config.image_data_format()", "'channels_last'", data_format)
    if input_tensor is not None:
        if not isinstance(input_tensor, keras.KerasTensor):
            raise ValueError("`input_tensor` must be a Keras tensor (e.g. `keras.Input(shape="
                             f"...)`); received type {type(input_tensor).__name__}.")
        if len(tensor_shape := tuple(input_tensor.shape[1:])) != 3:
            raise ValueError("`input_tensor` must be a batch of images (batch, height, width, "
                             f"channels); received a tensor of shape {tuple(input_tensor.shape)}.")
        if input_shape is not None and (len(tuple(input_shape)) != 3 or any(
                a is not None and b is not None and a != b
                for a, b in zip(input_shape, tensor_shape, strict=True))):
            raise ValueError(f"`input_tensor` of shape {tuple(input_tensor.shape)} is "
                             f"incompatible with `input_shape={input_shape!r}`.")
        input_shape = tensor_shape
    elif input_shape is None:
        input_shape = (224, 224, 3) if include_top else (None, None, 3)
    input_shape = spec_lib.check_input_shape(input_shape, include_aux, variant_spec.name)
    if include_preprocessing and input_shape[-1] != 3:
        raise ValueError("`include_preprocessing=True` rescales RGB pixels, so the input needs 3 "
                         f"channels; received input_shape={input_shape!r}. Preprocess other inputs "
                         "yourself and use include_preprocessing=False.")
    if input_tensor is None:
        image = layers.Input(shape=input_shape, name="image")
        return image, image
    inputs = keras.utils.get_source_inputs(input_tensor)
    # One source input is the model's input itself, so model(x) takes a bare tensor.
    return input_tensor, inputs[0] if len(inputs) == 1 else inputs

