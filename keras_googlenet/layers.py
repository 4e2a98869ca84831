"""Layers Keras does not ship, registered so `keras.models.load_model` needs no `custom_objects`.
Both run on every Keras 3 backend: on TensorFlow through its fused kernels, elsewhere through
`keras.ops` with the same math. TensorFlow is imported only on its backend."""

import warnings

import keras
from keras import ops

__all__ = ["FusedBatchNormalization", "LocalResponseNormalization", "portable_model"]


def _on_tensorflow():
    return keras.backend.backend() == "tensorflow"


@keras.saving.register_keras_serializable(package="keras_googlenet")
class LocalResponseNormalization(keras.layers.Layer):
    """Cross-channel LRN as in the paper's Caffe model (AlexNet, Section 3.3).

    `b = a / (bias + alpha / size * sum(a^2 over `size` neighbouring channels)) ** beta`.
    Caffe divides `alpha` by the window size; `tf.nn.local_response_normalization` does
    not, so the division happens here. TFLite and ONNX both have a native LRN op.
    """

    def __init__(self, size=5, alpha=1e-4, beta=0.75, bias=1.0, **kwargs):
        super().__init__(**kwargs)
        if size < 1 or size % 2 == 0:
            raise ValueError(f"`size` must be a positive odd int; received size={size!r}.")
        self.size = int(size)
        self.alpha, self.beta, self.bias = float(alpha), float(beta), float(bias)

    def call(self, inputs):
        # TF's CPU LRN kernel has no bfloat16 version: compute in float32 under mixed precision.
        x = ops.cast(inputs, "float32")
        radius = self.size // 2
        if _on_tensorflow():
            import tensorflow as tf

            y = tf.nn.local_response_normalization(x, depth_radius=radius, bias=self.bias,
                                                   alpha=self.alpha / self.size, beta=self.beta)
        else:
            y = self._ops_lrn(x, radius)
        return ops.cast(y, inputs.dtype)

    def _ops_lrn(self, x, radius):
        """TF's formula in `keras.ops`: squares summed over channels c - radius .. c + radius,
        zeros beyond the edges."""
        channels = x.shape[-1]
        squares = ops.pad(x * x, [[0, 0]] * (len(x.shape) - 1) + [[radius, radius]])
        window_sum = sum(squares[..., i:i + channels] for i in range(self.size))
        return x / ops.power(self.bias + self.alpha / self.size * window_sum, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "size": self.size, "alpha": self.alpha,
                "beta": self.beta, "bias": self.bias}


@keras.saving.register_keras_serializable(package="keras_googlenet")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training step is one fused TensorFlow op.

    Keras 3 trains it as separate ops (two moment reductions, then a scale and shift, all
    upcast to float32), each a pass over the activations both ways; `tf.nn.fused_batch_norm`
    is one oneDNN kernel that also takes bfloat16 (speed-ups: docs/training.md, "Measured").

    Same variables, math and moving-statistics update as the Keras layer (biased batch
    variance, like Keras 3: TF's kernel returns the unbiased one, rescaled here). Inference,
    masks, renorm, synchronized BN and other backends use the Keras code path.
    """

    def _fusable(self, inputs, training, mask):
        # The fused kernel takes 4D channels-last inputs and has no float64 version.
        return (_on_tensorflow() and training and self.trainable and mask is None
                and not self.renorm and not self.synchronized and len(inputs.shape) == 4
                and self.axis in (-1, 3)
                and keras.backend.standardize_dtype(inputs.dtype) != "float64")

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        gamma = self.gamma if self.scale else tf.ones([channels], "float32")
        beta = self.beta if self.center else tf.zeros([channels], "float32")
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, tf.cast(gamma, "float32"), tf.cast(beta, "float32"), epsilon=self.epsilon,
            data_format="NHWC", is_training=True)
        count = tf.cast(tf.size(inputs) // channels, "float32")
        variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
        for moving, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
            moving.assign(moving * self.momentum + batch * (1.0 - self.momentum))
        return tf.cast(outputs, self.compute_dtype)


def portable_model(model):
    """`model` with every `FusedBatchNormalization` turned into `keras.layers.BatchNormalization`.

    Save this to write a `.keras` file that plain Keras loads without this package (the
    paper's `v1` still needs `LocalResponseNormalization`): same configs, weight values and
    math outside training; a compiled `model` keeps its compile settings and optimizer state.

    Args:
        model: a functional or Sequential `keras.Model`, e.g. one built by `GoogLeNet`.

    Returns:
        A new model with copied weights, or `model` itself when it has no fused BatchNorm.
    """
    if not any(isinstance(layer, FusedBatchNormalization) for layer in model.layers):
        return model
    clone = clone_with_weights(model, _portable_layer)
    if model.compiled:
        clone.compile_from_config(model.get_compile_config())
        if model.optimizer.built:
            for source, target in zip(model.optimizer.variables, clone.optimizer.variables,
                                      strict=True):
                target.assign(source)
    return clone


def _portable_layer(layer):
    cls = keras.layers.BatchNormalization if isinstance(layer, FusedBatchNormalization) \
        else type(layer)
    return cls.from_config(layer.get_config())


def clone_with_weights(model, clone_function):
    """`keras.models.clone_model(model, clone_function=clone_function)` holding new variables
    with `model`'s weight values."""
    clone = keras.models.clone_model(model, clone_function=clone_function)
    for layer in clone.layers:
        layer.set_weights(model.get_layer(layer.name).get_weights())
    return clone


def load_weights_or_explain(load, mismatch):
    """Run `load()` (a weights load); on failure raise `ValueError(mismatch + cause)`.
    Keras warns about skipped layers before it raises, which would bury our error under its
    own: the warnings are replayed only when the load worked."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            load()
    except Exception as error:  # a shape or structure mismatch deep in h5 loading
        raise ValueError(f"{mismatch} Cause: {error}") from error
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename,
                               warning.lineno)

