"""KerasTuner search over Inception widths under a compute budget.

    from keras_googlenet.tuning import GoogLeNetHyperModel
    from keras_googlenet_training.tuner import make_tuner  # KerasTuner tuners: training side

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
trial. A candidate over budget is never trained: `GoogLeNetHyperModel.fit` raises
`BudgetExceededError`, and the tuners of `keras_googlenet_training.tuner` reject it
before building anything.

This module holds the search space and the result helpers, `compute_budget` the budget
(re-exported here); the KerasTuner tuner and oracle subclasses, the distributed oracle
server and the trial log live in `keras_googlenet_training` (`tuner`, `oracle_server`,
`trial_log`).
"""

from __future__ import annotations

import json
import math

import keras
import keras_tuner as kt

from keras_googlenet import spec as spec_lib
from keras_googlenet.complexity import count_macs, count_params
from keras_googlenet.compute_budget import (  # noqa: F401 - public here too
    LATENCY_PRECISIONS,
    CandidateCost,
    ComputeBudget,
    budget_violations,
    measure_latency_ms,
)
from keras_googlenet.googlenet import GoogLeNet, set_batch_norm_momentum
from keras_googlenet.heads import float32_inference_model, inference_model
from keras_googlenet.losses import compile_googlenet

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
