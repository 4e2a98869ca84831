"""Layers Keras does not ship. Registered so `keras.models.load_model` needs no `custom_objects`.

Both run on every Keras 3 backend: on TensorFlow through its fused kernels, elsewhere
through `keras.ops` with the same math. TensorFlow is imported only on its backend.
"""

import contextlib

import keras
from keras import ops


def _on_tensorflow():
    return keras.backend.backend() == "tensorflow"


@keras.saving.register_keras_serializable(package="keras_googlenet")
class LocalResponseNormalization(keras.layers.Layer):
    """Cross-channel LRN as in the paper's Caffe model (AlexNet, Section 3.3).

    `b = a / (bias + alpha / size * sum(a^2 over `size` neighbouring channels)) ** beta`.
    Caffe divides `alpha` by the window size; `tf.nn.local_response_normalization`
    does not, so the division happens here. TFLite and ONNX both have a native LRN op.
    On other backends the same formula is computed with `keras.ops`: the squares summed
    over the zero-padded window of `size // 2` channels on either side (TF's `depth_radius`).
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
        x = ops.cast(inputs, "float32")
        y = self._tf_lrn(x) if _on_tensorflow() else self._ops_lrn(x)
        return ops.cast(y, inputs.dtype)

    def _tf_lrn(self, x):
        import tensorflow as tf

        return tf.nn.local_response_normalization(
            x, depth_radius=self.size // 2, bias=self.bias, alpha=self.alpha / self.size,
            beta=self.beta,
        )

    def _ops_lrn(self, x):
        """TF's formula in `keras.ops`: squares summed over channels c - size//2 .. c +
        size//2, zeros beyond the edges."""
        radius = self.size // 2
        channels = x.shape[-1]
        squares = ops.pad(x * x, [[0, 0]] * (len(x.shape) - 1) + [[radius, radius]])
        window_sum = sum(squares[..., i:i + channels] for i in range(self.size))
        return x / ops.power(self.bias + self.alpha / self.size * window_sum, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size, alpha=self.alpha, beta=self.beta, bias=self.bias)
        return config


class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training step is one fused TensorFlow op.

    Keras 3 normalises in training mode with separate ops (two moment reductions, then a
    scale and shift, all upcast to float32), each a pass over the activations forwards and
    backwards. `tf.nn.fused_batch_norm` does it in one oneDNN kernel that also takes
    bfloat16 inputs. Measured on a 2-core CPU, GoogLeNet with aux heads at 224 px, batch 32:
    a training step 1.86 s -> 1.29 s in float32 and 1.27 s -> 0.64 s in mixed_bfloat16
    (docs/training.md, "Measured"; `benchmarks/train_throughput.py` reproduces the gain).

    Same variables, same math and the same moving-statistics update as the Keras layer
    (biased batch variance, like Keras 3; TF's kernel returns the unbiased one, which is
    rescaled). Inference mode, masks, renorm, synchronized BN and every other backend use
    the Keras code path.
    """

    def _fusable(self, inputs, training, mask):
        return (
            _on_tensorflow()
            and training
            and self.trainable
            and mask is None
            and not self.renorm
            and not self.synchronized
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            # the fused kernel has no float64 version
            and keras.backend.standardize_dtype(inputs.dtype) != "float64"
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        gamma = self.gamma if self.scale else tf.ones([channels], "float32")
        beta = self.beta if self.center else tf.zeros([channels], "float32")
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs,
            tf.cast(gamma, "float32"),
            tf.cast(beta, "float32"),
            epsilon=self.epsilon,
            data_format="NHWC",
            is_training=True,
        )
        count = tf.cast(tf.size(inputs) // channels, "float32")
        variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(
            self.moving_variance * momentum + variance * (1.0 - momentum)
        )
        return tf.cast(outputs, self.compute_dtype)



# Saved as Keras' own layer: same variables, same config and the same math outside
# training, so a saved model (`.keras` or `.weights.h5`) loads in plain Keras without this
# package (as the unfused `keras.layers.BatchNormalization`). Keras stores a layer's
# weights under its class name and names its config from this public-name table.
FusedBatchNormalization.__name__ = FusedBatchNormalization.__qualname__ = "BatchNormalization"


def _serialize_as_keras_batch_normalization():
    from keras.src import api_export  # no public way to give a subclass a Keras name

    names = getattr(api_export, "REGISTERED_OBJS_TO_NAMES", None)
    public = names.get(keras.layers.BatchNormalization) if names is not None else None
    if public is not None:
        names[FusedBatchNormalization] = public


_serialize_as_keras_batch_normalization()

# Files saved before that change name the layer `keras_googlenet>FusedBatchNormalization`
# and keep its weights under `fused_batch_normalization`: this class still loads them.
_LegacyFusedBatchNormalization = keras.saving.register_keras_serializable(
    package="keras_googlenet", name="FusedBatchNormalization")(
    type("FusedBatchNormalization", (FusedBatchNormalization,), {"__module__": __name__}))


@contextlib.contextmanager
def legacy_weight_names(model):
    """Within the block, `model`'s fused BatchNorms store their weights under the old
    `fused_batch_normalization` names: loads `.weights.h5` files saved before the rename."""
    swapped = [layer for layer in model._flatten_layers()
               if type(layer) is FusedBatchNormalization]
    for layer in swapped:
        layer.__class__ = _LegacyFusedBatchNormalization
    try:
        yield
    finally:
        for layer in swapped:
            layer.__class__ = FusedBatchNormalization


def load_weights_or_explain(load, mismatch):
    """Run `load()` (a weights load); on failure raise `ValueError(mismatch + cause)`.

    Keras warns about skipped layers before it raises, which would bury our error under
    its own: the warnings are replayed only when the load worked.
    """
    import warnings

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            load()
    except Exception as error:  # a shape or structure mismatch deep in h5 loading
        raise ValueError(f"{mismatch} Cause: {error}") from error
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename,
                               warning.lineno)


def load_weights(model, path):
    """`model.load_weights(path)`, also for files written before the rename above."""
    import h5py

    with h5py.File(path, "r") as f:
        names = []
        f.visit(names.append)
    if any("fused_batch_normalization" in name for name in names):
        with legacy_weight_names(model):
            model.load_weights(path)
    else:
        model.load_weights(path)
