"""Performance statistics of one backtest, from plain arrays (a compiled pass over the equity).

Conventions
-----------
* Bar returns ``r[i] = equity[i] / equity[i-1] - 1`` with ``equity[-1] = initial_cash``: the first
  bar's return is measured from the initial cash.
* Annualisation uses a 24/7, 365-day calendar: ``periods_per_year = 365 * 86_400_000 /
  timeframe_ms``; the run lasts ``years = n_bars / periods_per_year``.
* Fractions, not percentages: ``0.12`` means 12 %. Durations are milliseconds.
* The risk-free rate is zero.
"""

from __future__ import annotations

import math

import numpy as np

from research.kernels.stats import equity_stats_nb

YEAR_MS = 365 * 86_400_000

STAT_NAMES = (
    "start_ts", "end_ts", "n_bars", "initial_cash", "final_equity",
    "total_return", "cagr", "annual_volatility", "sharpe", "sortino", "calmar",
    "max_drawdown", "max_drawdown_duration_ms",
    "trade_count", "win_rate", "profit_factor", "expectancy", "average_holding_ms",
    "exposure", "total_fees",
)


def periods_per_year(timeframe_ms: int) -> float:
    """Bars per year on a 24/7, 365-day calendar."""
    if timeframe_ms <= 0:
        raise ValueError(f"timeframe_ms must be positive to annualise, got {timeframe_ms}")
    return YEAR_MS / timeframe_ms


def compute_stats(
    equity: np.ndarray,
    position: np.ndarray,
    ts: np.ndarray,
    timeframe_ms: int,
    trade_pnls: np.ndarray,
    trade_durations_ms: np.ndarray,
    initial_cash: float,
    total_fees: float = math.nan,
) -> dict[str, float]:
    """Return the statistics of one equity curve and its closed trades.

    Parameters
    ----------
    equity, position : ndarray of float64, shape (n,)
        Equity marked at each bar's close and the position (units) held after it. All finite.
    ts : ndarray of int64, shape (n,)
        Bar close times, ms UTC.
    timeframe_ms : int
        Bar length in ms; sets ``periods_per_year = 365 * 86_400_000 / timeframe_ms``.
    trade_pnls : ndarray of float64
        Net P&L (after all fees) of each **closed** round trip.
    trade_durations_ms : ndarray
        Holding time of each closed round trip in ms (exit time minus entry time).
    initial_cash : float
        Equity before the first bar.
    total_fees : float, optional
        Fees paid over the run (reported as is).

    Returns
    -------
    dict
        With ``E0 = initial_cash``, ``E = equity``, ``r`` the bar returns (module docstring),
        ``P = periods_per_year`` and ``Y = n / P``:

        - ``total_return = E[-1] / E0 - 1``
        - ``cagr = (E[-1] / E0) ** (1 / Y) - 1`` (``-1`` when ``E[-1] <= 0``)
        - ``annual_volatility = std(r, ddof=1) * sqrt(P)``
        - ``sharpe = mean(r) / std(r, ddof=1) * sqrt(P)``
        - ``sortino = mean(r) / sqrt(mean(min(r, 0) ** 2)) * sqrt(P)`` (``inf`` without a
          losing bar and a positive mean)
        - ``max_drawdown = max(1 - E / running_max(E0, E))`` (positive fraction)
        - ``max_drawdown_duration_ms``: the longest time under water, from the close of a peak
          (``ts[0] - timeframe_ms`` for the initial cash) to the close of the last bar still
          below that peak
        - ``calmar = cagr / max_drawdown`` (``nan`` when there was no drawdown)
        - ``trade_count``; ``win_rate`` = share of trades with ``pnl > 0``;
          ``profit_factor = sum(winning pnl) / -sum(losing pnl)`` (``inf`` with no loss);
          ``expectancy = mean(pnl)``; ``average_holding_ms = mean(duration)``
          (``nan`` without trades)
        - ``exposure`` = share of bars ending with a non-zero position
        - ``start_ts``, ``end_ts``, ``n_bars``, ``initial_cash``, ``final_equity``,
          ``total_fees``.

        Ratios with a zero denominator are ``nan`` (``inf`` where stated).
    """
    equity = np.asarray(equity, dtype=np.float64)
    position = np.asarray(position, dtype=np.float64)
    if len(equity) == 0:
        raise ValueError("compute_stats needs at least one bar of equity")
    if len(position) != len(equity) or len(ts) != len(equity):
        raise ValueError("equity, position and ts must have the same length")
    return stats_of_run(equity, int(np.count_nonzero(position)), ts, timeframe_ms, trade_pnls,
                        trade_durations_ms, initial_cash, total_fees)


def stats_of_run(
    equity: np.ndarray,
    exposed_bars: int,
    ts: np.ndarray,
    timeframe_ms: int,
    trade_pnls: np.ndarray,
    trade_durations_ms: np.ndarray,
    initial_cash: float,
    total_fees: float = math.nan,
) -> dict[str, float]:
    """:func:`compute_stats` given the number of bars that ended in a position instead of the
    position series (what the equity-only kernel counts); same results."""
    equity = np.ascontiguousarray(equity, dtype=np.float64)
    ts = np.ascontiguousarray(ts, dtype=np.int64)
    pnls = np.asarray(trade_pnls, dtype=np.float64)
    durations = np.asarray(trade_durations_ms, dtype=np.float64)
    n = len(equity)
    if n == 0:
        raise ValueError("compute_stats needs at least one bar of equity")
    if len(ts) != n:
        raise ValueError("equity, position and ts must have the same length")
    initial_cash = float(initial_cash)
    per_year = periods_per_year(timeframe_ms)
    years = n / per_year

    final = float(equity[-1])
    total_return = final / initial_cash - 1.0
    cagr = (final / initial_cash) ** (1.0 / years) - 1.0 if final > 0 else -1.0
    mean, std, downside, max_drawdown, underwater = equity_stats_nb(
        equity, ts, int(timeframe_ms), initial_cash)
    volatility = std * math.sqrt(per_year)
    sharpe = mean / std * math.sqrt(per_year) if std > 0 else math.nan
    if downside > 0:
        sortino = mean / downside * math.sqrt(per_year)
    else:
        sortino = math.inf if mean > 0 else math.nan
    max_drawdown = float(max_drawdown)
    max_drawdown_duration = float(underwater)
    calmar = cagr / max_drawdown if max_drawdown > 0 else math.nan

    trade_count = len(pnls)
    if trade_count:
        wins = pnls[pnls > 0].sum()
        losses = -pnls[pnls < 0].sum()
        win_rate = float(np.count_nonzero(pnls > 0)) / trade_count
        profit_factor = wins / losses if losses > 0 else (math.inf if wins > 0 else math.nan)
        expectancy = float(pnls.mean())
        average_holding = float(durations.mean())
    else:
        win_rate = profit_factor = expectancy = average_holding = math.nan

    return {
        "start_ts": int(ts[0]),
        "end_ts": int(ts[-1]),
        "n_bars": n,
        "initial_cash": initial_cash,
        "final_equity": final,
        "total_return": total_return,
        "cagr": cagr,
        "annual_volatility": volatility,
        "sharpe": sharpe,
        "sortino": sortino,
        "calmar": calmar,
        "max_drawdown": max_drawdown,
        "max_drawdown_duration_ms": max_drawdown_duration,
        "trade_count": trade_count,
        "win_rate": win_rate,
        "profit_factor": float(profit_factor),
        "expectancy": expectancy,
        "average_holding_ms": average_holding,
        "exposure": float(exposed_bars) / n,
        "total_fees": float(total_fees),
    }
