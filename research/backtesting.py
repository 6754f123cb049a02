"""``research.backtest``: run one strategy over bars and return a :class:`Result`.

The strategy's target is computed once, vectorized, over all bars (from ``start`` on, with the
strategy's history window before it as history only); the execution kernel
(:func:`~research.kernels.backtest.run_equity`: in a loop, the execution function the runner
calls for each bar) turns it into fills: decided at bar ``t``'s close, filled at bar ``t+1``'s
open, with fees, slippage, stops and risk limits exactly as documented in
:mod:`research.kernels.execution`. The :class:`~research.result.Result` it returns is defined
in :mod:`research.result`.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

import numpy as np
import pandas as pd

from research.kernels.backtest import run_equity
from research.kernels.records import Config, make_config, new_state
from research.kernels.trades import closed_trade_arrays_nb
from research.metrics import BarsContext, bars_context, gaps_held_by_fills, stats_of_run
from research.result import Result
from research.strategy_model import StrategySpec
from research.types import Bars, Costs, RiskLimits, Stops


def backtest(
    spec: StrategySpec,
    bars: Bars,
    params: Any = None,
    costs: Costs = Costs(),
    *,
    stops: Stops | None = None,
    risk: RiskLimits = RiskLimits(),
    initial_cash: float = 10_000.0,
    start: Any = None,
    **book: Any,
) -> Result:
    """Backtest ``spec`` on ``bars``.

    A portfolio strategy (:class:`~research.portfolio_model.PortfolioSpec`) on a universe's
    :class:`~research.panel.Panel` is a portfolio backtest:
    :func:`research.portfolio.backtest.backtest_portfolio` with the same ``params``, ``costs``,
    ``initial_cash`` and ``start``, ``stops`` (per position) and its own keywords ``limits``
    (:class:`~research.kernels.portfolio_records.BookLimits`) and ``rebalance``; it returns a
    :class:`~research.portfolio.result.PortfolioResult`.

    Parameters
    ----------
    spec : StrategySpec
        A strategy (``@strategy``; see :mod:`research.strategy_model`).
    bars : Bars
        At least ``spec.lookback(params) + 1`` bars. Read-only or strided arrays are copied
        first (:meth:`~research.types.Bars.for_kernels`), so that the cached kernels serve them.
    params : NamedTuple, mapping or None
        Parameter values; missing ones take their defaults (see ``StrategySpec.make_params``).
    costs : Costs
    stops : Stops, optional
        Protective exits; ``None`` uses the strategy's own ``spec.stops``.
    risk : RiskLimits
    initial_cash : float
        Quote-currency cash at the start.
    start : str, datetime, Timestamp, numpy.datetime64 or int, optional
        Trade from the first bar whose close time is at or after ``start`` (an ISO date or
        time, tz-naive meaning UTC; an int is a bar **index**). The bars before it are history
        only: the strategy is evaluated on the last ``spec.history_window(params)`` bars before
        it (clamped at the first bar) and the bars from it on, so its decisions are exactly
        those the runner makes for a bot that starts there; the account starts there, flat,
        and the result (fills, equity, stats) covers the bars from ``start`` on. ``None``:
        from the first bar.

    Returns
    -------
    Result

    Raises
    ------
    TypeError, ValueError
        For a wrong argument type, an unknown or invalid parameter, too few bars, a ``start``
        after the last bar, a cost, stop or limit out of range, or a strategy whose target is
        not one number per bar.
    """
    if _is_portfolio(spec):
        if risk != RiskLimits():
            raise TypeError(
                "a portfolio takes limits=BookLimits(...) (weights, gross "
                "exposure, daily loss, drawdown), not risk="
            )
        from research.portfolio.backtest import backtest_portfolio  # loaded for portfolios only

        return backtest_portfolio(
            spec,
            bars,
            params,
            costs,
            stops=stops or Stops(),
            initial_cash=initial_cash,
            start=start,
            **book,
        )
    if book:
        raise TypeError(
            f"unexpected keyword {sorted(book)[0]!r}: limits= and rebalance= are "
            "for portfolio strategies"
        )
    if not isinstance(spec, StrategySpec):
        raise TypeError(
            f"spec must be a strategy made with @strategy (e.g. "
            f"strategies.registry.get_strategy('sma_cross')), got "
            f"{type(spec).__name__}"
        )
    if not isinstance(bars, Bars):
        raise TypeError(
            f"bars must be research.types.Bars (see research.load_bars), got {type(bars).__name__}"
        )
    bars = bars.for_kernels()  # a read-only or strided array would compile the kernels again
    params = spec.make_params(params)
    first = start_index(bars, start)
    offset = max(0, first - spec.history_window(params) + 1) if first else 0
    evaluated = bars[offset:] if offset else bars
    spec.check_enough_bars(len(evaluated), params)
    costs = _as(costs, Costs, "costs")
    stops = spec.stops if stops is None else _as(stops, Stops, "stops")
    risk = _as(risk, RiskLimits, "risk")
    initial_cash = float(initial_cash)
    if not (math.isfinite(initial_cash) and initial_cash > 0):
        raise ValueError(f"initial_cash must be a positive number, got {initial_cash}")
    config = make_config(costs, stops, risk)
    timeframe_ms = infer_timeframe_ms(bars)
    evaluation = spec.evaluate(evaluated, params)
    skip = first - offset  # history-only bars at the front of the evaluation
    bars = bars[first:] if first else bars
    target = np.ascontiguousarray(evaluation.target[skip:])
    indicators = {name: values[skip:] for name, values in evaluation.indicators.items()}

    equity = np.empty(len(bars))
    fills, processed, status, values = run_target(
        bars, target, config, initial_cash, timeframe_ms, equity
    )
    equity[processed:] = np.nan
    stats = pd.Series(values, dtype=np.float64, name=spec.name)
    return Result(
        spec_name=spec.name,
        params=params,
        costs=costs,
        stops=stops,
        risk=risk,
        initial_cash=initial_cash,
        bars=bars,
        target=target,
        indicators=indicators,
        ts=bars.ts,
        fill_rows=fills,
        equity_values=equity,
        stats=stats,
        status=int(status),
        timeframe_ms=timeframe_ms,
        panes=evaluation.panes,
    )


def _is_portfolio(spec: Any) -> bool:
    from research.portfolio_model import PortfolioSpec  # core; light

    return isinstance(spec, PortfolioSpec)


def start_index(bars: Bars, start: Any) -> int:
    """Index of the first bar to trade: ``0`` for ``None``; ``start`` itself for an int (a bar
    index, ``0 <= start < len(bars)``); else the first bar whose close time is at or after
    ``start`` (an ISO string, datetime, Timestamp or numpy datetime64; tz-naive means UTC).

    Raises
    ------
    TypeError, ValueError
        For another type, an index out of range, or a time after the last bar.
    """
    if start is None:
        return 0
    if isinstance(start, (int, np.integer)) and not isinstance(start, (bool, np.bool_)):
        if not 0 <= start < len(bars):
            raise ValueError(
                f"start bar index {start} is outside the {len(bars)} bars: give "
                f"0 .. {len(bars) - 1}, or a date such as '2018-05-20'"
            )
        return int(start)
    if not isinstance(start, (str, _dt.date, np.datetime64, pd.Timestamp)):
        raise TypeError(
            f"start must be a date or time (e.g. '2018-05-20') or a bar index, got "
            f"{type(start).__name__}"
        )
    try:
        stamp = pd.Timestamp(start)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"cannot read start {start!r} ({exc}): use e.g. '2018-05-20' or '2018-05-20T08:00Z'"
        ) from None
    if stamp is pd.NaT:
        raise ValueError(f"start {start!r} is not a time: use e.g. '2018-05-20'")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    first = int(np.searchsorted(bars.ts, stamp.value // 1_000_000, side="left"))
    if first == len(bars):
        last = pd.Timestamp(int(bars.ts[-1]), unit="ms", tz="UTC") if len(bars) else None
        raise ValueError(
            f"start {stamp} is after the last bar (closing {last}): pick an "
            "earlier start or load more bars"
        )
    return first


def run_target(
    bars: Bars,
    target: np.ndarray,
    config: Config,
    initial_cash: float,
    timeframe_ms: int,
    equity: np.ndarray,
    fills: np.ndarray | None = None,
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
        new_state(initial_cash),
        config,
        bars.ts,
        bars.open,
        bars.high,
        bars.low,
        bars.close,
        target,
        equity,
        fills,
    )
    stats = run_stats_values(
        equity[:processed], exposed, bars, timeframe_ms, fills, initial_cash, context
    )
    return fills, processed, status, stats


def run_stats_values(
    equity: np.ndarray,
    exposed: int,
    bars: Bars,
    timeframe_ms: int,
    fills: np.ndarray,
    initial_cash: float,
    context: BarsContext | None = None,
) -> dict[str, float]:
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


def infer_timeframe_ms(bars: Bars) -> int:
    """``bars.timeframe_ms``, or the smallest gap between bar times when it is 0."""
    if bars.timeframe_ms > 0:
        return int(bars.timeframe_ms)
    if len(bars) < 2:
        raise ValueError(
            "cannot infer the bar interval from fewer than 2 bars: set Bars.timeframe_ms"
        )
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
