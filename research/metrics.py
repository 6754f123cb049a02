"""Performance statistics of one backtest, from plain arrays (a compiled pass over the equity).

Conventions
-----------
* **Units.** Every number is a fraction, never a percentage: ``0.12`` means 12 %. Durations and
  times are milliseconds (times: UTC close times). :mod:`research.formatting` turns them into
  percentages, durations and dates for display.
* **Bar returns** ``r[i] = equity[i] / equity[i-1] - 1`` with ``equity[-1] = initial_cash``: the
  first bar's return is measured from the initial cash.
* **Calendar time.** The run covers ``elapsed_ms = ts[-1] - ts[0] + timeframe_ms``, from the
  open of its first bar to the close of its last, gaps included; ``years = elapsed_ms /
  (365 * 86_400_000)`` (a 24/7, 365-day calendar). CAGR compounds over these years.
* **Annualising returns' moments.** Volatility, Sharpe and Sortino scale per-bar figures by
  ``bars_per_year = n_bars / years``, the bars the data *actually* holds per calendar year.
  On complete data this is the nominal ``365 * 86_400_000 / timeframe_ms``; on gappy data
  (e.g. Bittrex, which leaves out intervals without trades) it is smaller, and it is the one
  that makes ``std(r) ** 2 * bars_per_year`` the variance per year (the sum of squared
  returns over a year), where the nominal count would overstate it.
* The risk-free rate is zero.
* **Buy and hold** is the benchmark on the same bars: the whole initial cash buys at the first
  bar's open, with no fees or slippage, and holds to the last close:
  ``B[i] = initial_cash * close[i] / open[0]``. Its return, Sharpe and maximum drawdown use the
  strategy's definitions (same bars, same ``bars_per_year``).
* **Gaps.** Consecutive bars more than ``timeframe_ms`` apart leave a gap; the bars missing in
  it are ``(ts[i] - ts[i-1]) // timeframe_ms - 1``. A position held across a gap is exposed to
  a move nobody could trade on: the next fill happens at the first open after the gap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from research.kernels.stats import equity_stats_nb, gaps_nb

YEAR_MS = 365 * 86_400_000
#: Closed trades below which trade statistics (win rate, profit factor, expectancy) say
#: little: a sweep does not rank such rows (``research.sweeps``), reports warn about them.
#: With one winning trade the profit factor is ``inf``.
DEFAULT_MIN_TRADES = 10
#: Stats where a smaller value is better (rankings and heatmaps turn around for them).
LOWER_IS_BETTER = frozenset(
    {
        "max_drawdown",
        "max_drawdown_duration_ms",
        "annual_volatility",
        "total_fees",
        "buy_hold_max_drawdown",
        "missing_bars",
        "longest_gap_ms",
        "gaps_held",
    }
)

STAT_NAMES = (
    "start_ts",
    "end_ts",
    "n_bars",
    "elapsed_ms",
    "bars_per_year",
    "missing_bars",
    "coverage",
    "gaps",
    "longest_gap_ms",
    "gaps_held",
    "initial_cash",
    "final_equity",
    "total_return",
    "cagr",
    "annual_volatility",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown",
    "max_drawdown_duration_ms",
    "buy_hold_return",
    "buy_hold_sharpe",
    "buy_hold_max_drawdown",
    "excess_return",
    "trade_count",
    "win_rate",
    "profit_factor",
    "expectancy",
    "average_holding_ms",
    "exposure",
    "total_fees",
)


def periods_per_year(timeframe_ms: int) -> float:
    """Nominal bars per year of a timeframe on a 24/7, 365-day calendar."""
    if timeframe_ms <= 0:
        raise ValueError(f"timeframe_ms must be positive to annualise, got {timeframe_ms}")
    return YEAR_MS / timeframe_ms


@dataclass(frozen=True)
class BarsContext:
    """What every run over the same bars shares: calendar time, gaps and the buy-and-hold
    benchmark (a sweep computes it once, not once per parameter set).

    Attributes
    ----------
    n_bars : int
    timeframe_ms : int
    coverage : dict
        ``start_ts``, ``end_ts``, ``n_bars``, ``elapsed_ms``, ``bars_per_year``,
        ``missing_bars``, ``coverage`` (``n_bars / (n_bars + missing_bars)``), ``gaps`` (how
        many), ``longest_gap_ms`` (the longest span without a bar: missing bars times
        ``timeframe_ms``; 0 without a gap).
    benchmark : dict
        ``buy_hold_return``, ``buy_hold_sharpe``, ``buy_hold_max_drawdown`` (``nan`` without
        prices).
    gap_after : ndarray of int64
        Index of the last bar before each gap.
    ts : ndarray of int64
        The bars' close times (the array given, not a copy).
    """

    n_bars: int
    timeframe_ms: int
    ts: np.ndarray
    coverage: dict
    benchmark: dict
    gap_after: np.ndarray

    @property
    def bars_per_year(self) -> float:
        return self.coverage["bars_per_year"]


def bars_context(
    ts: np.ndarray,
    timeframe_ms: int,
    open_: np.ndarray | None = None,
    close: np.ndarray | None = None,
) -> BarsContext:
    """Calendar time, gaps and buy-and-hold statistics of bars (module docstring).

    Parameters
    ----------
    ts : ndarray of int64
        Bar close times, ms UTC, increasing; at least one.
    timeframe_ms : int
        Bar length in ms.
    open_, close : ndarray of float64, optional
        The bars' opens and closes, for the buy-and-hold benchmark (``nan`` without them).
    """
    ts = np.ascontiguousarray(ts, dtype=np.int64)
    n = len(ts)
    if n == 0:
        raise ValueError("compute_stats needs at least one bar of equity")
    timeframe_ms = int(timeframe_ms)
    periods_per_year(timeframe_ms)  # validates the timeframe
    elapsed = int(ts[-1] - ts[0]) + timeframe_ms
    per_year = n * YEAR_MS / elapsed
    gap_after, missing_bars, longest = gaps_nb(ts, timeframe_ms)
    coverage = {
        "start_ts": int(ts[0]),
        "end_ts": int(ts[-1]),
        "n_bars": n,
        "elapsed_ms": elapsed,
        "bars_per_year": per_year,
        "missing_bars": int(missing_bars),
        "coverage": n / (n + int(missing_bars)),
        "gaps": len(gap_after),
        "longest_gap_ms": int(longest),
    }
    if open_ is None or close is None:
        benchmark = dict.fromkeys(
            ("buy_hold_return", "buy_hold_sharpe", "buy_hold_max_drawdown"), math.nan
        )
    else:
        benchmark = buy_hold_stats(open_, close, ts, timeframe_ms, per_year)
    return BarsContext(
        n_bars=n,
        timeframe_ms=timeframe_ms,
        ts=ts,
        coverage=coverage,
        benchmark=benchmark,
        gap_after=gap_after,
    )


def buy_and_hold(open_: np.ndarray, close: np.ndarray, initial_cash: float) -> np.ndarray:
    """Buy-and-hold equity: ``initial_cash * close / open_[0]`` (bought at the first open, no
    costs)."""
    close = np.asarray(close, dtype=np.float64)
    if len(close) == 0:
        return close.copy()
    return float(initial_cash) * (close / float(open_[0]))


def buy_hold_stats(
    open_: np.ndarray, close: np.ndarray, ts: np.ndarray, timeframe_ms: int, bars_per_year: float
) -> dict[str, float]:
    """``buy_hold_return``, ``buy_hold_sharpe`` and ``buy_hold_max_drawdown`` of
    :func:`buy_and_hold`.

    Scale-free, so computed on the closes themselves with the first open as the "initial
    cash": the returns ``close[i] / close[i-1] - 1`` (``close[0] / open[0] - 1`` first) and the
    drawdowns are those of ``initial_cash * close / open[0]``, without building that array.
    """
    close = np.ascontiguousarray(close, dtype=np.float64)
    first_open = float(open_[0])
    mean, std, _, max_drawdown, _ = equity_stats_nb(
        close, np.ascontiguousarray(ts), int(timeframe_ms), first_open
    )
    return {
        "buy_hold_return": float(close[-1]) / first_open - 1.0,
        "buy_hold_sharpe": mean / std * math.sqrt(bars_per_year) if std > 0 else math.nan,
        "buy_hold_max_drawdown": float(max_drawdown),
    }


def gaps_held_by_position(context: BarsContext, position: np.ndarray) -> int:
    """How many gaps the account crossed holding a position (``position`` after each close)."""
    return int(np.count_nonzero(np.asarray(position)[context.gap_after]))


def gaps_held_by_fills(
    context: BarsContext, fill_bars: np.ndarray, positions_after: np.ndarray
) -> int:
    """:func:`gaps_held_by_position` from the fills alone: the position during the gap after
    bar ``i`` is the one after the last fill of a bar ``<= i`` (fills in bar order)."""
    if len(fill_bars) == 0 or len(context.gap_after) == 0:
        return 0
    last = np.searchsorted(fill_bars, context.gap_after, side="right") - 1
    held = np.where(last >= 0, np.asarray(positions_after)[np.maximum(last, 0)], 0.0)
    return int(np.count_nonzero(held))


def compute_stats(
    equity: np.ndarray,
    position: np.ndarray,
    ts: np.ndarray,
    timeframe_ms: int,
    trade_pnls: np.ndarray,
    trade_durations_ms: np.ndarray,
    initial_cash: float,
    total_fees: float = math.nan,
    *,
    open_: np.ndarray | None = None,
    close: np.ndarray | None = None,
) -> dict[str, float]:
    """Return the statistics of one equity curve and its closed trades.

    Parameters
    ----------
    equity, position : ndarray of float64, shape (n,)
        Equity marked at each bar's close and the position (units) held after it. All finite.
    ts : ndarray of int64, shape (n,)
        Bar close times, ms UTC.
    timeframe_ms : int
        Bar length in ms (calendar time and gaps are measured with it).
    trade_pnls : ndarray of float64
        Net P&L (after all fees) of each **closed** round trip.
    trade_durations_ms : ndarray
        Holding time of each closed round trip in ms (exit time minus entry time).
    initial_cash : float
        Equity before the first bar.
    total_fees : float, optional
        Fees paid over the run (reported as is).
    open_, close : ndarray of float64, optional
        The bars' opens and closes, for the buy-and-hold benchmark (``nan`` without them).

    Returns
    -------
    dict
        Keyed by :data:`STAT_NAMES`. With ``E0 = initial_cash``, ``E = equity``, ``r`` the bar
        returns, ``Y = years`` and ``P = bars_per_year`` (module docstring):

        - ``start_ts``, ``end_ts``, ``n_bars``, ``elapsed_ms``, ``bars_per_year = n / Y``,
          ``missing_bars``, ``coverage``, ``gaps``, ``longest_gap_ms``
          (:func:`bars_context`); ``gaps_held``: gaps crossed with a non-zero position
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
        - ``buy_hold_return``, ``buy_hold_sharpe``, ``buy_hold_max_drawdown`` (module
          docstring); ``excess_return = total_return - buy_hold_return``
        - ``trade_count``; ``win_rate`` = share of trades with ``pnl > 0``;
          ``profit_factor = sum(winning pnl) / -sum(losing pnl)`` (``inf`` with no loss);
          ``expectancy = mean(pnl)``; ``average_holding_ms = mean(duration)``
          (``nan`` without trades)
        - ``exposure`` = share of bars ending with a non-zero position
        - ``initial_cash``, ``final_equity``, ``total_fees``.

        Ratios with a zero denominator are ``nan`` (``inf`` where stated).
    """
    equity = np.asarray(equity, dtype=np.float64)
    position = np.asarray(position, dtype=np.float64)
    if len(equity) == 0:
        raise ValueError("compute_stats needs at least one bar of equity")
    if len(position) != len(equity) or len(ts) != len(equity):
        raise ValueError("equity, position and ts must have the same length")
    context = bars_context(ts, timeframe_ms, open_, close)
    return stats_of_run(
        equity,
        int(np.count_nonzero(position)),
        gaps_held_by_position(context, position),
        context,
        trade_pnls,
        trade_durations_ms,
        initial_cash,
        total_fees,
    )


def stats_of_run(
    equity: np.ndarray,
    exposed_bars: int,
    gaps_held: int,
    context: BarsContext,
    trade_pnls: np.ndarray,
    trade_durations_ms: np.ndarray,
    initial_cash: float,
    total_fees: float = math.nan,
) -> dict[str, float]:
    """:func:`compute_stats` given the number of bars that ended in a position, the number of
    gaps crossed in one, and the bars' :func:`bars_context` (what the equity-only kernel and a
    sweep have); same results."""
    equity = np.ascontiguousarray(equity, dtype=np.float64)
    n = len(equity)
    if n == 0:
        raise ValueError("compute_stats needs at least one bar of equity")
    if context.n_bars != n:
        raise ValueError("equity, position and ts must have the same length")
    initial_cash = float(initial_cash)
    curve = equity_stats_nb(equity, context.ts, context.timeframe_ms, initial_cash)
    return stats_of_curve(
        float(equity[-1]),
        curve,
        exposed_bars,
        gaps_held,
        context,
        trade_pnls,
        trade_durations_ms,
        initial_cash,
        total_fees,
    )


def stats_of_curve(
    final: float,
    curve: tuple,
    exposed_bars: int,
    gaps_held: int,
    context: BarsContext,
    trade_pnls: np.ndarray,
    trade_durations_ms: np.ndarray,
    initial_cash: float,
    total_fees: float = math.nan,
) -> dict[str, float]:
    """:func:`stats_of_run` given the final equity and ``curve``, what
    :func:`research.kernels.stats.equity_stats_nb` returns for the equity (a sweep row's fused
    kernel computes it without keeping the equity); same results."""
    pnls = np.asarray(trade_pnls, dtype=np.float64)
    durations = np.asarray(trade_durations_ms, dtype=np.float64)
    n = context.n_bars
    initial_cash = float(initial_cash)
    per_year = context.bars_per_year
    years = context.coverage["elapsed_ms"] / YEAR_MS

    total_return = final / initial_cash - 1.0
    cagr = (final / initial_cash) ** (1.0 / years) - 1.0 if final > 0 else -1.0
    mean, std, downside, max_drawdown, underwater = curve
    volatility = std * math.sqrt(per_year)
    sharpe = mean / std * math.sqrt(per_year) if std > 0 else math.nan
    if downside > 0:
        sortino = mean / downside * math.sqrt(per_year)
    else:
        sortino = math.inf if mean > 0 else math.nan
    max_drawdown = float(max_drawdown)
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

    stats = dict(context.coverage)
    stats.update(
        {
            "gaps_held": int(gaps_held),
            "initial_cash": initial_cash,
            "final_equity": final,
            "total_return": total_return,
            "cagr": cagr,
            "annual_volatility": volatility,
            "sharpe": sharpe,
            "sortino": sortino,
            "calmar": calmar,
            "max_drawdown": max_drawdown,
            "max_drawdown_duration_ms": float(underwater),
        }
    )
    stats.update(context.benchmark)
    stats.update(
        {
            "excess_return": total_return - context.benchmark["buy_hold_return"],
            "trade_count": trade_count,
            "win_rate": win_rate,
            "profit_factor": float(profit_factor),
            "expectancy": expectancy,
            "average_holding_ms": average_holding,
            "exposure": float(exposed_bars) / n,
            "total_fees": float(total_fees),
        }
    )
    return {name: stats[name] for name in STAT_NAMES}
