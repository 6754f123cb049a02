"""``research.backtest``: run one strategy over bars and return a :class:`Result`.

The strategy's target is computed once, vectorized, over all bars; the execution kernel
(:func:`~research.kernels.backtest.run_equity`: in a loop, the execution function the runner
calls for each bar) turns it into fills: decided at bar ``t``'s close, filled at bar ``t+1``'s
open, with fees, slippage, stops and risk limits exactly as documented in
:mod:`research.kernels.execution`. The :class:`~research.result.Result` it returns is defined
in :mod:`research.result`.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any

import numpy as np
import pandas as pd

from research.indicators import indicator_cache
from research.kernels.backtest import run_equity
from research.kernels.records import Config, make_config, new_state
from research.kernels.trades import closed_trade_arrays_nb
from research.metrics import BarsContext, bars_context, gaps_held_by_fills, stats_of_run
from research.result import Result
from research.types import Bars, Costs, RiskLimits, Stops, StrategySpec


def backtest(
    spec: StrategySpec,
    bars: Bars,
    params: Any = None,
    costs: Costs = Costs(),
    *,
    stops: Stops | None = None,
    risk: RiskLimits = RiskLimits(),
    initial_cash: float = 10_000.0,
) -> Result:
    """Backtest ``spec`` on ``bars``.

    Parameters
    ----------
    spec : StrategySpec
    bars : Bars
        At least ``spec.required_bars(params)`` bars.
    params : NamedTuple, mapping or None
        Parameter values; missing ones take their defaults (see ``StrategySpec.make_params``).
    costs : Costs
    stops : Stops, optional
        Protective exits; ``None`` uses the strategy's own ``spec.stops``.
    risk : RiskLimits
    initial_cash : float
        Quote-currency cash at the start.

    Returns
    -------
    Result

    Raises
    ------
    TypeError, ValueError
        For a wrong argument type, an unknown or invalid parameter, too few bars, a cost, stop
        or limit out of range, or a strategy whose target is not one float per bar.
    """
    if not isinstance(spec, StrategySpec):
        raise TypeError(f"spec must be a StrategySpec (e.g. strategies.registry.get_strategy("
                        f"'sma_cross')), got {type(spec).__name__}")
    if not isinstance(bars, Bars):
        raise TypeError(f"bars must be research.types.Bars (see research.load_bars), got "
                        f"{type(bars).__name__}")
    params = spec.make_params(params)
    spec.check_enough_bars(len(bars), params)
    costs = _as(costs, Costs, "costs")
    stops = spec.stops if stops is None else _as(stops, Stops, "stops")
    risk = _as(risk, RiskLimits, "risk")
    initial_cash = float(initial_cash)
    if not (math.isfinite(initial_cash) and initial_cash > 0):
        raise ValueError(f"initial_cash must be a positive number, got {initial_cash}")
    config = make_config(costs, stops, risk)
    timeframe_ms = infer_timeframe_ms(bars)
    # the indicators to plot are those the target computed: in one pass when the strategy has
    # ``evaluate``, else the second call finds them in the scoped indicator memo
    with indicator_cache() if spec.evaluate is None else nullcontext():
        raw_target, raw_indicators = spec.target_and_indicators(bars, params)
    target = checked_target(spec, raw_target, len(bars))
    indicators = {name: np.asarray(values) for name, values in raw_indicators.items()}

    equity = np.empty(len(bars))
    fills, processed, status, values = run_target(bars, target, config, initial_cash,
                                                  timeframe_ms, equity)
    equity[processed:] = np.nan
    stats = pd.Series(values, dtype=np.float64, name=spec.name)
    return Result(
        spec_name=spec.name, params=params, costs=costs, stops=stops, risk=risk,
        initial_cash=initial_cash, bars=bars, target=target, indicators=indicators, ts=bars.ts,
        fill_rows=fills, equity_values=equity, stats=stats, status=int(status),
        timeframe_ms=timeframe_ms)


def run_target(bars: Bars, target: np.ndarray, config: Config, initial_cash: float,
               timeframe_ms: int, equity: np.ndarray, fills: np.ndarray | None = None,
               context: BarsContext | None = None,
               ) -> tuple[np.ndarray, int, int, dict[str, float]]:
    """The execution loop over ``target`` from a fresh account, then the run's stats: what
    :func:`backtest` and a sweep row (:func:`research.sweeps.run_stats`) share.

    ``equity`` (at least as long as ``bars``) receives the equity of the processed bars;
    ``fills`` is a fill table to reuse (see :func:`research.kernels.backtest.simulate`);
    ``context`` is :func:`research.metrics.bars_context` of ``bars`` if already known (a sweep
    computes it once). Returns ``(fill rows, bars processed, status, stats dict)``; the stats
    are ``{}`` when the first bar was rejected.
    """
    fills, processed, exposed, status, _ = run_equity(
        new_state(initial_cash), config, bars.ts, bars.open, bars.high, bars.low, bars.close,
        target, equity, fills)
    stats = run_stats_values(equity[:processed], exposed, bars, timeframe_ms, fills,
                             initial_cash, context)
    return fills, processed, status, stats


def run_stats_values(equity: np.ndarray, exposed: int, bars: Bars, timeframe_ms: int,
                     fills: np.ndarray, initial_cash: float,
                     context: BarsContext | None = None) -> dict[str, float]:
    """The stats of a run: :func:`research.metrics.stats_of_run` over the processed bars (the
    first ``len(equity)`` of ``bars``) and the closed round trips of ``fills``; ``{}`` without
    a bar. ``context`` is reused when it describes exactly the processed bars."""
    n = len(equity)
    if n == 0:
        return {}
    if context is None or context.n_bars != n:
        context = bars_context(bars.ts[:n], timeframe_ms, bars.open[:n], bars.close[:n])
    if len(fills):
        pnls, durations = closed_trade_arrays_nb(fills, timeframe_ms)
        fees = float(fills["fee"].sum())
        gaps_held = gaps_held_by_fills(context, fills["bar"], fills["position_after"])
    else:
        pnls, durations, fees, gaps_held = np.empty(0), np.empty(0), 0.0, 0
    return stats_of_run(equity, exposed, gaps_held, context, pnls, durations, initial_cash, fees)


def strategy_target(spec: StrategySpec, bars: Bars, params: Any) -> np.ndarray:
    """Call ``spec.target`` and check it returned one float per bar."""
    return checked_target(spec, spec.target(bars, params), len(bars))


def checked_target(spec: StrategySpec, target: Any, n_bars: int) -> np.ndarray:
    """``target`` as contiguous float64 after checking it is one number per bar."""
    if not isinstance(target, np.ndarray):
        raise TypeError(f"strategy {spec.name!r} must return a numpy array from target(), got "
                        f"{type(target).__name__}")
    if target.shape != (n_bars,):
        raise ValueError(f"strategy {spec.name!r} returned a target of shape {target.shape}; "
                         f"expected ({n_bars},), one level per bar")
    if not (np.issubdtype(target.dtype, np.floating) or np.issubdtype(target.dtype, np.integer)
            or target.dtype == np.bool_):
        raise TypeError(f"strategy {spec.name!r} returned a target of dtype {target.dtype}; "
                        "return float64 levels (nan = flat)")
    return np.ascontiguousarray(target, dtype=np.float64)


def infer_timeframe_ms(bars: Bars) -> int:
    """``bars.timeframe_ms``, or the smallest gap between bar times when it is 0."""
    if bars.timeframe_ms > 0:
        return int(bars.timeframe_ms)
    if len(bars) < 2:
        raise ValueError("cannot infer the bar interval from fewer than 2 bars: set "
                         "Bars.timeframe_ms")
    return int(np.diff(bars.ts).min())


def _as(value: Any, kind: type, name: str):
    if isinstance(value, kind):
        return value
    if isinstance(value, dict):
        try:
            return kind(**value)
        except TypeError as exc:
            raise ValueError(f"{name}: {exc}; fields are {', '.join(kind._fields)}") from None
    raise TypeError(f"{name} must be research.types.{kind.__name__}, got {type(value).__name__}")
