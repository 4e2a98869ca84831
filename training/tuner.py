"""KerasTuner tuners and oracles that enforce a `GoogLeNetHyperModel`'s compute budget.

    from keras_googlenet.tuning import GoogLeNetHyperModel
    from keras_googlenet_training.tuner import make_tuner

    hypermodel = GoogLeNetHyperModel(input_shape=(224, 224, 3), classes=1000,
                                     max_macs=800e6, max_latency_ms=40)
    tuner = make_tuner("bayesian", hypermodel, max_trials=20, directory="tuning")
    tuner.search(train_ds, validation_data=val_ds, epochs=5)

A candidate over budget is never trained and never scored: its trial ends `FAILED` with
the metric `rejected = 1` and its cost recorded in the trial (so the chief sees them in
distributed tuning too), and the search moves on. Rejections do not count towards
`max_trials` (up to `max_rejected_trials`) nor as the consecutive failures after which
KerasTuner gives up.

KerasTuner offers no public hook for these, so the subclasses override private methods
(`_try_run_and_update_trial`, `_check_consecutive_failures`) and call KerasTuner's private
helpers through `keras_googlenet/_compat.py`; pyproject pins keras-tuner below the next minor
release and `tests/test_keras_internals.py` fails loudly when they change.
"""

from __future__ import annotations

import math
import os
import time
import traceback
import warnings

import keras_tuner as kt

from keras_googlenet import _compat
from keras_googlenet.checks import one_of, positive_int
from keras_googlenet.compute_budget import budget_violations
from keras_googlenet.tuning import (
    COST_METRICS,
    OBJECTIVE,
    REJECTED_METRIC,
    SECONDS_METRIC,
    TUNERS,
    BudgetExceededError,
    GoogLeNetHyperModel,
)
from keras_googlenet_training import oracle_server, trial_log

_FAILED = "FAILED"
_COMPLETED = "COMPLETED"


class _BudgetAwareOracle:
    """Oracle mixin: rejected trials use neither `max_trials` nor the failure allowance."""

    max_rejected_trials = 0

    @staticmethod
    def is_rejected(trial):
        return trial.status == _FAILED and trial.metrics.exists(REJECTED_METRIC)

    def num_rejected(self):
        return sum(1 for t in self.trials.values() if self.is_rejected(t))

    @kt.synchronized
    def create_trial(self, tuner_id):
        limit = self.max_trials
        if limit:
            self.max_trials = limit + min(self.num_rejected(), self.max_rejected_trials)
        try:
            return super().create_trial(tuner_id)
        finally:
            self.max_trials = limit

    @kt.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        with warnings.catch_warnings():
            # A rejected trial's objective is NaN on purpose.
            warnings.filterwarnings("ignore", "All-NaN", RuntimeWarning)
            return super().update_trial(trial_id, metrics, step=step)

    def _check_consecutive_failures(self):
        # As in KerasTuner, but a rejection is a decision, not a crash.
        consecutive = 0
        for trial_id in self.end_order:
            trial = self.trials[trial_id]
            if self.is_rejected(trial):
                continue
            consecutive = consecutive + 1 if trial.status == _FAILED else 0
            if consecutive == self.max_consecutive_failed_trials:
                raise RuntimeError(
                    f"Number of consecutive failures exceeded the limit of "
                    f"{self.max_consecutive_failed_trials}.\n" + (trial.message or "")
                )


class RandomSearchOracle(_BudgetAwareOracle, kt.oracles.RandomSearchOracle):
    pass


class BayesianOptimizationOracle(_BudgetAwareOracle, kt.oracles.BayesianOptimizationOracle):
    pass


class HyperbandOracle(_BudgetAwareOracle, kt.oracles.HyperbandOracle):
    pass


class _BudgetedTuner:
    """Tuner mixin: reject over-budget candidates before training, record every cost."""

    trials_run = 0  # trials this process trained, rejected or saw crash

    def run_trial(self, trial, *args, **kwargs):
        started = time.perf_counter()
        hp = trial.hyperparameters
        try:
            cost = self.hypermodel.cost(hp)
            if cost.over_budget:
                metrics = {OBJECTIVE.name: float("nan"), REJECTED_METRIC: 1.0,
                           SECONDS_METRIC: time.perf_counter() - started, **cost.as_metrics()}
                self.oracle.update_trial(trial.trial_id, metrics)
                self._record_execution(trial, "rejected", started, cost)
                print(f"Rejected without training (trial_id {trial.trial_id}): "
                      f"{'; '.join(cost.violations)}")
                raise BudgetExceededError("; ".join(cost.violations), cost)
            results = super().run_trial(trial, *args, **kwargs)
        except BudgetExceededError:
            raise
        except Exception as error:
            self._record_execution(trial, "failed", started, error=error)
            raise
        metrics = _compat.trial_metrics(results, self.oracle.objective)
        metrics = {name: float(value) for name, value in metrics.items()}
        metrics.update(cost.as_metrics())
        metrics[SECONDS_METRIC] = time.perf_counter() - started
        self._record_execution(trial, "completed", started, cost, metrics.get(OBJECTIVE.name))
        return metrics

    def _try_run_and_update_trial(self, trial, *fit_args, **fit_kwargs):
        # KerasTuner 1.4.8's handling, except that a rejection (expected) prints no traceback.
        try:
            _compat.run_and_update_trial(self, trial, *fit_args, **fit_kwargs)
            trial.status = _COMPLETED
        except BudgetExceededError as error:
            trial.status = _FAILED
            trial.message = f"rejected: {error}"
        except kt.errors.FatalError:
            raise
        except Exception as error:
            traceback.print_exc()
            trial.status = _FAILED if isinstance(error, kt.errors.FailedTrialError) else "INVALID"
            trial.message = traceback.format_exc()

    def _record_execution(self, trial, status, started, cost=None, score=None, error=None):
        self.trials_run += 1
        trial_log.record_execution(self.project_dir, self.tuner_id, trial.trial_id, status,
                                   started, score_name=OBJECTIVE.name, score=score, cost=cost,
                                   error=error)

    def search(self, *fit_args, **fit_kwargs):
        if oracle_server.distributed_role() == "chief":
            # KerasTuner's own chief loop polls every 20 s once a worker is told to stop;
            # this one answers the same gRPC protocol and returns within a second.
            self.save()
            oracle_server.serve_oracle(self.oracle)
            return
        super().search(*fit_args, **fit_kwargs)


class GoogLeNetTuner(_BudgetedTuner, kt.Tuner):
    """A `keras_tuner.Tuner` that enforces the hypermodel's compute budget."""


class GoogLeNetHyperband(_BudgetedTuner, kt.Hyperband):
    """`keras_tuner.Hyperband` (epochs per round, warm starts) with the compute budget."""

    def __init__(self, oracle, hypermodel, **kwargs):
        # kt.Hyperband.__init__ only builds its own oracle; ours is passed in.
        kt.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **kwargs)


def make_tuner(
    kind,
    hypermodel,
    *,
    max_trials=10,
    max_epochs=None,
    directory="tuning",
    project_name="googlenet",
    seed=0,
    distribution_strategy=None,
    overwrite=False,
    max_rejected_trials=None,
    max_consecutive_failed_trials=3,
    hyperband_factor=3,
):
    """A tuner over `hypermodel` that enforces its budget.

    Args:
        kind: `"random"`, `"bayesian"` or `"hyperband"`.
        hypermodel: a `GoogLeNetHyperModel`.
        max_trials: trials to train (rejected candidates do not count, up to
            `max_rejected_trials`); for Hyperband a cap on top of its brackets (None: none).
        max_epochs: Hyperband's epochs for the longest-trained models (required for it).
        directory, project_name: where trials, checkpoints and the oracle state live;
            re-creating the tuner on the same path resumes the search.
        seed: seeds the oracle's sampling.
        distribution_strategy: a `tf.distribute.Strategy` every trial trains under.
        overwrite: start afresh instead of resuming.
        max_rejected_trials: how many rejections may extend the search beyond
            `max_trials` (default `10 * max_trials`; past it they count as trials).
        max_consecutive_failed_trials: crashes in a row after which the search stops.
        hyperband_factor: Hyperband's reduction factor.
    """
    one_of("tuner", kind, TUNERS)
    if not isinstance(hypermodel, GoogLeNetHyperModel):
        raise ValueError(
            "`hypermodel` must be a GoogLeNetHyperModel (it carries the budget); "
            f"received {type(hypermodel).__name__}."
        )
    max_trials = positive_int("max_trials", max_trials, optional=True)
    if max_rejected_trials is None:
        max_rejected_trials = 10 * (max_trials or 10)
    # KerasTuner replaces a seed of 0 by a random one: shift so every seed is honoured.
    common = dict(objective=OBJECTIVE, seed=int(seed) + 1,
                  max_consecutive_failed_trials=max_consecutive_failed_trials)
    if kind == "random":
        oracle = RandomSearchOracle(max_trials=max_trials, **common)
    elif kind == "bayesian":
        oracle = BayesianOptimizationOracle(max_trials=max_trials, **common)
    else:
        oracle = HyperbandOracle(max_epochs=positive_int("max_epochs", max_epochs),
                                 factor=hyperband_factor, **common)
        oracle.max_trials = max_trials  # a cap; Hyperband sizes its brackets itself
    oracle.max_rejected_trials = int(max_rejected_trials)
    tuner_class = GoogLeNetHyperband if kind == "hyperband" else GoogLeNetTuner
    return tuner_class(
        oracle=oracle, hypermodel=hypermodel, directory=os.fspath(directory),
        project_name=project_name, distribution_strategy=distribution_strategy,
        overwrite=overwrite,
    )


def trial_status(trial):
    """`"completed"`, `"rejected"`, `"failed"` or `"running"` (e.g. interrupted)."""
    if trial.status == _COMPLETED and trial.score is not None and not math.isnan(trial.score):
        return "completed"
    if _BudgetAwareOracle.is_rejected(trial):
        return "rejected"
    if trial.status in (_FAILED, "INVALID", _COMPLETED):
        return "failed"
    return "running"


def _metric(trial, name):
    if not trial.metrics.exists(name):
        return None
    value = trial.metrics.get_last_value(name)
    return None if value is None or math.isnan(value) else float(value)


def trial_records(oracle, hypermodel):
    """One dict per trial: id, status, score, cost, time, hyperparameters and widths."""
    records = []
    for trial in sorted(oracle.trials.values(), key=lambda t: int(t.trial_id)):
        hp = trial.hyperparameters
        status = trial_status(trial)
        message = (trial.message or "").strip().splitlines()
        record = {
            "trial": trial.trial_id,
            "status": status,
            OBJECTIVE.name: float(trial.score) if status == "completed" else None,
            **{name: _metric(trial, name) for name in (*COST_METRICS, SECONDS_METRIC)},
            **{k: v for k, v in hypermodel.values(hp.copy()).items()},
            "widths": {k: list(v) for k, v in hypermodel.widths(hp.copy()).items()},
            "note": message[-1][:200] if message and status != "completed" else "",
        }
        if status == "rejected":
            # Trial messages do not travel over gRPC: say why from the recorded cost.
            record["note"] = "rejected: " + "; ".join(budget_violations(
                hypermodel.budget, record["macs"], record["params"], record["latency_ms"]))
        for name in ("macs", "params"):
            if record[name] is not None:
                record[name] = int(record[name])
        records.append(record)
    return records
