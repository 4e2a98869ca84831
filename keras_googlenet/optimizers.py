"""Keras' Adam and SGD, with each variable's update one fused TensorFlow kernel.

Keras writes each variable's update as about ten small ops, and its moving average (`use_ema`)
as eight more, so the first training step traces some 4,000 of them for GoogLeNet's ~200
variables: more than half of that step (docs/training.md, "The first step"). On the
TensorFlow backend these subclasses emit one `ResourceApplyAdam` / `ResourceApplyKerasMomentum`
per variable, TensorFlow's kernels for exactly Keras' update rules, one
`ResourceApplyGradientDescent` per moving average, and the step's shared scalars (learning
rate, bias corrections) once per step instead of once per variable. Arguments, slot variables
and `get_config` are Keras' own, so checkpoints move between the two. Elsewhere (another
backend, `amsgrad`, sparse gradients) the update is Keras'. `compile_googlenet` and
`googlenet-train` use them.
"""

import keras

from keras_googlenet import _compat

__all__ = ["SGD", "Adam"]


def _fusable(gradient):
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not isinstance(gradient, tf.IndexedSlices)


class _FusedUpdates(_compat.FusedMovingAverage):
    """What the two share: scalars made once per `apply`, not once per variable."""

    def apply(self, grads, trainable_variables=None):
        # Every variable's update in one `apply` reads the same step counter and learning
        # rate (Keras increments the counter after them all), so one read serves them all.
        self._step_scalars = {}
        try:
            return super().apply(grads, trainable_variables)
        finally:
            self._step_scalars = None

    def _scalars(self, dtype, make):
        cache = getattr(self, "_step_scalars", None)
        if cache is None:  # an update outside `apply`
            return make()
        if dtype not in cache:
            cache[dtype] = make()
        return cache[dtype]


@keras.saving.register_keras_serializable(package="keras_googlenet")
class Adam(_FusedUpdates, keras.optimizers.Adam):
    """`keras.optimizers.Adam`, fused on TensorFlow (see the module docstring)."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or not _fusable(gradient):
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf

        def make():
            step = tf.cast(self.iterations + 1, dtype)
            beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
            return dict(beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
                        lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
                        epsilon=tf.cast(self.epsilon, dtype))

        dtype = variable.dtype
        momentum, velocity = _compat.adam_slots(self, variable)
        # Keras' rule: m += (g - m)(1 - b1); v += (g² - v)(1 - b2);
        # var -= lr·sqrt(1 - b2^t)/(1 - b1^t) · m / (sqrt(v) + eps), which this kernel computes.
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=momentum.handle, v=velocity.handle,
            grad=tf.cast(gradient, dtype), use_locking=False, **self._scalars(dtype, make))


@keras.saving.register_keras_serializable(package="keras_googlenet")
class SGD(_FusedUpdates, keras.optimizers.SGD):
    """`keras.optimizers.SGD`, fused on TensorFlow (see the module docstring)."""

    def update_step(self, gradient, variable, learning_rate):
        if not _fusable(gradient):
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf

        dtype = variable.dtype
        scalars = self._scalars(dtype, lambda: (tf.cast(learning_rate, dtype),
                                                tf.cast(self.momentum, dtype)))
        gradient = tf.cast(gradient, dtype)
        if self.momentum == 0:
            tf.raw_ops.ResourceApplyGradientDescent(var=variable.handle, alpha=scalars[0],
                                                    delta=gradient, use_locking=False)
            return
        # Keras' rule: m = momentum·m - lr·g; var += m (Nesterov: var += momentum·m - lr·g).
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle, accum=_compat.sgd_momentum(self, variable).handle,
            lr=scalars[0], grad=gradient, momentum=scalars[1], use_locking=False,
            use_nesterov=self.nesterov)
