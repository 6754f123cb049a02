"""The backtest kernel: the execution function looped over history.

:func:`simulate_span_nb` runs :func:`~research.kernels.execution.advance_nb` (what the
paper-trading runner's :func:`~research.kernels.execution.step_nb` runs on one bar) over the
bars. Two entry points share it through :func:`simulate` (plain Python: it allocates the arrays
and grows the fill table between calls of the compiled loop):

* :func:`run_backtest` records cash, position and equity per bar (the reference for tests
  and for stepping comparisons);
* :func:`run_equity` records only the equity, into a buffer the caller owns: all that
  :func:`research.backtest` and a sweep row need (the statistics are read from it by
  :func:`research.kernels.stats.equity_stats_nb`; cash and position per bar follow from the
  fills, see :func:`account_from_fills_nb`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from research.kernels.execution import (
    F_CASH_AFTER,
    F_POSITION_AFTER,
    MAX_FILLS_PER_BAR,
    N_FILL,
    S_CASH,
    S_EQUITY,
    S_POSITION,
    STATUS_OK,
    advance_nb,
    config_tuple_nb,
    feature_switches,
    state_tuple_nb,
    store_state_nb,
)

FILL_BAR = N_FILL  # extra column in the backtest's fill table: index of the bar of the fill
N_FILL_ROW = N_FILL + 1


# ---- progress vector of :func:`simulate_span_nb` (int64)
P_NEXT_BAR = 0  # index of the next bar to process
P_FILLS = 1  # fill rows written
P_EXPOSED = 2  # processed bars that ended with a non-zero position
P_STATUS = 3  # STATUS_OK, or the rejected bar's negative status
N_PROGRESS = 4


@njit(cache=True, _nrt=False, error_model="numpy")
def simulate_span_nb(state, config, stops_on, limits_on, ts, open_, high, low, close, target,
                     equity, cash, position, fills, progress):
    """Loop the execution function over the bars from ``progress[P_NEXT_BAR]`` on, in place.

    Stops at the end of the bars, at a rejected bar (its status in ``progress[P_STATUS]``, the
    bar itself unprocessed), or when ``fills`` has fewer than ``MAX_FILLS_PER_BAR`` free rows
    (the caller grows it and calls again). It allocates nothing, so it is compiled without
    reference counting, and :func:`~research.kernels.execution.advance_nb` is inlined into it:
    the whole loop is one function, with the account state held as values, in registers, from
    the first bar to the last, and written back to ``state`` at the end. It writes nothing per
    bar but what the caller asks for.

    Parameters
    ----------
    state, config
        As for :func:`run_backtest`.
    stops_on, limits_on : True or None
        The switches of :func:`~research.kernels.execution.advance_nb`, from
        :func:`~research.kernels.execution.feature_switches` (Numba compiles one loop per
        combination).
    ts, open_, high, low, close, target
        As for :func:`run_backtest`.
    equity : ndarray, shape (n_bars,) or longer
        Output: equity marked at each processed bar's close.
    cash, position : ndarray, shape (n_bars,) or (0,)
        Output like ``equity``; empty arrays skip recording them.
    fills : ndarray, shape (capacity, N_FILL + 1)
        Output: fill records from row ``progress[P_FILLS]`` on (``F_*`` fields, then the bar
        index in column ``FILL_BAR``).
    progress : ndarray of int64, shape (N_PROGRESS,)
        ``P_*`` counters, read and advanced.
    """
    n = len(ts)
    record = len(cash) > 0
    capacity = len(fills)
    i = progress[P_NEXT_BAR]
    n_fills = progress[P_FILLS]
    exposed = progress[P_EXPOSED]
    st = state_tuple_nb(state)
    cfg = config_tuple_nb(config)
    while i < n and n_fills + MAX_FILLS_PER_BAR <= capacity:
        u = np.uint64(i)  # an unsigned index: no negative-index wraparound code per read
        k, st = advance_nb(st, cfg, stops_on, limits_on, ts[u], open_[u], high[u], low[u],
                           close[u], target[u], fills, n_fills)
        if k < 0:
            progress[P_STATUS] = k
            break
        for j in range(n_fills, k):
            fills[j, FILL_BAR] = i
        n_fills = k
        units = st[S_POSITION]
        value = st[S_EQUITY]
        equity[u] = value
        if units != 0.0:
            exposed += 1
        if record:
            cash[u] = st[S_CASH]
            position[u] = units
        i += 1
    store_state_nb(state, st)
    progress[P_NEXT_BAR] = i
    progress[P_FILLS] = n_fills
    progress[P_EXPOSED] = exposed


INITIAL_FILL_ROWS = 4096


def simulate(state, config, ts, open_, high, low, close, target, equity, cash, position,
             fills=None):
    """Run :func:`simulate_span_nb` over all the bars, growing the fill table as needed; the
    one loop behind both entry points.

    Every bars-long or growing array is allocated here, by numpy, which asks the kernel for
    transparent huge pages on large arrays: one allocated inside Numba would pay a page fault
    per 4 KiB on first touch, which on a virtual machine costs as much as the loop itself.

    Parameters
    ----------
    state, config, ts, open_, high, low, close, target, equity, cash, position
        As for :func:`simulate_span_nb`.
    fills : ndarray, shape (capacity, N_FILL + 1), optional
        Fill table to write into (a sweep reuses one); a bigger one replaces it when it fills
        up. By default one of ``INITIAL_FILL_ROWS`` rows is allocated.

    Returns
    -------
    fills : ndarray, shape (n_fills, N_FILL + 1)
        Fill records (``F_*`` fields) with the bar index in the last column: a view of the
        fill table.
    processed : int
        Bars processed (all of them unless a bar was rejected).
    exposed : int
        Processed bars that ended with a non-zero position.
    status : int
        ``STATUS_OK``, or the first negative status (its bar and all later ones unprocessed).
    """
    if fills is None or len(fills) < MAX_FILLS_PER_BAR:
        fills = np.empty((INITIAL_FILL_ROWS, N_FILL_ROW))
    progress = np.zeros(N_PROGRESS, dtype=np.int64)
    progress[P_STATUS] = STATUS_OK
    stops_on, limits_on = feature_switches(config)
    while True:
        simulate_span_nb(state, config, stops_on, limits_on, ts, open_, high, low, close,
                         target, equity, cash, position, fills, progress)
        if progress[P_NEXT_BAR] >= len(ts) or progress[P_STATUS] < 0:
            break
        grown = np.empty((2 * len(fills), N_FILL_ROW))
        grown[:progress[P_FILLS]] = fills[:progress[P_FILLS]]
        fills = grown
    return (fills[:progress[P_FILLS]], int(progress[P_NEXT_BAR]), int(progress[P_EXPOSED]),
            int(progress[P_STATUS]))


def run_backtest(state, config, ts, open_, high, low, close, target):
    """Run the execution function over every bar; return the fills and per-bar account series.

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
    fills, processed, _, status = simulate(state, config, ts, open_, high, low, close, target,
                                           equity, cash, position)
    cash[processed:] = position[processed:] = equity[processed:] = np.nan
    return fills, cash, position, equity, status


def run_equity(state, config, ts, open_, high, low, close, target, equity, fills=None):
    """:func:`run_backtest` recording only the equity, into ``equity[:n_bars]``.

    Parameters
    ----------
    state, config, ts, open_, high, low, close, target
        As for :func:`run_backtest`.
    equity : ndarray, at least n_bars long
        Output; the caller's buffer (a sweep reuses one).
    fills : ndarray, optional
        Fill table to reuse (see :func:`simulate`).

    Returns
    -------
    fills : ndarray, shape (n_fills, N_FILL + 1)
        A view of the fill table.
    processed : int
        Bars processed; ``equity[:processed]`` holds their equity (the rest is untouched).
    exposed : int
        Processed bars that ended with a non-zero position.
    status : int
    """
    return simulate(state, config, ts, open_, high, low, close, target, equity, _NONE, _NONE,
                    fills)


_NONE = np.empty(0)  # "do not record" (read-only use: never written)


@njit(cache=True)
def account_from_fills_nb(fills, n_bars, processed, initial_cash):
    """Cash and position after each bar's close, from the fill records alone.

    Between fills the account does not change, so bar ``i`` holds the ``cash_after`` and
    ``position_after`` of the last fill at or before it (the initial cash and no position
    before the first): exactly the values the kernel had after that bar. Bars from
    ``processed`` on are ``nan`` (as in :func:`run_backtest`).
    """
    cash = np.empty(n_bars)
    position = np.empty(n_bars)
    current_cash = initial_cash
    current_position = 0.0
    j = 0
    for i in range(processed):
        while j < len(fills) and fills[j, FILL_BAR] <= i:
            current_cash = fills[j, F_CASH_AFTER]
            current_position = fills[j, F_POSITION_AFTER]
            j += 1
        cash[i] = current_cash
        position[i] = current_position
    for i in range(processed, n_bars):
        cash[i] = position[i] = np.nan
    return cash, position
