"""The timing loop the benchmark scripts share (they run as `python benchmarks/NAME.py`)."""

from __future__ import annotations

import time

import numpy as np


def call_times_ms(call, runs, warmup=0):
    """Call `call()` `warmup` times untimed, then `runs` times; each timed call in ms."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return np.asarray(times) * 1e3


def median_ms(call, runs, warmup=10, rounds=1):
    """The median over `rounds` of the median of `runs` timed calls, in ms."""
    for _ in range(warmup):
        call()
    return float(np.median([np.median(call_times_ms(call, runs)) for _ in range(rounds)]))
