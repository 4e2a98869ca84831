"""KerasTuner search space over Inception widths under a compute budget (docs/tuning.md);
the budget is in `compute_budget`, the tuners that enforce it in `keras_googlenet_training`."""

import inspect
import json
import math

import keras_tuner as kt

from keras_googlenet import checks, optimizers
from keras_googlenet import spec as spec_lib
from keras_googlenet.complexity import count_macs, count_params
from keras_googlenet.compute_budget import (
    CandidateCost,
    ComputeBudget,
    budget_violations,
    measure_latency_ms,
)
from keras_googlenet.googlenet import GoogLeNet, set_batch_norm_momentum
from keras_googlenet.heads import float32_inference_model, inference_model
from keras_googlenet.losses import compile_googlenet, head_targets

__all__ = ["COST_METRICS", "OBJECTIVE", "REJECTED_METRIC", "SECONDS_METRIC", "STAGE_HPS", "TUNERS",
           "BudgetExceededError", "GoogLeNetHyperModel", "pareto_front"]

# KerasTuner infers a direction only for metric names it knows ("val_accuracy"), not for
# the prefixed name of GoogLeNet's main head.
OBJECTIVE = kt.Objective("val_main_accuracy", direction="max")
REJECTED_METRIC = "rejected"
COST_METRICS = ("macs", "params", "latency_ms")
SECONDS_METRIC = "seconds"
TUNERS = ("random", "bayesian", "hyperband")
STAGE_HPS = ("stage3", "stage4", "stage5")


class BudgetExceededError(kt.errors.FailedTrialError):
    """A candidate is over the compute budget; KerasTuner ends its trial as FAILED."""

    def __init__(self, message, cost):
        super().__init__(message)
        self.cost = cost


def _positive_multipliers(arg, values):
    """The sorted distinct choices of a multiplier: one or more positive numbers."""
    values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
    if not values:
        checks.fail(arg, "one or more positive numbers, e.g. (0.5, 0.75, 1.0)", values)
    return tuple(sorted({checks.positive_number(arg, v) for v in values}))


def _number_or_range(arg, value, low, high):
    """A fixed float, or a (min, max) range to search, each in (low, high)."""
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not (len(values) in (1, 2) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v < high
            for v in values) and (len(values) == 1 or values[0] < values[1])):
        raise ValueError(f"`{arg}` must be a number in [{low}, {high}) or a (min, max) range with "
                         f"min < max; received {arg}={value!r}.")
    return tuple(float(v) for v in values)


class GoogLeNetHyperModel(kt.HyperModel):
    """A `keras_tuner.HyperModel` over GoogLeNet's Inception widths, under a budget.

    The hyperparameters are described in docs/tuning.md: a tuple of values is searched, a
    single value fixed. `build(hp)` returns a GoogLeNet compiled by `compile_googlenet` (Adam),
    whose logs carry the tuner's objective `OBJECTIVE`; `fit` feeds the labels of plain
    `(images, labels)` data to every head; `cost(hp)` measures a candidate against the budget.

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
        max_macs, max_params, max_latency_ms, latency_precision, latency_threads: the
            `ComputeBudget`.
        name: the model's name.
    """

    def __init__(self, input_shape=(224, 224, 3), classes=1000, *, include_aux=True,
                 variants="v1_bn", width_multiplier=1.0, stage_multipliers=(0.5, 0.75, 1.0),
                 reduce_ratios=(0.5, 0.75, 1.0), dropout=0.4, learning_rate=2e-3,
                 max_macs=None, max_params=None, max_latency_ms=None,
                 latency_precision="float32", latency_threads=1, name="googlenet"):
        super().__init__(name=name, tunable=True)
        self.variants = (variants,) if isinstance(variants, str) else tuple(variants)
        if not self.variants:
            raise ValueError("`variants` must name at least one variant.")
        for variant in self.variants:  # the budget needs a fixed size that each accepts
            spec_lib.get_variant(variant)
            self.input_shape = spec_lib.check_input_shape(input_shape, include_aux, variant,
                                                          fixed_size=True)
        self.classes = checks.positive_int("classes", classes)
        self.include_aux = bool(include_aux)
        # One number: the search scales each stage with `stage_multipliers`.
        self.width_multiplier = checks.positive_number("width_multiplier", width_multiplier)
        self.stage_multipliers = _positive_multipliers("stage_multipliers", stage_multipliers)
        self.reduce_ratios = _positive_multipliers("reduce_ratios", reduce_ratios)
        self.dropout = _number_or_range("dropout", dropout, 0.0, 1.0)
        self.learning_rate = _number_or_range("learning_rate", learning_rate, 1e-8, 10.0)
        self.budget = ComputeBudget(
            max_macs=max_macs, max_params=max_params, max_latency_ms=max_latency_ms,
            latency_precision=latency_precision, latency_threads=latency_threads)
        self._costs = {}

    @staticmethod
    def _declare(hp, name, values, sampling=None):
        """A fixed value, a `Float` range (`sampling` given) or a `Choice` among `values`."""
        if len(values) == 1:
            return hp.Fixed(name, values[0])
        if sampling:
            return hp.Float(name, values[0], values[1], sampling=sampling)
        return hp.Choice(name, list(values), ordered=not isinstance(values[0], str))

    def values(self, hp):
        """The hyperparameter values of a candidate (declaring them in `hp` on first use)."""
        values = {name: self._declare(hp, name, self.stage_multipliers) for name in STAGE_HPS}
        for name in ("reduce_3x3", "reduce_5x5"):
            values[name] = self._declare(hp, name, self.reduce_ratios)
        values["variant"] = self._declare(hp, "variant", self.variants)
        values["dropout"] = self._declare(hp, "dropout", self.dropout, "linear")
        values["learning_rate"] = self._declare(hp, "learning_rate", self.learning_rate, "log")
        return values

    def width_overrides(self, hp):
        """The `widths=` argument of `GoogLeNet` for a candidate (before `width_multiplier`)."""
        values = self.values(hp)
        # Table 1's columns: only "#3x3 reduce" and "#5x5 reduce" take the extra factor.
        factors = (1.0, values["reduce_3x3"], 1.0, values["reduce_5x5"], 1.0, 1.0)
        return {
            block: tuple(spec_lib.scale_width(width, values[stage_hp] * factor)
                         for width, factor in zip(spec_lib.INCEPTION_WIDTHS[block], factors,
                                                  strict=True))
            for stage_hp, blocks in zip(STAGE_HPS, spec_lib.STAGES, strict=True)
            for block in blocks
        }

    def widths(self, hp):
        """The per-block widths `{"3a": (6 ints), ...}` the candidate is built with."""
        return spec_lib.resolve_widths(self.width_overrides(hp), self.width_multiplier)

    def build_kwargs(self, hp):
        """`GoogLeNet(**kwargs)` arguments that rebuild the candidate's architecture."""
        values = self.values(hp)
        return dict(input_shape=self.input_shape, classes=self.classes,
                    include_aux=self.include_aux, variant=values["variant"],
                    widths=self.width_overrides(hp), width_multiplier=self.width_multiplier,
                    dropout=values["dropout"])

    def build_model(self, hp):
        """The candidate, uncompiled, with BatchNorm momentum 0.9 (`set_batch_norm_momentum`)."""
        return set_batch_norm_momentum(GoogLeNet(**self.build_kwargs(hp), name=self.name), 0.9)

    def build(self, hp):
        optimizer = optimizers.Adam(learning_rate=self.values(hp)["learning_rate"])
        return compile_googlenet(self.build_model(hp), optimizer=optimizer)

    def cost(self, hp, model=None):
        """A `CandidateCost`: MACs and params of the inference model, latency if budgeted,
        cached per configuration. The latency is only measured when MACs and params are
        within budget (a conversion takes seconds). `model`: the candidate built from `hp`."""
        # Hyperband adds "tuner/epochs" etc.; the architecture does not depend on them.
        key = json.dumps({k: v for k, v in hp.values.items() if not k.startswith("tuner/")},
                         sort_keys=True, default=str)
        if key in self._costs:
            return self._costs[key]
        model = self.build_model(hp) if model is None else model
        deployed, budget = inference_model(model), self.budget
        macs, params = int(count_macs(deployed)), int(count_params(deployed))
        violations, latency = budget_violations(budget, macs, params), None
        if budget.max_latency_ms is not None and not violations:
            latency = measure_latency_ms(
                float32_inference_model(model), precision=budget.latency_precision,
                num_threads=budget.latency_threads, runs=budget.latency_runs)
            violations = budget_violations(budget, macs, params, latency)
        self._costs[key] = CandidateCost(macs, params, latency, tuple(violations))
        return self._costs[key]

    def check_budget(self, hp):
        """Raise `BudgetExceededError` (a `FailedTrialError`) if the candidate is over budget."""
        if (cost := self.cost(hp)).over_budget:
            raise BudgetExceededError("over budget, not trained: " + "; ".join(cost.violations),
                                      cost)
        return cost

    def fit(self, hp, model, *args, **kwargs):
        """Train a candidate; refuses one over budget (with any KerasTuner tuner)."""
        import tensorflow as tf

        self.check_budget(hp)
        fit_args = inspect.signature(model.fit).bind(*args, **kwargs)
        given = fit_args.arguments
        for key in ("x", "validation_data"):
            data = given.get(key)
            spec = data.element_spec if isinstance(data, tf.data.Dataset) else None
            if isinstance(spec, tuple) and len(spec) == 2 and not isinstance(spec[1], dict):
                given[key] = given[key].map(lambda x, y: (x, head_targets(model, y)))
        if given.get("y") is not None and not isinstance(given["y"], dict):
            given["y"] = head_targets(model, given["y"])  # array labels: one per head
        if hasattr(given.get("x"), "element_spec"):
            given.setdefault("shuffle", False)  # it shuffles itself; Keras warns otherwise
        return model.fit(*fit_args.args, **fit_args.kwargs)


def pareto_front(records, cost="macs"):
    """Trial ids of completed trials no other trial beats on both accuracy and `cost`."""
    points = sorted((r for r in records if r["status"] == "completed" and r[cost] is not None),
                    key=lambda r: (r[cost], -r[OBJECTIVE.name]))
    front, best = [], -math.inf
    for record in points:
        if record[OBJECTIVE.name] > best:
            front.append(record["trial"])
            best = record[OBJECTIVE.name]
    return front
