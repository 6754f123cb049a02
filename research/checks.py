"""Look-ahead and history-window checks: the parity contract of docs/architecture.md §3,
offered to users (and run by ``candela bots create`` before a bot is written).

* :func:`lookahead` recomputes the target on truncated histories ``bars[:t+1]`` at sampled
  ``t`` and reports every bar ``i <= t`` (from the look-back on) whose target differs from the
  full-history target: a causal strategy never changes its past when the future is removed.
* :func:`history_check` recomputes the strategy on a window of exactly
  ``spec.history_window(params)`` bars ending at sampled ``t`` (clamped at the first bar, as the
  runner's is) and reports every ``t`` whose last target or indicator value differs from the
  full-history one: that is what the runner will compute live.

Values are compared exactly (``nan`` equals ``nan``): the runner must reproduce the backtest's
decisions bit for bit. Both take a portfolio strategy on a panel too
(:mod:`research.portfolio.checks`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from research.strategy_model import StrategySpec
from research.types import Bars

MAX_LISTED = 10


@dataclass(frozen=True)
class Mismatch:
    """One bar whose value differed: computed with history up to ``t`` vs with all bars."""

    t: int  # last bar of the truncated history / window
    index: int  # the bar whose value differed
    truncated: float
    full: float
    series: str = "target"  # "target" or the name of an indicator


class _CheckOutcome:
    """What both reports share: a check passes when nothing differed and nothing raised."""

    offending: np.ndarray
    errors: dict

    @property
    def ok(self) -> bool:
        return len(self.offending) == 0 and not self.errors

    def __bool__(self) -> bool:
        return self.ok


@dataclass
class LookaheadReport(_CheckOutcome):
    """Outcome of :func:`lookahead`.

    Attributes
    ----------
    spec_name : str
    params : NamedTuple
    sampled : ndarray of int
        The ``t`` whose truncated history ``bars[:t+1]`` was checked.
    offending : ndarray of int
        Every bar index whose target changed when the future was removed (sorted, unique).
    mismatches : list of Mismatch
        The first differences found (at most ten per sampled ``t``).
    errors : dict of int to str
        ``t`` at which the strategy raised on the truncated history, with the error.
    """

    spec_name: str
    params: Any
    sampled: np.ndarray
    offending: np.ndarray
    mismatches: list = field(default_factory=list)
    errors: dict = field(default_factory=dict)

    def __str__(self) -> str:
        head = f"look-ahead check of {self.spec_name} {self.params}: {len(self.sampled)} cut points"
        if self.ok:
            return f"{head}: OK, no past target changed when the future was removed"
        lines = [
            f"{head}: FAILED, the target of {len(self.offending)} bar(s) depends on later "
            f"bars: {_listing(self.offending)}"
        ]
        lines += [
            f"  history up to bar {m.t}: target[{m.index}] = {m.truncated!r}, with all "
            f"bars {m.full!r}"
            for m in self.mismatches[:MAX_LISTED]
        ]
        lines += [
            f"  history up to bar {t}: the strategy raised {error}"
            for t, error in list(self.errors.items())[:MAX_LISTED]
        ]
        return "\n".join(lines)


@dataclass
class HistoryReport(_CheckOutcome):
    """Outcome of :func:`history_check`.

    Attributes
    ----------
    spec_name : str
    params : NamedTuple
    window : int
        Bars in each window: ``spec.history_window(params)``.
    sampled : ndarray of int
        The ``t`` whose window ``bars[max(0, t - window + 1) : t + 1]`` was checked.
    offending : ndarray of int
        Every sampled ``t`` whose last target or indicator value differs from the full-history
        one.
    mismatches : list of Mismatch
    errors : dict of int to str
        ``t`` at which the strategy raised on the window, with the error.
    """

    spec_name: str
    params: Any
    window: int
    sampled: np.ndarray
    offending: np.ndarray
    mismatches: list = field(default_factory=list)
    errors: dict = field(default_factory=dict)

    def __str__(self) -> str:
        head = (
            f"history-window check of {self.spec_name} {self.params}: windows of "
            f"{self.window} bars at {len(self.sampled)} points"
        )
        if self.ok:
            return f"{head}: OK, the history window reproduces every sampled decision"
        lines = [
            f"{head}: FAILED at {len(self.offending) + len(self.errors)} point(s): "
            f"{_listing(np.union1d(self.offending, list(self.errors)))}; the history "
            "window is too short (a declared history= or an @indicator's history=)"
        ]
        lines += [
            f"  window ending at bar {m.t}: {m.series} = {m.truncated!r}, with all bars {m.full!r}"
            for m in self.mismatches[:MAX_LISTED]
        ]
        lines += [
            f"  window ending at bar {t}: the strategy raised {error}"
            for t, error in list(self.errors.items())[:MAX_LISTED]
        ]
        return "\n".join(lines)


def lookahead(
    spec: StrategySpec, bars: Bars, params: Any = None, samples: int = 50, seed: int = 0
) -> LookaheadReport:
    """Recompute the target on ``bars[:t+1]`` at ``samples`` random ``t`` from the look-back on.

    Parameters
    ----------
    spec : StrategySpec
    bars : Bars
        At least ``spec.lookback(params) + 2`` bars.
    params : NamedTuple, mapping or None
    samples : int
        Number of cut points ``t``, drawn without replacement from
        ``[lookback, len(bars) - 2]`` (all of them when there are fewer).
    seed : int
        Seed of the draw.

    Returns
    -------
    LookaheadReport
        ``ok`` when, at every sampled ``t``, ``target(bars[:t+1])[i] == target(bars)[i]`` for
        every ``lookback <= i <= t``.
    """
    if _is_portfolio(spec):  # a portfolio strategy on a panel
        from research.portfolio.checks import portfolio_lookahead

        return portfolio_lookahead(spec, bars, params, samples, seed)
    params, full = _prepare(spec, bars, params, extra=1)
    first = full.lookback
    sampled = _sample(first, len(bars) - 2, samples, seed)
    offending: set[int] = set()
    mismatches: list[Mismatch] = []
    errors: dict[int, str] = {}
    for t in sampled:
        try:
            truncated = spec.evaluate(bars[: t + 1], params).target
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            errors[int(t)] = f"{type(exc).__name__}: {exc}"
            continue
        differs = _differs(truncated[first:], full.target[first : t + 1])
        indices = np.flatnonzero(differs) + first
        offending.update(int(i) for i in indices)
        mismatches += [
            Mismatch(int(t), int(i), float(truncated[i]), float(full.target[i]))
            for i in indices[:MAX_LISTED]
        ]
    return LookaheadReport(
        spec.name, params, sampled, np.array(sorted(offending), dtype=np.int64), mismatches, errors
    )


def history_check(
    spec: StrategySpec, bars: Bars, params: Any = None, samples: int = 50, seed: int = 0
) -> HistoryReport:
    """Check that a window of ``spec.history_window(params)`` bars gives the full-history
    target and indicator values at its last bar, at ``samples`` random ``t``.

    The window ending at ``t`` is ``bars[max(0, t - window + 1) : t + 1]``: clamped at the
    first bar, as the runner's is early in a series, so a series shorter than the window is
    checked too.

    Parameters
    ----------
    spec : StrategySpec
    bars : Bars
        At least ``spec.lookback(params) + 1`` bars.
    params : NamedTuple, mapping or None
    samples : int
        Number of window ends ``t``, drawn without replacement from
        ``[lookback, len(bars) - 1]`` (all of them when there are fewer).
    seed : int

    Returns
    -------
    HistoryReport
        ``ok`` when at every sampled ``t`` the window's last target and the last value of each
        of its indicators equal the full-history ones, bit for bit (``nan`` equals ``nan``).
    """
    if _is_portfolio(spec):  # a portfolio strategy on a panel
        from research.portfolio.checks import portfolio_history_check

        return portfolio_history_check(spec, bars, params, samples, seed)
    params, full = _prepare(spec, bars, params)
    window = full.history_window
    sampled = _sample(full.lookback, len(bars) - 1, samples, seed)
    offending: list[int] = []
    mismatches: list[Mismatch] = []
    errors: dict[int, str] = {}
    for t in sampled:
        try:
            last = spec.evaluate(bars[max(0, t - window + 1) : t + 1], params)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            errors[int(t)] = f"{type(exc).__name__}: {exc}"
            continue
        pairs = [("target", last.target, full.target)]
        pairs += [(name, values, full.indicators[name]) for name, values in last.indicators.items()]
        found = [
            Mismatch(int(t), int(t), float(mine[-1]), float(theirs[t]), name)
            for name, mine, theirs in pairs
            if _differs(mine[-1:], theirs[t : t + 1])[0]
        ]
        if found:
            offending.append(int(t))
            mismatches += found
    return HistoryReport(
        spec.name, params, window, sampled, np.array(offending, dtype=np.int64), mismatches, errors
    )


def _is_portfolio(spec: Any) -> bool:
    from research.portfolio_model import PortfolioSpec  # core; light

    return isinstance(spec, PortfolioSpec)


def _prepare(spec: StrategySpec, bars: Bars, params: Any, extra: int = 0):
    if not isinstance(spec, StrategySpec):
        raise TypeError(f"spec must be a strategy made with @strategy, got {type(spec).__name__}")
    if not isinstance(bars, Bars):
        raise TypeError(f"bars must be research.types.Bars, got {type(bars).__name__}")
    params = spec.make_params(params)
    needed = spec.lookback(params) + 1 + extra
    if len(bars) < needed:
        raise ValueError(
            f"checking {spec.name!r} with {params} needs at least {needed} bars "
            f"(look-back + {1 + extra}), got {len(bars)}: pass a longer history"
        )
    return params, spec.evaluate(bars, params)


def _sample(low: int, high: int, samples: int, seed: int) -> np.ndarray:
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    candidates = np.arange(low, high + 1)
    if len(candidates) > samples:
        candidates = np.random.default_rng(seed).choice(candidates, samples, replace=False)
    return np.sort(candidates)


def _differs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    both_nan = np.isnan(a) & np.isnan(b)
    return ~both_nan & (a != b)


def _listing(indices) -> str:
    indices = list(indices)
    shown = ", ".join(str(i) for i in indices[:20])
    return shown + (f", ... ({len(indices)} in all)" if len(indices) > 20 else "")
