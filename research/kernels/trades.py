"""Round trips from the fill table of :func:`~research.kernels.backtest.run_backtest`."""

from __future__ import annotations

import numpy as np
from numba import njit

from research.kernels.backtest import FILL_BAR
from research.kernels.execution import (
    F_AT_OPEN,
    F_FEE,
    F_POSITION_AFTER,
    F_PRICE,
    F_REALIZED_PNL,
    F_SIDE,
    F_SIZE,
)

# ---- round-trip record fields
T_ENTRY_FILL = 0  # index of the opening fill
T_EXIT_FILL = 1  # index of the closing fill (-1 while open)
T_ENTRY_TS = 2  # ms UTC of the opening fill (bar open time for at-open fills)
T_EXIT_TS = 3  # ms UTC of the closing fill (-1 while open)
T_SIDE = 4  # +1 long, -1 short
T_SIZE = 5  # units entered (sum of the fills that grew the position)
T_ENTRY_PRICE = 6  # size-weighted average price of the fills that grew the position
T_EXIT_PRICE = 7  # size-weighted average price of the fills that shrank it (nan if none)
T_FEES = 8  # fees of all fills of the trade
T_PNL = 9  # net P&L: sum of the fills' realized P&L (price P&L minus every fee)
N_TRADE = 10


@njit(cache=True)
def fill_times_nb(fills, ts, timeframe_ms):
    """Time of each fill: the bar's open time (``ts - timeframe_ms``) if filled at the open,
    else the bar's close time ``ts``."""
    out = np.empty(len(fills), dtype=np.int64)
    for j in range(len(fills)):
        bar = int(fills[j, FILL_BAR])
        out[j] = ts[bar] - timeframe_ms if fills[j, F_AT_OPEN] == 1.0 else ts[bar]
    return out


@njit(cache=True)
def round_trips_nb(fills, ts, timeframe_ms):
    """Group fills into round trips, flat -> flat (a flip is two fills, so two trades).

    Returns
    -------
    trades : ndarray, shape (n_trades, N_TRADE)
        ``T_*`` fields; the last row is the open trade if the run ends in a position
        (``T_EXIT_FILL == -1``; its P&L holds only the fills so far).
    """
    times = fill_times_nb(fills, ts, timeframe_ms)
    out = np.empty((len(fills), N_TRADE))
    n = 0
    position = 0.0
    entry_value = 0.0
    exit_size = 0.0
    exit_value = 0.0
    for j in range(len(fills)):
        size = fills[j, F_SIZE]
        price = fills[j, F_PRICE]
        if position == 0.0:
            out[n, T_ENTRY_FILL] = j
            out[n, T_EXIT_FILL] = -1.0
            out[n, T_ENTRY_TS] = times[j]
            out[n, T_EXIT_TS] = -1.0
            out[n, T_SIDE] = fills[j, F_SIDE]
            out[n, T_SIZE] = 0.0
            out[n, T_FEES] = 0.0
            out[n, T_PNL] = 0.0
            entry_value = 0.0
            exit_size = 0.0
            exit_value = 0.0
            n += 1
        t = n - 1
        out[t, T_FEES] += fills[j, F_FEE]
        out[t, T_PNL] += fills[j, F_REALIZED_PNL]
        if fills[j, F_SIDE] == out[t, T_SIDE]:
            out[t, T_SIZE] += size
            entry_value += size * price
        else:
            exit_size += size
            exit_value += size * price
        out[t, T_ENTRY_PRICE] = entry_value / out[t, T_SIZE]
        out[t, T_EXIT_PRICE] = exit_value / exit_size if exit_size > 0.0 else np.nan
        position = fills[j, F_POSITION_AFTER]
        if position == 0.0:
            out[t, T_EXIT_FILL] = j
            out[t, T_EXIT_TS] = times[j]
    return out[:n].copy()


@njit(cache=True)
def closed_trade_arrays_nb(fills, ts, timeframe_ms):
    """Net P&L and holding time (ms) of the closed round trips, for :func:`compute_stats`."""
    trades = round_trips_nb(fills, ts, timeframe_ms)
    count = 0
    for i in range(len(trades)):
        if trades[i, T_EXIT_FILL] >= 0:
            count += 1
    pnls = np.empty(count)
    durations = np.empty(count)
    k = 0
    for i in range(len(trades)):
        if trades[i, T_EXIT_FILL] >= 0:
            pnls[k] = trades[i, T_PNL]
            durations[k] = trades[i, T_EXIT_TS] - trades[i, T_ENTRY_TS]
            k += 1
    return pnls, durations
