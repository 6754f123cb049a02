"""The backtest kernel: the execution function looped over history.

:func:`simulate_span_nb` runs :func:`~research.kernels.execution.advance_nb` (what the
paper-trading runner's :func:`~research.kernels.execution.step` runs on one bar) over the
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

from typing import NamedTuple

import numpy as np
from numba import njit

from research.kernels.execution import advance_nb
from research.kernels.records import (
    FILL_DTYPE,
    MAX_FILLS_PER_BAR,
    STATUS_OK,
    Config,
    State,
    feature_switches,
    new_fills,
)


@njit(cache=True, _nrt=False, error_model="numpy")
def simulate_span_nb(
    state,
    config,
    stops_on,
    limits_on,
    ts,
    open_,
    high,
    low,
    close,
    target,
    equity,
    cash,
    position,
    fills,
    start,
    n_fills,
    exposed,
):
    """Loop the execution function over the bars from ``start`` on.

    Stops at the end of the bars, at a rejected bar (the bar itself unprocessed), or when
    ``fills`` has fewer than ``MAX_FILLS_PER_BAR`` free records (the caller grows it and calls
    again). It allocates nothing, so it is compiled without reference counting, and
    :func:`~research.kernels.execution.advance_nb` is inlined into it: the whole loop is one
    function, with the account held as values, in registers, from the first bar to the last.
    It writes nothing per bar but what the caller asks for.

    Parameters
    ----------
    state, config : State, Config or plain tuples of their values
        The account before bar ``start``, and its configuration (plain tuples are faster to
        pass, see :func:`~research.kernels.execution.step_nb`).
    stops_on, limits_on : True or None
        The switches of :func:`~research.kernels.execution.advance_nb`, from
        :func:`~research.kernels.records.feature_switches` (Numba compiles one loop per
        combination).
    ts, open_, high, low, close, target
        As for :func:`run_backtest`.
    equity : ndarray, shape (n_bars,) or longer
        Output: equity marked at each processed bar's close.
    cash, position : ndarray, shape (n_bars,) or (0,)
        Output like ``equity``; empty arrays skip recording them.
    fills : ndarray of FILL_DTYPE
        Output: fill records from record ``n_fills`` on.
    start, n_fills, exposed : int
        The first bar to process, the fill records already written and the processed bars
        that ended with a non-zero position so far.

    Returns
    -------
    state : State
        The account after the last processed bar.
    next_bar, n_fills, exposed : int
        ``start``, ``n_fills`` and ``exposed`` advanced past the processed bars.
    status : int
        ``STATUS_OK``, or the rejected bar's negative status.
    """
    n = len(ts)
    record = len(cash) > 0
    capacity = len(fills)
    st = State(*state)
    cfg = Config(*config)
    i = start
    status = STATUS_OK
    while i < n and n_fills + MAX_FILLS_PER_BAR <= capacity:
        u = np.uint64(i)  # an unsigned index: no negative-index wraparound code per read
        k, st = advance_nb(
            st,
            cfg,
            stops_on,
            limits_on,
            ts[u],
            open_[u],
            high[u],
            low[u],
            close[u],
            target[u],
            fills,
            n_fills,
        )
        if k < 0:
            status = k
            break
        n_fills = k
        equity[u] = st.equity
        if st.position != 0.0:
            exposed += 1
        if record:
            cash[u] = st.cash
            position[u] = st.position
        i += 1
    return st, i, n_fills, exposed, status


INITIAL_FILL_ROWS = 4096
_RAW_FILL = np.dtype((np.void, FILL_DTYPE.itemsize))


class Simulation(NamedTuple):
    """What :func:`simulate` returns."""

    fills: np.ndarray  #: the fill records (a view of the fill table)
    processed: int  #: bars processed (all of them unless a bar was rejected)
    exposed: int  #: processed bars that ended with a non-zero position
    status: int  #: ``STATUS_OK``, or the first negative status (its bar and later unprocessed)
    state: State  #: the account after the last processed bar


def simulate(
    state, config, ts, open_, high, low, close, target, equity, cash, position, fills=None
) -> Simulation:
    """Run :func:`simulate_span_nb` over all the bars, growing the fill table as needed; the
    one loop behind both entry points.

    Every bars-long or growing array is allocated here, by numpy, which asks the kernel for
    transparent huge pages on large arrays: one allocated inside Numba would pay a page fault
    per 4 KiB on first touch, which on a virtual machine costs as much as the loop itself.

    Parameters
    ----------
    state, config, ts, open_, high, low, close, target, equity, cash, position
        As for :func:`simulate_span_nb`.
    fills : ndarray of FILL_DTYPE, optional
        Fill table to write into (a sweep reuses one); a bigger one replaces it when it fills
        up. By default one of ``INITIAL_FILL_ROWS`` records is allocated.
    """
    if fills is None or len(fills) < MAX_FILLS_PER_BAR:
        fills = new_fills(INITIAL_FILL_ROWS)
    stops_on, limits_on = feature_switches(config)
    state, config = tuple(state), tuple(config)  # plain tuples: typed in C by the dispatcher
    i = n_fills = exposed = 0
    while True:
        state, i, n_fills, exposed, status = simulate_span_nb(
            state,
            config,
            stops_on,
            limits_on,
            ts,
            open_,
            high,
            low,
            close,
            target,
            equity,
            cash,
            position,
            fills,
            i,
            n_fills,
            exposed,
        )
        state = tuple(state)
        if i >= len(ts) or status < 0:
            break
        grown = new_fills(2 * len(fills))
        # copied as raw records: numpy copies a structured array field by field, 20x slower
        grown[:n_fills].view(_RAW_FILL)[...] = fills[:n_fills].view(_RAW_FILL)
        fills = grown
    return Simulation(fills[:n_fills], i, exposed, status, State._make(state))


def run_backtest(state, config, ts, open_, high, low, close, target):
    """Run the execution function over every bar; return the fills and per-bar account series.

    Parameters
    ----------
    state : State
        Initial account.
    config : Config
        Costs, stops and risk limits.
    ts, open_, high, low, close : ndarray
        The bars (``ts`` int64 close times).
    target : ndarray of float64
        The strategy's target level per bar (decided at that bar's close).

    Returns
    -------
    fills : ndarray of FILL_DTYPE
        The fill records.
    cash, position, equity : ndarray, shape (n_bars,)
        Account after each bar's close (equity marked at the close).
    status : int
        ``STATUS_OK``, or the first negative status; the bars from there on are not processed
        and their series are ``nan``.
    state : State
        The account after the last processed bar.
    """
    n = len(ts)
    cash = np.empty(n)
    position = np.empty(n)
    equity = np.empty(n)
    run = simulate(state, config, ts, open_, high, low, close, target, equity, cash, position)
    cash[run.processed :] = position[run.processed :] = equity[run.processed :] = np.nan
    return run.fills, cash, position, equity, run.status, run.state


def run_equity(
    state, config, ts, open_, high, low, close, target, equity, fills=None
) -> Simulation:
    """:func:`run_backtest` recording only the equity, into ``equity[:n_bars]`` (the rest is
    untouched).

    Parameters
    ----------
    state, config, ts, open_, high, low, close, target
        As for :func:`run_backtest`.
    equity : ndarray, at least n_bars long
        Output; the caller's buffer (a sweep reuses one).
    fills : ndarray of FILL_DTYPE, optional
        Fill table to reuse (see :func:`simulate`).
    """
    return simulate(state, config, ts, open_, high, low, close, target, equity, _NONE, _NONE, fills)


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
        while j < len(fills) and fills[j].bar <= i:
            current_cash = fills[j].cash_after
            current_position = fills[j].position_after
            j += 1
        cash[i] = current_cash
        position[i] = current_position
    for i in range(processed, n_bars):
        cash[i] = position[i] = np.nan
    return cash, position
