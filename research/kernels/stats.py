"""The per-bar part of :func:`research.metrics.compute_stats`, compiled.

The statistics of an equity curve take two passes. The first (mean return, downside deviation,
maximum drawdown and its duration) is an accumulator advanced bar by bar
(:func:`stats_start_nb`, :func:`stats_add_nb`), so the backtest loop runs it on each bar's
equity while that is still in a register, and :func:`equity_stats_nb` runs the very same steps
over a stored equity array. The second pass (:func:`stats_finish_nb`) needs the mean, so it
reads the equity array once more. Either way the numbers are the same, bit for bit.

Kept apart from :mod:`research.metrics` (which adds the trade statistics and the annualisation)
so that the pure core stays numpy + numba only.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# ---- slots of the first-pass accumulator (a tuple of floats; an array between calls)
A_TOTAL = 0  # compensated sum of returns: total + compensation
A_TOTAL_COMPENSATION = 1
A_DOWNSIDE = 2  # compensated sum of squared losing returns
A_DOWNSIDE_COMPENSATION = 3
A_PREVIOUS = 4  # equity of the previous bar (the initial cash before the first)
A_PEAK = 5  # running maximum of the initial cash and the equity
A_PEAK_TS = 6  # close time of that peak (ms, exact as a float below 2**53)
A_MAX_DRAWDOWN = 7
A_MAX_UNDERWATER = 8  # longest time under water so far, ms
A_BARS = 9
N_ACCUMULATOR = 10

_INLINED = {"cache": True, "inline": "always", "error_model": "numpy"}


@njit(**_INLINED)
def _add_nb(total, compensation, x):
    """Neumaier's compensated ``total + x``: returns the new ``(total, compensation)``; the sum
    is ``total + compensation``. A non-finite total has nothing left to compensate."""
    t = total + x
    if not math.isfinite(t):
        return t, 0.0
    if abs(total) >= abs(x):
        return t, compensation + ((total - t) + x)
    return t, compensation + ((x - t) + total)


@njit(**_INLINED)
def stats_start_nb(initial_cash, first_ts, timeframe_ms):
    """The accumulator before the first bar (``A_*`` slots): the initial cash is the first
    peak, at ``first_ts - timeframe_ms`` (the open of the first bar)."""
    return (0.0, 0.0, 0.0, 0.0, initial_cash, initial_cash, float(first_ts - timeframe_ms),
            -math.inf, 0.0, 0.0)


@njit(**_INLINED)
def stats_add_nb(acc, value, ts):
    """The accumulator after one more bar with equity ``value`` closing at ``ts``."""
    total, compensation, downside, downside_compensation, previous, peak, peak_ts, \
        max_drawdown, max_underwater, bars = acc
    r = value / previous - 1.0
    total, compensation = _add_nb(total, compensation, r)
    loss = r if not r >= 0.0 else 0.0  # nan stays nan, as np.minimum(r, 0)
    downside, downside_compensation = _add_nb(downside, downside_compensation, loss * loss)
    if value >= peak:
        peak = value
        peak_ts = float(ts)
    elif ts - peak_ts > max_underwater:
        max_underwater = ts - peak_ts
    drawdown = 1.0 - value / peak
    if drawdown > max_drawdown or drawdown != drawdown:
        max_drawdown = drawdown
    return (total, compensation, downside, downside_compensation, value, peak, peak_ts,
            max_drawdown, max_underwater, bars + 1.0)


@njit(cache=True, error_model="numpy")
def stats_finish_nb(acc, equity, initial_cash):
    """Second pass: the statistics of the ``n = acc[A_BARS]`` bars of ``equity`` accumulated
    in ``acc`` (a tuple or array in ``A_*`` order).

    Returns
    -------
    mean, std, downside, max_drawdown : float
    max_underwater_ms : int
        As documented in :func:`equity_stats_nb`.
    """
    n = int(acc[A_BARS])
    mean = (acc[A_TOTAL] + acc[A_TOTAL_COMPENSATION]) / n
    std = math.nan
    if n > 1:
        squares = 0.0
        compensation = 0.0
        previous = initial_cash
        for i in range(n):
            d = (equity[i] / previous - 1.0) - mean
            previous = equity[i]
            squares, compensation = _add_nb(squares, compensation, d * d)
        std = math.sqrt((squares + compensation) / (n - 1))
    downside = math.sqrt((acc[A_DOWNSIDE] + acc[A_DOWNSIDE_COMPENSATION]) / n)
    return mean, std, downside, acc[A_MAX_DRAWDOWN], int(acc[A_MAX_UNDERWATER])


@njit(cache=True, error_model="numpy")
def equity_stats_nb(equity, ts, timeframe_ms, initial_cash):
    """Return-series and drawdown statistics of one equity curve.

    With ``r[i] = equity[i] / equity[i-1] - 1`` (``equity[-1] = initial_cash``):

    Returns
    -------
    mean : float
        ``mean(r)``. Every sum here is compensated (Neumaier), so it is at least as accurate
        as numpy's pairwise sums.
    std : float
        ``std(r, ddof=1)``, two-pass around ``mean`` (compensated sum); ``nan`` for a single
        bar.
    downside : float
        ``sqrt(mean(min(r, 0) ** 2))``.
    max_drawdown : float
        ``max(1 - equity / running_max(initial_cash, equity))``.
    max_underwater_ms : int
        Longest time under water: from the close of the latest peak (``ts[0] - timeframe_ms``
        for the initial cash) to the close of a bar below it.

    A ``nan`` return (``0 / 0``) propagates to ``mean``, ``std`` and ``downside`` as in numpy.
    """
    acc = stats_start_nb(initial_cash, ts[0], timeframe_ms)
    for i in range(len(equity)):
        acc = stats_add_nb(acc, equity[i], ts[i])
    return stats_finish_nb(acc, equity, initial_cash)


@njit(**_INLINED)
def accumulator_tuple_nb(acc):
    """The accumulator array (``A_*`` slots) as a tuple."""
    return (acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7], acc[8], acc[9])


@njit(**_INLINED)
def store_accumulator_nb(out, acc):
    """Write the accumulator tuple ``acc`` into the array ``out``."""
    for slot in range(N_ACCUMULATOR):
        out[slot] = acc[slot]


def new_accumulator(initial_cash: float, first_ts: int, timeframe_ms: int) -> np.ndarray:
    """The accumulator before the first bar, as an array (see :func:`stats_start_nb`)."""
    return np.array(stats_start_nb(float(initial_cash), int(first_ts), int(timeframe_ms)))
