"""Layers Keras does not ship. Registered so `keras.models.load_model` needs no `custom_objects`."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_googlenet")
class LocalResponseNormalization(keras.layers.Layer):
    """Cross-channel LRN as in the paper's Caffe model (AlexNet, Section 3.3).

    `b = a / (bias + alpha / size * sum(a^2 over `size` neighbouring channels)) ** beta`.
    Caffe divides `alpha` by the window size; `tf.nn.local_response_normalization`
    does not, so the division happens here. TFLite and ONNX both have a native LRN op.
    """

    def __init__(self, size=5, alpha=1e-4, beta=0.75, bias=1.0, **kwargs):
        super().__init__(**kwargs)
        if size < 1 or size % 2 == 0:
            raise ValueError(f"`size` must be a positive odd int; received size={size!r}.")
        self.size = int(size)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.bias = float(bias)

    def call(self, inputs):
        # TF's CPU LRN kernel has no bfloat16 version: compute in float32 under mixed precision.
        x = tf.cast(inputs, "float32")
        y = tf.nn.local_response_normalization(
            x,
            depth_radius=self.size // 2,
            bias=self.bias,
            alpha=self.alpha / self.size,
            beta=self.beta,
        )
        return tf.cast(y, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size, alpha=self.alpha, beta=self.beta, bias=self.bias)
        return config
