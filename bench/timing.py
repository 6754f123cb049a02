"""Wall-clock timing shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def best_of(function: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Call ``function`` ``repeats`` times; return the smallest wall time in seconds and the
    last call's result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return best, result


def first_call(function: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time in seconds of one call of ``function`` (e.g. with JIT compilation), and its
    result."""
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result
