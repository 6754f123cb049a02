"""Wall-clock timing shared by the benchmarks."""

from __future__ import annotations

import statistics
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


def spread_of(function: Callable[[], Any], repeats: int) -> tuple[tuple[float, float, float], Any]:
    """Call ``function`` ``repeats`` times; return ``(min, median, max)`` of the wall times in
    seconds and the last call's result."""
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return (min(times), statistics.median(times), max(times)), result
