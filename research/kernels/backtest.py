"""The backtest kernel: :func:`~research.kernels.execution.step_nb` looped over history."""

from __future__ import annotations

import numpy as np
from numba import njit

from research.kernels.execution import MAX_FILLS_PER_BAR, N_FILL, STATUS_OK, S_CASH, S_POSITION, step_nb

FILL_BAR = N_FILL  # extra column in the backtest's fill table: index of the bar of the fill
N_FILL_ROW = N_FILL + 1


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
    capacity = 64
    fills = np.empty((capacity, N_FILL_ROW))
    n_fills = 0
    bar_fills = np.empty((MAX_FILLS_PER_BAR, N_FILL))
    cash = np.full(n, np.nan)
    position = np.full(n, np.nan)
    equity = np.full(n, np.nan)
    status = STATUS_OK
    for i in range(n):
        k = step_nb(state, config, ts[i], open_[i], high[i], low[i], close[i], target[i], bar_fills)
        if k < 0:
            status = k
            break
        if n_fills + k > capacity:
            capacity *= 2
            grown = np.empty((capacity, N_FILL_ROW))
            grown[:n_fills] = fills[:n_fills]
            fills = grown
        for j in range(k):
            fills[n_fills, :N_FILL] = bar_fills[j]
            fills[n_fills, FILL_BAR] = i
            n_fills += 1
        cash[i] = state[S_CASH]
        position[i] = state[S_POSITION]
        equity[i] = state[S_CASH] + state[S_POSITION] * close[i]
    return fills[:n_fills].copy(), cash, position, equity, status
