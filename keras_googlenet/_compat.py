"""Every private name of another package the project uses, each for want of a public one (its
comment says why). tests/test_keras_internals.py checks each: an upgrade fails there first."""

import contextlib

__all__ = ["FusedMovingAverage", "adam_slots", "ema_weights_in_model", "oracle_search_over",
           "run_and_update_trial", "serve_oracle_servicer", "set_fit_initial_epoch",
           "sgd_momentum", "tfds_gcs_disabled", "tflite_nodes", "tflite_schema", "trial_metrics"]


def set_fit_initial_epoch(model, epoch):
    """Make the next `model.fit` start at `epoch` (`None`: at its own `initial_epoch`)."""
    # keras.callbacks.BackupAndRestore's own route: TensorFlow's `fit` reads
    # `model._initial_epoch or initial_epoch` after `on_train_begin`, and never resets it.
    model._initial_epoch = epoch


class FusedMovingAverage:
    """Mixin for a Keras optimizer: on TensorFlow, its moving average (`use_ema`) is updated
    with one kernel per variable instead of ~8 ops (Keras' rule, the first step a copy)."""

    # Keras has no public hook for the average's update: its `_backend_apply_gradients`
    # calls this method after the update step, and `SwapEMAWeights` reads the averages.
    def _update_model_variables_moving_average(self, trainable_variables):
        import keras

        if not self.use_ema or keras.backend.backend() != "tensorflow":
            return super()._update_model_variables_moving_average(trainable_variables)
        import tensorflow as tf

        started = tf.not_equal(self.iterations, 0)
        shares = {}
        for variable, average in zip(trainable_variables, self._model_variables_moving_average,
                                     strict=True):
            if average is None:
                continue
            if average.dtype not in shares:  # Keras' arithmetic, in the average's dtype
                shares[average.dtype] = 1 - tf.cast(started, average.dtype) * self.ema_momentum
            # average -= share·(average - variable), i.e. momentum·average + share·variable;
            # the share is 1 on the first step: a copy.
            tf.raw_ops.ResourceApplyGradientDescent(
                var=average.handle, alpha=shares[average.dtype],
                delta=average.value - variable.value, use_locking=False)


def adam_slots(optimizer, variable):
    """A Keras Adam's first and second moment variables of `variable`."""
    # No public accessor: Keras' own update steps (and BaseOptimizer's custom-optimizer
    # example) find a variable's slots with `_get_variable_index`.
    index = optimizer._get_variable_index(variable)
    return optimizer._momentums[index], optimizer._velocities[index]


def sgd_momentum(optimizer, variable):
    """A Keras SGD's momentum variable of `variable` (SGD built with `momentum` > 0)."""
    # As `adam_slots`: the list is public, the index of a variable in it is not.
    return optimizer.momentums[optimizer._get_variable_index(variable)]


def ema_weights_in_model(callback):
    """Whether a `keras.callbacks.SwapEMAWeights` has put the moving average in the model."""
    # No public accessor: after a fit that ran no epoch, the average is not in place.
    return callback._ema_weights_in_model


def trial_metrics(results, objective):
    """KerasTuner's conversion of `Tuner.run_trial` results (History, dict, float) to metrics."""
    # The conversion `Tuner` itself applies; not exported by `keras_tuner`.
    from keras_tuner.src.engine import tuner_utils

    return tuner_utils.convert_to_metrics_dict(results, objective)


def run_and_update_trial(tuner, trial, *fit_args, **fit_kwargs):
    """KerasTuner's `Tuner._run_and_update_trial`: run the trial, report it to the oracle."""
    # For our `_try_run_and_update_trial`, KerasTuner's only hook for recording a failed trial.
    return tuner._run_and_update_trial(trial, *fit_args, **fit_kwargs)


def serve_oracle_servicer(oracle, server):
    """Add KerasTuner's gRPC oracle service for `oracle` to `server`; return the servicer."""
    # KerasTuner has no public API for the chief's server (its own loop polls every 20 s).
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    return servicer


def oracle_search_over(oracle, servicer):
    """KerasTuner's rule for the chief to stop: a worker was told to, and no trial runs."""
    from keras_tuner.src.distribute import oracle_chief

    return servicer.stop_triggered and oracle_chief.exit_chief(oracle)


@contextlib.contextmanager
def tfds_gcs_disabled():
    """Within the block, TFDS never looks up dataset metadata on gs://tfds-data."""
    # No public switch: `tfds.builder` reads an unprepared dataset's info from GCS (`try_gcs`,
    # `try_download_gcs`: data only); offline each look-up hangs ~60 s. 4.9.10 defaults it True.
    from tensorflow_datasets.core.utils import gcs_utils

    previous = getattr(gcs_utils, "_is_gcs_disabled", None)
    if previous is None:  # another TFDS: nothing to switch, `try_gcs=False` still holds
        yield
        return
    gcs_utils._is_gcs_disabled = True
    try:
        yield
    finally:
        gcs_utils._is_gcs_disabled = previous


def tflite_nodes(interpreter):
    """A LiteRT `Interpreter`'s nodes: dicts of `index`, `op_name`, `inputs`, `outputs`; after
    `allocate_tensors` the "DELEGATE" nodes come last, the nodes they replaced stay listed."""
    # LiteRT lists its nodes publicly nowhere; TensorFlow's own QuantizationDebugger reads
    # this method too. Counting what XNNPACK took (tests/test_int8_delegation.py) needs it.
    return interpreter._get_ops_details()


def tflite_schema():
    """The Python classes of the `.tflite` flatbuffer schema (`schema.fbs`), to read and write."""
    # `tf.lite` exports no reader of the file itself; TensorFlow's converter uses this module.
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated
