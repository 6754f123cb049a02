"""The backtest kernel: :func:`~research.kernels.execution.step_nb` looped over history.

Two entry points share one loop (:func:`simulate_span_nb`, driven by :func:`simulate_nb`):
:func:`run_backtest_nb` records cash, position and equity per bar for :func:`research.backtest`;
:func:`run_equity_nb` records only the equity, into a buffer the caller reuses, and counts the
bars held in a position: all that the stats of a sweep row need.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from research.kernels.execution import MAX_FILLS_PER_BAR, N_FILL, STATUS_OK, S_CASH, S_POSITION, step_nb

FILL_BAR = N_FILL  # extra column in the backtest's fill table: index of the bar of the fill
N_FILL_ROW = N_FILL + 1


# ---- progress vector of :func:`simulate_span_nb` (int64)
P_NEXT_BAR = 0  # index of the next bar to process
P_FILLS = 1  # fill rows written
P_EXPOSED = 2  # processed bars that ended with a non-zero position
P_STATUS = 3  # STATUS_OK, or the rejected bar's negative status
N_PROGRESS = 4


@njit(cache=True, _nrt=False, error_model="numpy")
def simulate_span_nb(state, config, ts, open_, high, low, close, target, equity, cash, position,
                     fills, progress):
    """Loop :func:`step_nb` over the bars from ``progress[P_NEXT_BAR]`` on, in place.

    Stops at the end of the bars, at a rejected bar (its status in ``progress[P_STATUS]``, the
    bar itself unprocessed), or when ``fills`` has fewer than ``MAX_FILLS_PER_BAR`` free rows
    (the caller grows it and calls again). It allocates nothing, so it is compiled without
    reference counting and :func:`step_nb` is inlined into it: the whole loop is one function.

    Parameters
    ----------
    state, config, ts, open_, high, low, close, target
        As for :func:`run_backtest_nb`.
    equity : ndarray, shape (n_bars,) or longer
        Output: equity marked at each processed bar's close.
    cash, position : ndarray, shape (n_bars,) or (0,)
        Output like ``equity``; empty arrays skip recording them.
    fills : ndarray, shape (capacity, N_FILL + 1)
        Output: fill records from row ``progress[P_FILLS]`` on (``F_*`` fields, then the bar
        index in column ``FILL_BAR``); ``step_nb`` writes each bar's fills straight into it.
    progress : ndarray of int64, shape (N_PROGRESS,)
        ``P_*`` counters, read and advanced.
    """
    n = len(ts)
    record = len(cash) > 0
    capacity = len(fills)
    i = progress[P_NEXT_BAR]
    n_fills = progress[P_FILLS]
    exposed = progress[P_EXPOSED]
    while i < n and n_fills + MAX_FILLS_PER_BAR <= capacity:
        k = step_nb(state, config, ts[i], open_[i], high[i], low[i], close[i], target[i],
                    fills[n_fills:n_fills + MAX_FILLS_PER_BAR])
        if k < 0:
            progress[P_STATUS] = k
            break
        for j in range(n_fills, n_fills + k):
            fills[j, FILL_BAR] = i
        n_fills += k
        units = state[S_POSITION]
        equity[i] = state[S_CASH] + units * close[i]
        if units != 0.0:
            exposed += 1
        if record:
            cash[i] = state[S_CASH]
            position[i] = units
        i += 1
    progress[P_NEXT_BAR] = i
    progress[P_FILLS] = n_fills
    progress[P_EXPOSED] = exposed


@njit(cache=True)
def simulate_nb(state, config, ts, open_, high, low, close, target, equity, cash, position):
    """Run :func:`simulate_span_nb` over all the bars, growing the fill table as needed; the
    one loop behind both entry points.

    Returns
    -------
    fills : ndarray, shape (n_fills, N_FILL + 1)
        Fill records (``F_*`` fields) with the bar index in the last column.
    processed : int
        Bars processed (all of them unless a bar was rejected).
    exposed : int
        Processed bars that ended with a non-zero position.
    status : int
        ``STATUS_OK``, or the first negative status (its bar and all later ones unprocessed).
    """
    fills = np.empty((64, N_FILL_ROW))
    progress = np.zeros(N_PROGRESS, dtype=np.int64)
    progress[P_STATUS] = STATUS_OK
    while True:
        simulate_span_nb(state, config, ts, open_, high, low, close, target, equity, cash,
                         position, fills, progress)
        if progress[P_NEXT_BAR] >= len(ts) or progress[P_STATUS] < 0:
            break
        grown = np.empty((2 * len(fills), N_FILL_ROW))
        grown[:progress[P_FILLS]] = fills[:progress[P_FILLS]]
        fills = grown
    return (fills[:progress[P_FILLS]].copy(), progress[P_NEXT_BAR], progress[P_EXPOSED],
            progress[P_STATUS])


@njit(cache=True)
def run_backtest_nb(state, config, ts, open_, high, low, close, target):
    """Run :func:`step_nb` over every bar; return the fills and per-bar account series.

    Parameters
    ----------
    state : ndarray, shape (N_STATE,)
        Initial account state, advanced in place to the state after the last bar.
    config : ndarray, shape (N_CONFIG,)
        Costs, stops and risk limits.
    ts, open_, high, low, close : ndarray
        The bars (``ts`` int64 close times).
    target : ndarray of float64
        The strategy's target level per bar (decided at that bar's close).

    Returns
    -------
    fills : ndarray, shape (n_fills, N_FILL + 1)
        Fill records (``F_*`` fields) with the bar index in the last column.
    cash, position, equity : ndarray, shape (n_bars,)
        Account after each bar's close (equity marked at the close).
    status : int
        ``STATUS_OK``, or the first negative status; the bars from there on are not processed
        and their series are ``nan``.
    """
    n = len(ts)
    cash = np.empty(n)
    position = np.empty(n)
    equity = np.empty(n)
    fills, processed, _, status = simulate_nb(state, config, ts, open_, high, low, close, target,
                                              equity, cash, position)
    for i in range(processed, n):
        cash[i] = position[i] = equity[i] = np.nan
    return fills, cash, position, equity, status


@njit(cache=True)
def run_equity_nb(state, config, ts, open_, high, low, close, target, equity):
    """:func:`run_backtest_nb` recording only the equity, into ``equity[:n_bars]``.

    Returns
    -------
    fills : ndarray, shape (n_fills, N_FILL + 1)
    processed : int
        Bars processed; ``equity[:processed]`` holds their equity (the rest is untouched).
    exposed : int
        Processed bars that ended with a non-zero position.
    status : int
    """
    none = np.empty(0)
    return simulate_nb(state, config, ts, open_, high, low, close, target, equity, none, none)
