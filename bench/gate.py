"""The agreement gate and the interleaved timing every engine-vs-engine benchmark goes through.

:func:`measure` runs each engine once (its first call: JIT compilation or cache load, timed
apart), compares every engine's :class:`~bench.engines.Outcome` with the reference engine's
(the first one, Candela) and raises :class:`Disagreement` before timing anything when one
differs: a different number of closed trades, a final equity more than :data:`RTOL` apart
(relative), or bars at which a peer could not be configured to the reference's convention.
Only then does it time the engines, interleaved (``A B C A B C ...``, so that the machine's
swings reach every engine alike), and check that every timed call gave the first call's
outcome again. It reports the minimum, median and maximum wall time per engine, the median
CPU time of the process, and calls a run **noisy** when an engine's slowest call took more
than :data:`NOISY_SPREAD` times its fastest, or when the 1-minute load average, read before
and after, exceeded the number of cores.

:func:`agree` is the comparison alone (the sweep benchmark applies it row by row).
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bench.engines import Outcome

RTOL = 1e-9
NOISY_SPREAD = 1.5


class Disagreement(Exception):
    """Two engines did not compute the same result: no timing may be shown."""


def agree(reference: Outcome, other: Outcome, rtol: float = RTOL) -> str | None:
    """Why ``other`` differs from ``reference``, or ``None`` when they agree.

    They agree when the closed trade counts are equal, the final equities are within ``rtol``
    of each other relative to the reference's (``|a - b| <= rtol * |a|``; both non-finite or
    different signs never agree), and ``other`` had no unmatched bars.
    """
    reasons = []
    if other.trades != reference.trades:
        reasons.append(f"closed trades {other.trades} vs {reference.trades}")
    a, b = reference.final_equity, other.final_equity
    if not (math.isfinite(a) and math.isfinite(b) and abs(a - b) <= rtol * abs(a)):
        relative = abs(a - b) / abs(a) if a else math.inf
        reasons.append(f"final equity {b!r} vs {a!r} (relative difference {relative:.3g})")
    if other.unmatched:
        reasons.append(f"{other.unmatched} bars where the convention could not be matched")
    return "; ".join(reasons) or None


@dataclass(frozen=True)
class Timing:
    """One engine's timed calls.

    Attributes
    ----------
    first : float
        Wall seconds of the first call (compilation or cache load; not in the others).
    wall : tuple of float
        Wall seconds of every timed call, in order.
    cpu : tuple of float
        CPU seconds of this process during each timed call.
    outcome : Outcome
        What every call returned.
    """

    first: float
    wall: tuple[float, ...]
    cpu: tuple[float, ...]
    outcome: Outcome

    @property
    def min(self) -> float:
        return min(self.wall)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def max(self) -> float:
        return max(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    @property
    def spread(self) -> float:
        """Slowest over fastest timed call."""
        return self.max / self.min if self.min > 0 else math.inf


@dataclass(frozen=True)
class Measurement:
    """The result of :func:`measure`: the timings by engine (the reference first) and the
    load averages read before and after."""

    timings: dict[str, Timing]
    load_before: float
    load_after: float
    cores: int

    def noise(self) -> list[str]:
        """Why this run is noisy (empty when it is not)."""
        reasons = [
            f"{name}: slowest call {timing.spread:.2f}x the fastest (> {NOISY_SPREAD})"
            for name, timing in self.timings.items()
            if timing.spread > NOISY_SPREAD
        ]
        load = max(self.load_before, self.load_after)
        if load > self.cores:
            reasons.append(f"load average {load:.2f} > {self.cores} cores")
        return reasons


def _call(run: Callable[[], Outcome]) -> tuple[float, float, Outcome]:
    wall, cpu = time.perf_counter(), time.process_time()
    outcome = run()
    return time.perf_counter() - wall, time.process_time() - cpu, outcome


def check(outcomes: Mapping[str, Outcome], rtol: float = RTOL) -> None:
    """Raise :class:`Disagreement` naming every engine whose outcome differs from the first
    engine's (see :func:`agree`)."""
    names = list(outcomes)
    reference = outcomes[names[0]]
    problems = [
        f"{name} disagrees with {names[0]}: {why}"
        for name in names[1:]
        if (why := agree(reference, outcomes[name], rtol)) is not None
    ]
    if problems:
        raise Disagreement("\n".join(problems))


def measure(
    runs: Mapping[str, Callable[[], Outcome]], repeats: int, rtol: float = RTOL
) -> Measurement:
    """Gate, then time, the engines of ``runs`` (name -> prepared run; the first is the
    reference).

    Parameters
    ----------
    runs : mapping of str to callable
        Each engine's run of the same workload on the same bars (see
        :func:`bench.engines.prepare`), the reference first.
    repeats : int
        Timed calls per engine, interleaved across engines.
    rtol : float
        Relative tolerance on the final equity.

    Raises
    ------
    Disagreement
        When an engine's first call differs from the reference's (nothing has been timed
        then), or a timed call returned another outcome than its engine's first call.
    ValueError
        For fewer than two engines or ``repeats < 1``.
    """
    if len(runs) < 2 or repeats < 1:
        raise ValueError("measure needs at least two engines and one repeat")
    load_before = os.getloadavg()[0]
    first, outcomes = {}, {}
    for name, run in runs.items():
        first[name], _cpu, outcomes[name] = _call(run)
    check(outcomes, rtol)
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            seconds, cpu_seconds, outcome = _call(run)
            if outcome != outcomes[name]:
                raise Disagreement(
                    f"{name} returned {outcome} on a timed call, {outcomes[name]} on the first"
                )
            wall[name].append(seconds)
            cpu[name].append(cpu_seconds)
    timings = {
        name: Timing(first[name], tuple(wall[name]), tuple(cpu[name]), outcomes[name])
        for name in runs
    }
    return Measurement(timings, load_before, os.getloadavg()[0], os.cpu_count() or 1)


def report(measurement: Measurement, repeats: int) -> str:
    """The measurement as text: per engine its outcome, first call and min/median/max wall
    time, median CPU time; the ratios of each peer to the reference (median over median,
    and the range min/max to max/min); the noise verdict."""
    names = list(measurement.timings)
    reference = measurement.timings[names[0]]
    lines = [
        f"agreement: every engine {reference.outcome.trades} closed trades, final equity "
        f"{reference.outcome.final_equity:.10g} (within {RTOL:g} relative)",
        f"{'engine':<10} {'first call':>11} {'min':>10} {'median':>10} {'max':>10} "
        f"{'cpu median':>11}   ({repeats} interleaved calls each)",
    ]
    for name, timing in measurement.timings.items():
        lines.append(
            f"{name:<10} {timing.first:10.3f}s {timing.min * 1e3:8.1f}ms "
            f"{timing.median * 1e3:8.1f}ms {timing.max * 1e3:8.1f}ms {timing.cpu_median * 1e3:9.1f}ms"
        )
    for name in names[1:]:
        other = measurement.timings[name]
        lines.append(
            f"{name} / {names[0]}: median {other.median / reference.median:.2f}x "
            f"(range {other.min / reference.max:.2f}x to {other.max / reference.min:.2f}x; "
            f"> 1 means {names[0]} is faster)"
        )
    lines.append(
        f"load average {measurement.load_before:.2f} before, {measurement.load_after:.2f} "
        f"after, {measurement.cores} cores"
    )
    noise = measurement.noise()
    lines.append("NOISY RUN: " + "; ".join(noise) if noise else "not noisy")
    return "\n".join(lines)


def refuse(disagreement: str) -> None:
    """Print ``disagreement`` to standard error as the reason no timing is shown, and exit
    with status 1."""
    print(f"error: engines disagree, no timing shown:\n{disagreement}", file=sys.stderr)
    raise SystemExit(1)


def gated_report(runs: Mapping[str, Callable[[], Outcome]], repeats: int) -> Measurement:
    """:func:`measure`, then print :func:`report`; on a :class:`Disagreement` print it to
    standard error, print no timing and exit with status 1."""
    try:
        measurement = measure(runs, repeats)
    except Disagreement as error:
        refuse(str(error))
    print(report(measurement, repeats))
    return measurement
