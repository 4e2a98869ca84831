"""The other packages' private names this project relies on, all in keras_googlenet/_compat.py.

None has a public equivalent. pyproject does not pin Keras or TFDS below their next minor
release (that would hold every user of the model library back) and pins KerasTuner below its
next minor; instead this file fails, naming the internal, on the first release that changes
one, before a training run or a search does. The last test keeps them all in `_compat`.
"""

import ast
import inspect
import pathlib

import keras
import keras_tuner as kt
import numpy as np
import pytest

from keras_googlenet import _compat

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _tiny_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(use_ema=True), "mse")
    return model


class _StartAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch, self.seen = epoch, []

    def on_train_begin(self, logs=None):
        _compat.set_fit_initial_epoch(self.model, self.epoch)

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.append(epoch)


@pytest.mark.parametrize("start, seen", [(2, [2]), (None, [1, 2])])
def test_fit_starts_at_the_epoch_set_in_on_train_begin(start, seen):
    callback = _StartAt(start)
    _tiny_model().fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=3, initial_epoch=1,
                      verbose=0, callbacks=[callback])
    assert callback.seen == seen


def test_swap_ema_weights_says_whether_the_average_is_in_the_model():
    callback = keras.callbacks.SwapEMAWeights(swap_on_epoch=True)
    assert _compat.ema_weights_in_model(callback) is False
    _tiny_model().fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=1, verbose=0,
                      validation_data=(np.zeros((2, 2)), np.zeros((2, 1))), callbacks=[callback])
    assert _compat.ema_weights_in_model(callback) is True  # swapped in at the epoch's end


def test_the_slots_found_are_the_ones_keras_updates():
    variables = [keras.Variable(np.zeros(2, "float32")), keras.Variable(np.zeros(3, "float32"))]
    grads = [np.full(2, 1.0, "float32"), np.full(3, 2.0, "float32")]
    adam, sgd = keras.optimizers.Adam(), keras.optimizers.SGD(momentum=0.5)
    for optimizer in (adam, sgd):
        optimizer.apply(grads, variables)
    for variable, grad in zip(variables, grads, strict=True):
        momentum, velocity = _compat.adam_slots(adam, variable)
        np.testing.assert_allclose(momentum, 0.1 * grad, rtol=1e-6)  # (1 - beta_1)·g
        np.testing.assert_allclose(velocity, 0.001 * grad**2, rtol=1e-6)  # (1 - beta_2)·g²
        np.testing.assert_allclose(_compat.sgd_momentum(sgd, variable), -0.01 * grad, rtol=1e-6)


class AveragedSGD(_compat.FusedMovingAverage, keras.optimizers.SGD):
    pass


def test_keras_calls_the_moving_average_hook_and_the_fused_average_is_keras_average():
    import tensorflow as tf

    variables = [keras.Variable(np.zeros(2, "float32")), keras.Variable(np.zeros(3, "float32"))]
    fused, plain = (cls(momentum=0.5, use_ema=True, ema_momentum=0.9)
                    for cls in (AveragedSGD, keras.optimizers.SGD))
    fused.build(variables)

    @tf.function
    def step():
        fused.apply([tf.ones_like(v) for v in variables], variables)

    kernels = [op.type for op in step.get_concrete_function().graph.get_operations()]
    assert kernels.count("ResourceApplyGradientDescent") == len(variables)  # the hook ran
    twins = [keras.Variable(np.zeros(2, "float32")), keras.Variable(np.zeros(3, "float32"))]
    for _ in range(3):
        step()
        plain.apply([np.ones(2, "float32"), np.ones(3, "float32")], twins)
    averages = [np.asarray(a) for a in fused._model_variables_moving_average]
    assert averages[0][0] < 0  # it moved
    for mine, keras_own in zip(averages, plain._model_variables_moving_average, strict=True):
        np.testing.assert_allclose(mine, keras_own, rtol=1e-6)


def test_trial_results_become_metrics():
    objective = kt.Objective("val_main_accuracy", "max")
    assert _compat.trial_metrics({"val_main_accuracy": 0.5}, objective) == {
        "val_main_accuracy": 0.5}
    assert _compat.trial_metrics(0.25, objective) == {"val_main_accuracy": 0.25}


class _ConstantTuner(kt.Tuner):
    def run_trial(self, trial, *args, **kwargs):
        return {"val_loss": 0.5}


def test_run_and_update_trial_reports_the_trial_to_the_oracle(tmp_path):
    oracle = kt.oracles.RandomSearchOracle(objective="val_loss", max_trials=1)
    oracle.hyperparameters.Float("x", 0.0, 1.0)
    tuner = _ConstantTuner(oracle=oracle, directory=str(tmp_path), project_name="p")
    trial = oracle.create_trial("tuner0")
    _compat.run_and_update_trial(tuner, trial)
    assert oracle.get_trial(trial.trial_id).metrics.get_last_value("val_loss") == 0.5


def test_keras_tuner_calls_the_two_methods_training_tuner_overrides(tmp_path):
    # training/tuner.py overrides both: KerasTuner's only hooks for rejected trials.
    calls = []

    class Oracle(kt.oracles.RandomSearchOracle):
        def _check_consecutive_failures(self):
            calls.append("oracle")
            super()._check_consecutive_failures()

    class Tuner(_ConstantTuner):
        def _try_run_and_update_trial(self, trial, *fit_args, **fit_kwargs):
            calls.append("tuner")
            super()._try_run_and_update_trial(trial, *fit_args, **fit_kwargs)

    oracle = Oracle(objective="val_loss", max_trials=1)
    oracle.hyperparameters.Float("x", 0.0, 1.0)
    Tuner(oracle=oracle, directory=str(tmp_path), project_name="p").search()
    assert calls == ["tuner", "oracle"]
    assert list(inspect.signature(kt.Tuner._try_run_and_update_trial).parameters) == [
        "self", "trial", "fit_args", "fit_kwargs"]


def test_the_oracle_service_is_served_until_a_worker_is_told_to_stop():
    from concurrent import futures

    import grpc

    oracle = kt.oracles.RandomSearchOracle(objective="val_loss", max_trials=1)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = _compat.serve_oracle_servicer(oracle, server)
    assert _compat.oracle_search_over(oracle, servicer) is False
    servicer.stop_triggered = True  # what the service sets when it tells a worker to stop
    assert _compat.oracle_search_over(oracle, servicer) is True  # no trial is running
    server.stop(grace=None)


def test_tfds_looks_nothing_up_on_gcs_within_the_block():
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.utils import gcs_utils

    before = gcs_utils._is_gcs_disabled
    assert before is True  # TFDS 4.9.10's default; the block makes sure of it
    gcs_utils._is_gcs_disabled = False
    try:
        with _compat.tfds_gcs_disabled():
            assert tfds.is_dataset_on_gcs("mnist") is False  # answered without the network
            assert gcs_utils.gcs_dataset_info_files("mnist") is None
        assert gcs_utils._is_gcs_disabled is False  # restored
    finally:
        gcs_utils._is_gcs_disabled = before


def test_litert_lists_the_delegate_nodes_after_the_nodes_they_replaced():
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu")])
    interpreter = Interpreter(model_content=tf.lite.TFLiteConverter.from_keras_model(
        model).convert())
    before = [node["op_name"] for node in _compat.tflite_nodes(interpreter)]
    interpreter.allocate_tensors()  # applies XNNPACK, LiteRT's default delegate
    after = _compat.tflite_nodes(interpreter)
    assert [node["op_name"] for node in after] == [*before, "DELEGATE"]
    assert {"index", "inputs", "outputs"} <= set(after[-1])


def test_the_tflite_schema_reads_and_writes_a_converted_model():
    import tensorflow as tf

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    schema = _compat.tflite_schema()
    assert schema.Model.ModelBufferHasIdentifier(flatbuffer, 0)
    parsed = schema.ModelT.InitFromObj(schema.Model.GetRootAs(flatbuffer, 0))
    codes = {op.builtinCode for op in parsed.operatorCodes}
    assert schema.BuiltinOperator.FULLY_CONNECTED in codes


def _private_names(path):
    """(line, name) of each other package's private module or attribute used in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [
                alias.name for alias in node.names]
            found += [(node.lineno, m) for m in modules if ".src" in m]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__") \
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            found.append((node.lineno, node.attr))
    return found


def test_no_private_name_of_another_package_outside_compat():
    uses = {str(path.relative_to(ROOT)): names
            for folder in ("keras_googlenet", "training") for path in (ROOT / folder).rglob("*.py")
            if path.name != "_compat.py" and (names := _private_names(path))}
    assert uses == {}


def test_every_compat_function_is_checked_here():
    source = pathlib.Path(__file__).read_text(encoding="utf-8")
    assert [name for name in _compat.__all__  # called, or a class subclassed
            if f"_compat.{name}(" not in source and f"(_compat.{name}," not in source] == []
