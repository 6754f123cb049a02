"""Round trips from the fill records of the backtest kernel."""

from __future__ import annotations

import numpy as np
from numba import njit

from research.kernels.records import fill_times_nb

#: One round trip, flat to flat.
TRADE_DTYPE = np.dtype(
    [
        ("entry_fill", np.int64),  # index of the opening fill
        ("exit_fill", np.int64),  # index of the closing fill (-1 while open)
        ("entry_ts", np.int64),  # time of the opening fill, ms UTC (see fill_times_nb)
        ("exit_ts", np.int64),  # time of the closing fill (-1 while open)
        ("side", np.int8),  # +1 long, -1 short
        ("size", np.float64),  # units entered (sum of the fills that grew the position)
        ("entry_price", np.float64),  # size-weighted average price of the fills that grew it
        ("exit_price", np.float64),  # ... of the fills that shrank it (nan if none)
        ("fees", np.float64),  # fees of all fills of the trade
        ("pnl", np.float64),  # net P&L: sum of the fills' realized P&L (price P&L minus every fee)
    ],
    align=True,
)


@njit(cache=True)
def round_trips_nb(fills, timeframe_ms):
    """Group fills into round trips, flat -> flat (a flip is two fills, so two trades).

    Returns
    -------
    trades : ndarray of TRADE_DTYPE
        The last record is the open trade if the run ends in a position (``exit_fill == -1``;
        its P&L holds only the fills so far).
    """
    times = fill_times_nb(fills, timeframe_ms)
    out = np.empty(len(fills), dtype=TRADE_DTYPE)
    n = 0
    position = 0.0
    entry_value = 0.0
    exit_size = 0.0
    exit_value = 0.0
    for j in range(len(fills)):
        fill = fills[j]
        if position == 0.0:
            trade = out[n]
            trade.entry_fill = j
            trade.exit_fill = -1
            trade.entry_ts = times[j]
            trade.exit_ts = -1
            trade.side = fill.side
            trade.size = 0.0
            trade.fees = 0.0
            trade.pnl = 0.0
            entry_value = 0.0
            exit_size = 0.0
            exit_value = 0.0
            n += 1
        trade = out[n - 1]
        trade.fees += fill.fee
        trade.pnl += fill.realized_pnl
        if fill.side == trade.side:
            trade.size += fill.size
            entry_value += fill.size * fill.price
        else:
            exit_size += fill.size
            exit_value += fill.size * fill.price
        trade.entry_price = entry_value / trade.size
        trade.exit_price = exit_value / exit_size if exit_size > 0.0 else np.nan
        position = fill.position_after
        if position == 0.0:
            trade.exit_fill = j
            trade.exit_ts = times[j]
    return out[:n].copy()


@njit(cache=True)
def closed_trade_arrays_nb(fills, timeframe_ms):
    """Net P&L and holding time (ms) of the closed round trips, for :func:`compute_stats`."""
    trades = round_trips_nb(fills, timeframe_ms)
    count = 0
    for i in range(len(trades)):
        if trades[i].exit_fill >= 0:
            count += 1
    pnls = np.empty(count)
    durations = np.empty(count)
    k = 0
    for i in range(len(trades)):
        if trades[i].exit_fill >= 0:
            pnls[k] = trades[i].pnl
            durations[k] = trades[i].exit_ts - trades[i].entry_ts
            k += 1
    return pnls, durations


@njit(cache=True, _nrt=False, nogil=True)
def closed_trades_into_nb(fills, timeframe_ms, pnls, durations):
    """:func:`closed_trade_arrays_nb` into the caller's arrays (each at least ``len(fills)``
    long), without building the round-trip table: the same sums in the same order. Returns
    the number of closed round trips written."""
    n = 0
    position = 0.0
    pnl = 0.0
    entry_ts = np.int64(0)
    for j in range(len(fills)):
        fill = fills[j]
        ts = fill.bar_ts - timeframe_ms if fill.at_open else fill.bar_ts  # fill_times_nb
        if position == 0.0:
            entry_ts = ts
            pnl = 0.0
        pnl += fill.realized_pnl
        position = fill.position_after
        if position == 0.0:
            pnls[n] = pnl
            durations[n] = ts - entry_ts
            n += 1
    return n
