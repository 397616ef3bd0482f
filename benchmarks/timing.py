"""The benchmarks' one timer: the best of a few rounds of repeated calls, after a warm-up call."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_seconds(f: Callable[[], object], repeats: int, rounds: int = 3) -> float:
    """Seconds per call of ``f``: one warm-up call (kernel generation, first-touch page faults), then the fastest
    of ``rounds`` rounds of ``repeats`` calls each."""
    f()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            f()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best
