"""The per-bar part of :func:`research.metrics.compute_stats`, compiled: two passes over equity.

Kept apart from :mod:`research.metrics` (which adds the trade statistics and the annualisation)
so that the pure core stays numpy + numba only.
"""

from __future__ import annotations

import math

from numba import njit


@njit(cache=True, inline="always")
def _add_nb(total, compensation, x):
    """Neumaier's compensated ``total + x``: returns the new ``(total, compensation)``; the sum
    is ``total + compensation``. A non-finite total has nothing left to compensate."""
    t = total + x
    if not math.isfinite(t):
        return t, 0.0
    if abs(total) >= abs(x):
        return t, compensation + ((total - t) + x)
    return t, compensation + ((x - t) + total)


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
    n = len(equity)
    # pass 1: sums of returns and of squared losses, drawdown and its duration
    total = 0.0
    compensation = 0.0
    downside = 0.0
    downside_compensation = 0.0
    previous = initial_cash
    peak = initial_cash
    peak_ts = ts[0] - timeframe_ms
    max_drawdown = -math.inf
    max_underwater = 0
    for i in range(n):
        value = equity[i]
        r = value / previous - 1.0
        previous = value
        total, compensation = _add_nb(total, compensation, r)
        loss = r if not r >= 0.0 else 0.0  # nan stays nan, as np.minimum(r, 0)
        downside, downside_compensation = _add_nb(downside, downside_compensation, loss * loss)
        if value >= peak:
            peak = value
            peak_ts = ts[i]
        elif ts[i] - peak_ts > max_underwater:
            max_underwater = ts[i] - peak_ts
        drawdown = 1.0 - value / peak
        if drawdown > max_drawdown or drawdown != drawdown:
            max_drawdown = drawdown
    mean = (total + compensation) / n
    # pass 2: squared deviations from the mean
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
    downside = math.sqrt((downside + downside_compensation) / n)
    return mean, std, downside, max_drawdown, max_underwater
