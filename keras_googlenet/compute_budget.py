"""A compute budget for GoogLeNet candidates: MACs, parameters and measured TFLite latency."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import tempfile
import timeit

import numpy as np

from keras_googlenet import checks

__all__ = ["LATENCY_PRECISIONS", "CandidateCost", "ComputeBudget", "budget_violations",
           "measure_latency_ms", "median_latency_ms"]

LATENCY_PRECISIONS = ("float32", "int8")


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
            checks.positive_number(arg, getattr(self, arg), optional=True)
        checks.one_of("latency_precision", self.latency_precision, LATENCY_PRECISIONS)
        for arg in ("latency_threads", "latency_runs"):
            checks.positive_int(arg, getattr(self, arg))


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
        """The cost as KerasTuner metrics (the latency only when it was measured)."""
        metrics = {"macs": self.macs, "params": self.params, "latency_ms": self.latency_ms}
        return {name: float(value) for name, value in metrics.items() if value is not None}


def budget_violations(budget, macs=None, params=None, latency_ms=None):
    """Human-readable reasons why a cost breaks `budget` (empty when within it)."""
    limits = (  # (value, limit, reason, unit the reason shows them in)
        (macs, budget.max_macs, "{:,.1f} MMACs > max_macs {:,.1f}M", 1e6),
        (params, budget.max_params, "{:,.3f}M params > max_params {:,.3f}M", 1e6),
        (latency_ms, budget.max_latency_ms,
         budget.latency_precision + " TFLite latency {:.2f} ms > max_latency_ms {:g}", 1))
    return [reason.format(value / unit, limit / unit) for value, limit, reason, unit in limits
            if value is not None and limit is not None and value > limit]


def median_latency_ms(predictor, x, runs):
    """Median wall time (ms) of `runs` calls of `predictor.predict(x)`, or None for 0 runs.
    Two warm-up calls first: they build graphs and resize the TFLite interpreter."""
    if not runs:
        return None
    times = timeit.repeat(lambda: predictor.predict(x), number=1, repeat=runs + 2)[2:]
    return 1000.0 * float(np.median(times))


def measure_latency_ms(model, precision="float32", num_threads=1, runs=10):
    """Median single-image latency (ms) of `model` converted to TFLite, on this machine.
    `model`: a single-output float32 model with a fixed input size (`float32_inference_model`).
    Conversion and timing use `keras_googlenet.export` and `.runtime`, as a real export does."""
    from keras_googlenet import runtime
    from keras_googlenet.export.convert import convert_tflite, write_savedmodel

    checks.one_of("precision", precision, LATENCY_PRECISIONS)
    checks.positive_int("runs", runs)
    # Four single-image batches to calibrate int8 on, a fifth to time.
    images = np.random.default_rng(0).uniform(
        -1.0, 1.0, (5, 1, *model.input_shape[1:3], 3)).astype("float32")
    with tempfile.TemporaryDirectory(prefix="googlenet-latency-") as tmp:
        savedmodel = os.path.join(tmp, "savedmodel")
        write_savedmodel(model, savedmodel, uint8_signature=False)
        path = pathlib.Path(tmp, "model.tflite")
        path.write_bytes(convert_tflite(
            savedmodel, "tflite-fp32" if precision == "float32" else "tflite-int8",
            representative_dataset=(lambda: ([image] for image in images[:4]))
            if precision == "int8" else None))
        predictor = runtime.load_predictor(str(path), num_threads=num_threads)
        return median_latency_ms(predictor, images[4], runs)
