"""A compute budget for GoogLeNet candidates: MACs, parameters and measured TFLite latency.

`ComputeBudget` holds the limits, `CandidateCost` what a candidate costs and which limits
it breaks; `measure_latency_ms` times a model's TFLite conversion on this machine through
the same export and runtime code as a real deployment. `keras_googlenet.tuning` checks
every candidate of a width search against a budget before it trains.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import tempfile
import time

import numpy as np

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
