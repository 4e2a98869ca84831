"""KerasTuner search over Inception widths under a compute budget.

    import keras_tuner as kt
    from keras_googlenet.tuning import GoogLeNetHyperModel, make_tuner

    hypermodel = GoogLeNetHyperModel(input_shape=(224, 224, 3), classes=1000,
                                     max_macs=800e6, max_latency_ms=40)
    tuner = make_tuner("bayesian", hypermodel, max_trials=20, directory="tuning")
    tuner.search(train_ds, validation_data=val_ds, epochs=5)

The search space (`GoogLeNetHyperModel`): a width multiplier per stage (`stage3`,
`stage4`, `stage5`, applied to every column of Table 1 in that stage), the
bottleneck ratios `reduce_3x3` and `reduce_5x5` (scaling the "#3x3 reduce" and "#5x5
reduce" columns on top of the stage multiplier: 1.0 keeps the paper's bottlenecks),
and optionally the variant, the dropout rate and the learning rate. All 1.0 is the
paper's network.

The budget (`max_macs`, `max_params`, `max_latency_ms`) is checked on the deployable
model (`inference_model`: aux heads dropped) before anything trains. The latency is
that of the float32 or int8 TFLite conversion, measured on the machine running the
trial. A candidate over budget is never trained and never scored: its trial ends
`FAILED` with the metric `rejected = 1` and its `macs`/`params`/`latency_ms` recorded
in the trial (so the chief sees them in distributed tuning too), and the search moves
on. Rejections do not count towards `max_trials` (up to `max_rejected_trials`) nor as
the consecutive failures after which KerasTuner gives up.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import tempfile
import time
import traceback
import warnings

import keras
import keras_tuner as kt
import numpy as np
from keras_tuner.src.engine import tuner_utils  # turns fit histories into trial metrics

from keras_googlenet import spec as spec_lib
from keras_googlenet.googlenet import GoogLeNet, set_batch_norm_momentum
from keras_googlenet.losses import compile_googlenet
from keras_googlenet.complexity import count_macs, count_params
from keras_googlenet.pruning import float32_inference_model, inference_model

# KerasTuner infers a direction only for metric names it knows ("val_accuracy"), not for
# the prefixed name of GoogLeNet's main head.
OBJECTIVE = kt.Objective("val_main_accuracy", direction="max")
REJECTED_METRIC = "rejected"
COST_METRICS = ("macs", "params", "latency_ms")
SECONDS_METRIC = "seconds"
LATENCY_PRECISIONS = ("float32", "int8")
TUNERS = ("random", "bayesian", "hyperband")
STAGE_HPS = ("stage3", "stage4", "stage5")
EXECUTIONS_DIR = "executions"  # one JSON-lines file per tuner process: what it ran

_FAILED = "FAILED"
_COMPLETED = "COMPLETED"


class BudgetExceededError(kt.errors.FailedTrialError):
    """A candidate is over the compute budget; KerasTuner ends its trial as FAILED."""

    def __init__(self, message, cost):
        super().__init__(message)
        self.cost = cost


@dataclasses.dataclass(frozen=True)
class ComputeBudget:
    """Limits a candidate must meet before it is trained (None = no limit).

    Attributes:
        max_macs: multiply-adds per image of the inference model (`count_macs`).
        max_params: trainable parameters of the inference model.
        max_latency_ms: median single-image latency of the TFLite conversion, measured
            here with `latency_threads` threads.
        latency_precision: `"float32"` or `"int8"` (full-integer, calibrated on random
            inputs: fine for timing, not for accuracy).
        latency_threads: TFLite interpreter threads (1 mimics a phone's single big core).
        latency_runs: timed runs after two warm-up runs; the median is reported.
    """

    max_macs: float | None = None
    max_params: float | None = None
    max_latency_ms: float | None = None
    latency_precision: str = "float32"
    latency_threads: int = 1
    latency_runs: int = 10

    def __post_init__(self):
        for arg in ("max_macs", "max_params", "max_latency_ms"):
            value = getattr(self, arg)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or value <= 0
            ):
                raise ValueError(
                    f"`{arg}` must be None or a positive number; received {arg}={value!r}."
                )
        if self.latency_precision not in LATENCY_PRECISIONS:
            raise ValueError(
                f"`latency_precision` must be one of {LATENCY_PRECISIONS}; "
                f"received latency_precision={self.latency_precision!r}."
            )
        for arg in ("latency_threads", "latency_runs"):
            value = getattr(self, arg)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{arg}` must be a positive int; received {arg}={value!r}.")

    @property
    def limited(self):
        return any(v is not None for v in (self.max_macs, self.max_params, self.max_latency_ms))


@dataclasses.dataclass(frozen=True)
class CandidateCost:
    """What a candidate costs, and which budget limits it breaks."""

    macs: int
    params: int
    latency_ms: float | None = None
    violations: tuple = ()

    @property
    def over_budget(self):
        return bool(self.violations)

    def as_metrics(self):
        metrics = {"macs": float(self.macs), "params": float(self.params)}
        if self.latency_ms is not None:
            metrics["latency_ms"] = float(self.latency_ms)
        return metrics


def budget_violations(budget, macs=None, params=None, latency_ms=None):
    """Human-readable reasons why a cost breaks `budget` (empty when within it)."""
    violations = []
    if budget.max_macs is not None and macs is not None and macs > budget.max_macs:
        violations.append(f"{macs / 1e6:,.1f} MMACs > max_macs {budget.max_macs / 1e6:,.1f}M")
    if budget.max_params is not None and params is not None and params > budget.max_params:
        violations.append(
            f"{params / 1e6:,.3f}M params > max_params {budget.max_params / 1e6:,.3f}M"
        )
    if budget.max_latency_ms is not None and latency_ms is not None \
            and latency_ms > budget.max_latency_ms:
        violations.append(
            f"{budget.latency_precision} TFLite latency {latency_ms:.2f} ms > "
            f"max_latency_ms {budget.max_latency_ms:g}"
        )
    return violations


def measure_latency_ms(model, precision="float32", num_threads=1, runs=10, seed=0):
    """Median single-image latency (ms) of `model` converted to TFLite, on this machine.

    `model` must be a single-output float32 model with a fixed input size (use
    `float32_inference_model`). Conversion goes through `keras_googlenet.export`, timing
    through `keras_googlenet.runtime`, the same code paths as a real export.
    """
    from keras_googlenet import export, runtime

    if precision not in LATENCY_PRECISIONS:
        raise ValueError(
            f"`precision` must be one of {LATENCY_PRECISIONS}; received precision={precision!r}."
        )
    size = tuple(model.input_shape[1:3])
    rng = np.random.default_rng(seed)

    def random_images(count=1):
        return rng.uniform(-1.0, 1.0, (count, *size, 3)).astype("float32")

    def representative_dataset():
        for _ in range(4):
            yield [random_images()]

    with tempfile.TemporaryDirectory(prefix="googlenet-latency-") as tmp:
        savedmodel = os.path.join(tmp, "savedmodel")
        export.write_savedmodel(model, savedmodel, uint8_signature=False)
        flatbuffer = export.convert_tflite(
            savedmodel, "tflite-fp32" if precision == "float32" else "tflite-int8",
            representative_dataset=representative_dataset if precision == "int8" else None,
        )
        path = os.path.join(tmp, "model.tflite")
        with open(path, "wb") as f:
            f.write(flatbuffer)
        predictor = runtime.load_predictor(path, num_threads=num_threads)
        image = random_images()
        for _ in range(2):
            predictor.predict(image)
        timings = []
        for _ in range(runs):
            started = time.perf_counter()
            predictor.predict(image)
            timings.append(time.perf_counter() - started)
    return 1000.0 * statistics.median(timings)


def _positive_multipliers(arg, values):
    values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
    if not values or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
        for v in values
    ):
        raise ValueError(
            f"`{arg}` must be one or more positive numbers, e.g. (0.5, 0.75, 1.0); "
            f"received {arg}={values!r}."
        )
    return tuple(sorted({float(v) for v in values}))


def _number_or_range(arg, value, low, high):
    """A fixed float, or a (min, max) range to search, each in (low, high)."""
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    ok = len(values) in (1, 2) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v < high
        for v in values
    ) and (len(values) == 1 or values[0] < values[1])
    if not ok:
        raise ValueError(
            f"`{arg}` must be a number in [{low}, {high}) or a (min, max) range with "
            f"min < max; received {arg}={value!r}."
        )
    return tuple(float(v) for v in values)


class GoogLeNetHyperModel(kt.HyperModel):
    """A `keras_tuner.HyperModel` over GoogLeNet's Inception widths, under a budget.

    Hyperparameters (a tuple of values is searched, a single value is fixed):
    - `stage3`, `stage4`, `stage5`: width multiplier of every column of the
      Inception blocks of that stage (`stage_multipliers`).
    - `reduce_3x3`, `reduce_5x5`: extra factor on the "#3x3 reduce" / "#5x5 reduce"
      columns (`reduce_ratios`): 1.0 keeps Table 1's bottleneck ratio (96 -> 128 in 3a),
      0.5 halves the bottleneck.
    - `variant` (`variants`), `dropout` (a rate or a (min, max) range) and
      `learning_rate` (a rate or a (min, max) range, log-sampled).

    Widths are rounded to multiples of 8 (`spec.scale_width`), then the whole network,
    stem included, is scaled by `width_multiplier` (MobileNet's alpha), so the searched
    space can be shrunk for small inputs.

    `build(hp)` returns a GoogLeNet compiled by `compile_googlenet` (Adam; aux loss
    weight `aux_loss_weight`), whose logs carry `val_main_accuracy`, the tuner's
    objective (`OBJECTIVE`). `fit` accepts plain `(images, labels)` datasets and feeds
    the labels to every head. `cost(hp)` measures the candidate against the budget.

    Args:
        input_shape: `(height, width, channels)` of the images.
        classes: number of classes.
        include_aux: train with the two auxiliary heads (needs inputs >= 65 px, 49 for
            `"torchvision"`).
        variants: one variant name or a tuple of names to search.
        width_multiplier: scales the whole network (stem included) after the search's
            widths; 1.0 keeps them.
        stage_multipliers: choices of `stage3`/`stage4`/`stage5`.
        reduce_ratios: choices of `reduce_3x3`/`reduce_5x5`.
        dropout: main-head dropout, a rate or a (min, max) range.
        learning_rate: Adam's learning rate, a value or a (min, max) range.
        aux_loss_weight: weight of each aux loss (the paper: 0.3).
        bn_momentum: BatchNorm moving-average momentum (0.9 suits short trials).
        label_smoothing: label smoothing of every head.
        max_macs, max_params, max_latency_ms, latency_precision, latency_threads,
        latency_runs: the `ComputeBudget`.
        name: the model's name.
    """

    def __init__(
        self,
        input_shape=(224, 224, 3),
        classes=1000,
        *,
        include_aux=True,
        variants="v1_bn",
        width_multiplier=1.0,
        stage_multipliers=(0.5, 0.75, 1.0),
        reduce_ratios=(0.5, 0.75, 1.0),
        dropout=0.4,
        learning_rate=2e-3,
        aux_loss_weight=0.3,
        bn_momentum=0.9,
        label_smoothing=0.0,
        max_macs=None,
        max_params=None,
        max_latency_ms=None,
        latency_precision="float32",
        latency_threads=1,
        latency_runs=10,
        name="googlenet",
    ):
        super().__init__(name=name, tunable=True)
        self.variants = (variants,) if isinstance(variants, str) else tuple(variants)
        if not self.variants:
            raise ValueError("`variants` must name at least one variant.")
        for variant in self.variants:
            spec_lib.get_variant(variant)
        shape = tuple(input_shape)
        if len(shape) != 3 or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape
        ):
            raise ValueError(
                "`input_shape` must be (height, width, channels) with positive ints (the "
                f"budget needs a fixed size); received input_shape={input_shape!r}."
            )
        for variant in self.variants:
            minimum = spec_lib.min_input_size(include_aux, variant)
            if min(shape[:2]) < minimum:
                raise ValueError(
                    f"`input_shape` {shape} is too small for variant {variant!r} "
                    f"{'with' if include_aux else 'without'} aux heads: height and width "
                    f"must be >= {minimum}."
                )
        if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
            raise ValueError(f"`classes` must be a positive int; received classes={classes!r}.")
        self.input_shape = shape
        self.classes = classes
        self.include_aux = bool(include_aux)
        self.width_multiplier = _positive_multipliers("width_multiplier", width_multiplier)
        if len(self.width_multiplier) != 1:
            raise ValueError(
                "`width_multiplier` must be one positive number (search per stage with "
                f"`stage_multipliers`); received width_multiplier={width_multiplier!r}."
            )
        self.width_multiplier = self.width_multiplier[0]
        self.stage_multipliers = _positive_multipliers("stage_multipliers", stage_multipliers)
        self.reduce_ratios = _positive_multipliers("reduce_ratios", reduce_ratios)
        self.dropout = _number_or_range("dropout", dropout, 0.0, 1.0)
        self.learning_rate = _number_or_range("learning_rate", learning_rate, 1e-8, 10.0)
        if not aux_loss_weight >= 0:
            raise ValueError(
                f"`aux_loss_weight` must be >= 0; received aux_loss_weight={aux_loss_weight!r}."
            )
        self.aux_loss_weight = float(aux_loss_weight)
        if not 0 <= bn_momentum < 1:
            raise ValueError(f"`bn_momentum` must be in [0, 1); received {bn_momentum!r}.")
        self.bn_momentum = float(bn_momentum)
        self.label_smoothing = float(label_smoothing)
        self.budget = ComputeBudget(
            max_macs=max_macs, max_params=max_params, max_latency_ms=max_latency_ms,
            latency_precision=latency_precision, latency_threads=latency_threads,
            latency_runs=latency_runs,
        )
        self._costs = {}

    # ------------------------------------------------------------------ the space

    @staticmethod
    def _choice(hp, name, values):
        if len(values) == 1:
            return hp.Fixed(name, values[0])
        return hp.Choice(name, list(values), ordered=not isinstance(values[0], str))

    @staticmethod
    def _float(hp, name, values, sampling="linear"):
        if len(values) == 1:
            return hp.Fixed(name, values[0])
        return hp.Float(name, values[0], values[1], sampling=sampling)

    def values(self, hp):
        """The hyperparameter values of a candidate (declaring them in `hp` on first use)."""
        values = {name: self._choice(hp, name, self.stage_multipliers) for name in STAGE_HPS}
        values["reduce_3x3"] = self._choice(hp, "reduce_3x3", self.reduce_ratios)
        values["reduce_5x5"] = self._choice(hp, "reduce_5x5", self.reduce_ratios)
        values["variant"] = self._choice(hp, "variant", self.variants)
        values["dropout"] = self._float(hp, "dropout", self.dropout)
        values["learning_rate"] = self._float(hp, "learning_rate", self.learning_rate, "log")
        return values

    def width_overrides(self, hp):
        """The `widths=` argument of `GoogLeNet` for a candidate (before `width_multiplier`)."""
        values = self.values(hp)
        overrides = {}
        for stage_hp, blocks in zip(STAGE_HPS, spec_lib.STAGES, strict=True):
            multiplier = values[stage_hp]
            for block in blocks:
                n1x1, r3, n3x3, r5, n5x5, pool = spec_lib.INCEPTION_WIDTHS[block]
                overrides[block] = (
                    spec_lib.scale_width(n1x1, multiplier),
                    spec_lib.scale_width(r3, multiplier * values["reduce_3x3"]),
                    spec_lib.scale_width(n3x3, multiplier),
                    spec_lib.scale_width(r5, multiplier * values["reduce_5x5"]),
                    spec_lib.scale_width(n5x5, multiplier),
                    spec_lib.scale_width(pool, multiplier),
                )
        return overrides

    def widths(self, hp):
        """The per-block widths `{"3a": (6 ints), ...}` the candidate is built with."""
        return spec_lib.resolve_widths(self.width_overrides(hp), self.width_multiplier)

    def build_kwargs(self, hp):
        """`GoogLeNet(**kwargs)` arguments that rebuild the candidate's architecture."""
        values = self.values(hp)
        return {
            "input_shape": self.input_shape,
            "classes": self.classes,
            "include_aux": self.include_aux,
            "variant": values["variant"],
            "widths": self.width_overrides(hp),
            "width_multiplier": self.width_multiplier,
            "dropout": values["dropout"],
        }

    def build_model(self, hp):
        """The candidate, uncompiled."""
        model = GoogLeNet(**self.build_kwargs(hp), name=self.name)
        return set_batch_norm_momentum(model, self.bn_momentum)

    def build(self, hp):
        model = self.build_model(hp)
        aux_weight = self.aux_loss_weight
        compile_googlenet(
            model,
            optimizer=keras.optimizers.Adam(learning_rate=self.values(hp)["learning_rate"]),
            loss_weights={"aux1": aux_weight, "aux2": aux_weight} if self.include_aux else None,
            label_smoothing=self.label_smoothing,
        )
        return model

    # ------------------------------------------------------------------ the budget

    @staticmethod
    def _key(hp):
        # Hyperband adds "tuner/epochs" etc.; the architecture does not depend on them.
        values = {k: v for k, v in hp.values.items() if not k.startswith("tuner/")}
        return json.dumps(values, sort_keys=True, default=str)

    def cost(self, hp, model=None):
        """A `CandidateCost`: MACs and params of the inference model, latency if budgeted.

        The latency is only measured when MACs and params are within budget (a
        conversion takes seconds). Results are cached per configuration. `model`: the
        candidate already built from `hp`, to save a build.
        """
        key = self._key(hp)
        if key in self._costs:
            return self._costs[key]
        budget = self.budget
        model = self.build_model(hp) if model is None else model
        deployed = inference_model(model)
        macs, params = int(count_macs(deployed)), int(count_params(deployed))
        violations = budget_violations(budget, macs, params)
        latency = None
        if budget.max_latency_ms is not None and not violations:
            latency = measure_latency_ms(
                float32_inference_model(model), precision=budget.latency_precision,
                num_threads=budget.latency_threads, runs=budget.latency_runs,
            )
            violations = budget_violations(budget, macs, params, latency)
        cost = CandidateCost(macs=macs, params=params, latency_ms=latency,
                             violations=tuple(violations))
        self._costs[key] = cost
        return cost

    def check_budget(self, hp):
        """Raise `BudgetExceededError` (a `FailedTrialError`) if the candidate is over budget."""
        cost = self.cost(hp)
        if cost.over_budget:
            raise BudgetExceededError(
                "over budget, not trained: " + "; ".join(cost.violations), cost
            )
        return cost

    # ------------------------------------------------------------------ training

    def _targets(self, model, data):
        import tensorflow as tf

        if not isinstance(model.output, dict) or not isinstance(data, tf.data.Dataset):
            return data
        spec = data.element_spec
        if not isinstance(spec, tuple) or len(spec) != 2 or isinstance(spec[1], dict):
            return data
        heads = tuple(model.output)
        return data.map(lambda x, y: (x, {head: y for head in heads}))

    def fit(self, hp, model, *args, **kwargs):
        """Train a candidate; refuses one over budget (with any KerasTuner tuner)."""
        self.check_budget(hp)
        if args:
            args = (self._targets(model, args[0]), *args[1:])
        elif "x" in kwargs:
            kwargs["x"] = self._targets(model, kwargs["x"])
        if "validation_data" in kwargs:
            kwargs["validation_data"] = self._targets(model, kwargs["validation_data"])
        data = args[0] if args else kwargs.get("x")
        if type(data).__module__.startswith("tensorflow") and hasattr(data, "element_spec"):
            kwargs.setdefault("shuffle", False)  # a tf.data pipeline shuffles itself
        if isinstance(model.output, dict):  # numpy labels: one copy per head
            if len(args) > 1 and not isinstance(args[1], dict):
                args = (args[0], {head: args[1] for head in model.output}, *args[2:])
            elif "y" in kwargs and not isinstance(kwargs["y"], dict):
                kwargs["y"] = {head: kwargs["y"] for head in model.output}
        return model.fit(*args, **kwargs)


# ---------------------------------------------------------------------- tuners


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
        metrics = tuner_utils.convert_to_metrics_dict(results, self.oracle.objective)
        metrics = {name: float(value) for name, value in metrics.items()}
        metrics.update(cost.as_metrics())
        metrics[SECONDS_METRIC] = time.perf_counter() - started
        self._record_execution(trial, "completed", started, cost, metrics.get(OBJECTIVE.name))
        return metrics

    def _try_run_and_update_trial(self, trial, *fit_args, **fit_kwargs):
        # KerasTuner 1.4.8's handling, except that a rejection (expected) prints no traceback.
        try:
            self._run_and_update_trial(trial, *fit_args, **fit_kwargs)
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
        """Append what this process ran to `executions/<tuner_id>.jsonl` (an audit trail)."""
        record = {
            "trial_id": trial.trial_id, "tuner_id": self.tuner_id, "pid": os.getpid(),
            "status": status, "seconds": round(time.perf_counter() - started, 3),
            "finished_at": time.time(), OBJECTIVE.name: score,
        }
        if cost is not None:
            record.update(cost.as_metrics())
        if error is not None:
            record["error"] = f"{type(error).__name__}: {error}"[:500]
        directory = os.path.join(self.project_dir, EXECUTIONS_DIR)
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, f"{self.tuner_id}.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def search(self, *fit_args, **fit_kwargs):
        from keras_tuner.src.distribute import utils as dist_utils

        if dist_utils.is_chief_oracle():
            # KerasTuner's own chief loop polls every 20 s once a worker is told to stop;
            # this one answers the same gRPC protocol and returns within a second.
            self.save()
            serve_oracle(self.oracle)
            return
        super().search(*fit_args, **fit_kwargs)


class GoogLeNetTuner(_BudgetedTuner, kt.Tuner):
    """A `keras_tuner.Tuner` that enforces the hypermodel's compute budget."""


class GoogLeNetHyperband(_BudgetedTuner, kt.Hyperband):
    """`keras_tuner.Hyperband` (epochs per round, warm starts) with the compute budget."""

    def __init__(self, oracle, hypermodel, **kwargs):
        # kt.Hyperband.__init__ only builds its own oracle; ours is passed in.
        kt.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **kwargs)


def serve_oracle(oracle, poll_seconds=0.5):
    """Serve `oracle` to the workers (KerasTuner's chief protocol) until the search ends."""
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise RuntimeError(
            f"the chief cannot listen on {address} (KERASTUNER_ORACLE_IP/PORT): is the port "
            "in use or the IP not an address of this host?"
        )
    server.start()
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            time.sleep(poll_seconds)
    finally:
        server.stop(grace=1)


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
    if kind not in TUNERS:
        raise ValueError(f"`tuner` must be one of {TUNERS}; received tuner={kind!r}.")
    if not isinstance(hypermodel, GoogLeNetHyperModel):
        raise ValueError(
            "`hypermodel` must be a GoogLeNetHyperModel (it carries the budget); "
            f"received {type(hypermodel).__name__}."
        )
    if max_trials is not None and (
        isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1
    ):
        raise ValueError(
            f"`max_trials` must be a positive int; received max_trials={max_trials!r}."
        )
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
        if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
            raise ValueError(
                f"`max_epochs` must be a positive int for Hyperband; received {max_epochs!r}."
            )
        oracle = HyperbandOracle(max_epochs=max_epochs, factor=hyperband_factor, **common)
        oracle.max_trials = max_trials  # a cap; Hyperband sizes its brackets itself
    oracle.max_rejected_trials = int(max_rejected_trials)
    tuner_class = GoogLeNetHyperband if kind == "hyperband" else GoogLeNetTuner
    return tuner_class(
        oracle=oracle, hypermodel=hypermodel, directory=os.fspath(directory),
        project_name=project_name, distribution_strategy=distribution_strategy,
        overwrite=overwrite,
    )


# ---------------------------------------------------------------------- reading results


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


def pareto_front(records, cost="macs"):
    """Trial ids of completed trials no other trial beats on both accuracy and `cost`."""
    points = sorted(
        (r for r in records if r["status"] == "completed" and r[cost] is not None),
        key=lambda r: (r[cost], -r[OBJECTIVE.name]),
    )
    front, best = [], -math.inf
    for record in points:
        if record[OBJECTIVE.name] > best:
            front.append(record["trial"])
            best = record[OBJECTIVE.name]
    return front
