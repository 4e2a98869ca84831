"""The KerasTuner internals the tuners and the oracle server rely on, checked by name.

KerasTuner has no public API for these. pyproject pins keras-tuner below its next minor
release; when a newer one is allowed, this file says what to re-check before the first
search does.
"""

import inspect

import keras_tuner as kt
import pytest


def _parameters(function):
    return list(inspect.signature(function).parameters)


def test_trial_results_become_metrics_through_tuner_utils():
    from keras_tuner.src.engine import tuner_utils

    assert _parameters(tuner_utils.convert_to_metrics_dict) == ["results", "objective"]
    objective = kt.Objective("val_main_accuracy", "max")
    assert tuner_utils.convert_to_metrics_dict({"val_main_accuracy": 0.5}, objective) == {
        "val_main_accuracy": 0.5}


@pytest.mark.parametrize("name", ["_try_run_and_update_trial", "_run_and_update_trial"])
def test_the_tuner_methods_overridden_still_exist(name):
    assert _parameters(getattr(kt.Tuner, name)) == ["self", "trial", "fit_args", "fit_kwargs"]


def test_the_oracle_keeps_its_failure_count_and_end_order():
    assert _parameters(kt.Oracle._check_consecutive_failures) == ["self"]
    oracle = kt.oracles.RandomSearchOracle(objective="val_loss", max_trials=1)
    assert oracle.end_order == [] and oracle.max_consecutive_failed_trials >= 1


def test_the_oracle_server_pieces_exist():
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    assert hasattr(protos.get_service_grpc(), "add_OracleServicer_to_server")
    oracle = kt.oracles.RandomSearchOracle(objective="val_loss", max_trials=1)
    servicer = oracle_chief.OracleServicer(oracle)
    assert servicer.stop_triggered is False
    assert oracle_chief.exit_chief(oracle) is True  # no trial running, no worker known
