"""Keras' Adam and SGD, with each variable's update one fused TensorFlow kernel.

Keras traces each variable's Adam update as ~15 small ops and its moving average (`use_ema`)
as ~8 more, for GoogLeNet's ~200 variables more than half of the first training step
(docs/training.md, "The first step"). On the TensorFlow backend these subclasses emit one
`ResourceApplyAdam` / `ResourceApplyKerasMomentum` per variable (TensorFlow's kernels for
Keras' update rules, equal up to float rounding), one `ResourceApplyGradientDescent` per
moving average, and the step's shared scalars (learning rate, bias corrections) once per step
and device instead of once per variable. Arguments, slot variables and `get_config` are
Keras' own, so optimizer variables move between the two; a `.keras` file names the class
(`keras_googlenet>Adam`), so loading it compiled needs this package, as `compile_googlenet`'s
loss does anyway. Elsewhere (another backend, `amsgrad`, sparse gradients) the update is
Keras'. `compile_googlenet` and `googlenet-train` use them.
"""

import keras

from keras_googlenet import _compat

__all__ = ["SGD", "Adam"]


def _fusable(gradient):
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not isinstance(gradient, tf.IndexedSlices)


class _StepScalars:
    """Scalars of the `apply` under way, by (dtype, device); a plain object, so that neither
    Keras nor TensorFlow tracks it as optimizer state (a dict attribute would be)."""

    def __init__(self):
        self.by_key = None


class _FusedUpdates(_compat.FusedMovingAverage):
    """What the two share: scalars made once per `apply` and device, not once per variable."""

    def apply(self, grads, trainable_variables=None):
        # Every variable's update in one `apply` reads the same step counter and learning
        # rate (Keras increments the counter after them all), so one read serves them all.
        if not isinstance(getattr(self, "_step_scalars", None), _StepScalars):
            self._step_scalars = _StepScalars()
        self._step_scalars.by_key = {}
        try:
            return super().apply(grads, trainable_variables)
        finally:
            self._step_scalars.by_key = None

    def _scalars(self, variable, make):
        cache = getattr(self, "_step_scalars", None)
        if cache is None or cache.by_key is None:  # an update outside `apply`
            return make()
        key = (variable.dtype, variable.device)  # each replica's own, under a strategy
        if key not in cache.by_key:
            cache.by_key[key] = make()
        return cache.by_key[key]


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
            grad=tf.cast(gradient, dtype), use_locking=False, **self._scalars(variable, make))


@keras.saving.register_keras_serializable(package="keras_googlenet")
class SGD(_FusedUpdates, keras.optimizers.SGD):
    """`keras.optimizers.SGD`, fused on TensorFlow (see the module docstring)."""

    def update_step(self, gradient, variable, learning_rate):
        if not _fusable(gradient):
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf

        dtype = variable.dtype
        scalars = self._scalars(variable, lambda: (tf.cast(learning_rate, dtype),
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
