"""Timing helpers for the golden model's benchmarks (``aqua demo``, ``aqua bench``): the best
of several single-threaded runs."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable

__all__ = ["best_time", "single_thread"]


def best_time(fn: Callable[[], object], *, min_seconds: float = 0.2, max_runs: int = 50
              ) -> tuple[float, object]:
    """Run ``fn`` at least once and until ``min_seconds`` have passed (at most ``max_runs``
    times), on one torch thread; return the fastest run's wall time in seconds and the last
    result.

    One thread, because on a small, shared machine a multi-threaded torch kernel waits for a
    busy core at every barrier and its time jumps by orders of magnitude; single-threaded
    times are stable and compare like with like.
    """
    with single_thread():
        return _best_time(fn, min_seconds, max_runs)


@contextmanager
def single_thread():
    """Run torch on one intra-op thread inside the block (see :func:`best_time` for why)."""
    import torch        # here, so that importing this module (``aqua --help``) stays fast

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _best_time(fn, min_seconds, max_runs):
    best = float("inf")
    start = time.perf_counter()
    runs = 0
    result = None
    while runs == 0 or (time.perf_counter() - start < min_seconds and runs < max_runs):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return best, result
