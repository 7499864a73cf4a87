"""Latency summaries: percentiles of a list of timings, and throughput."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np


def summarize(values_ms: Sequence[float]) -> dict[str, float | int | None]:
    """Count, mean, min, max and the p50 / p95 / p99 of timings in ms (None for an empty list).

    Percentiles interpolate linearly between samples (numpy's default), so with fewer
    than 100 samples the p99 lies between the two slowest.
    """
    v = np.asarray(list(values_ms), dtype=float)
    if v.size == 0:
        return {"n": 0, "mean": None, "min": None, "p50": None, "p95": None, "p99": None, "max": None}
    p50, p95, p99 = np.percentile(v, [50, 95, 99])
    return {"n": int(v.size), "mean": round(float(v.mean()), 3), "min": round(float(v.min()), 3),
            "p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3),
            "max": round(float(v.max()), 3)}


def per_second(count: int, seconds: float) -> float | None:
    """Items per second, or None when nothing was timed."""
    return round(count / seconds, 3) if seconds > 0 else None


def run_threads(worker: Callable[[threading.Barrier], None], count: int) -> float:
    """Run `count` threads of `worker` and return the wall time in seconds from the moment
    all of them have called `wait()` on the barrier they are given (set-up excluded) until
    the last one ends."""
    start = threading.Barrier(count + 1)
    threads = [threading.Thread(target=worker, args=(start,), daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0
