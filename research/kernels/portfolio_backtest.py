"""The portfolio backtest kernel: the book's execution function looped over a panel.

:func:`simulate_book_span_nb` runs :func:`~research.kernels.portfolio.advance_book_nb` (what a
portfolio bot's :func:`~research.kernels.portfolio.step_book` runs on one bar) over the grid
rows; :func:`simulate_book` allocates the outputs and grows the fill table between calls, as
:func:`research.kernels.backtest.simulate` does for one market.

**One market.** A book of one market that has a bar at every row, rebalancing on change, with
no minimum order and weights within ``[-1, 1]`` (so that the cash check of a purchase never
binds) is the single-market execution model exactly: same fills, cash and equity, bit for bit
(``tests/research/test_portfolio_kernel.py`` checks both loops against each other). For such a
book :func:`simulate_book` runs the single-market loop (:func:`research.kernels.backtest.simulate`),
which keeps the whole account in registers, and converts its state and fills: a one-market book
costs what a single-market backtest costs. ``general=True`` forces the book loop.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from research.kernels.backtest import simulate
from research.kernels.portfolio import advance_book_nb
from research.kernels.portfolio_records import (
    BOOK_FILL_DTYPE,
    L_ENTRY,
    L_EXTREME,
    L_LAST_CLOSE,
    L_ORDERED,
    L_PENDING,
    L_PENDING_REASON,
    L_POSITION,
    L_STOPPED,
    MAX_FILLS_PER_MARKET,
    BookConfig,
    BookState,
    book_switches,
    new_book_fills,
)
from research.kernels.records import FILL_DTYPE, STATUS_OK, Config, State


@njit(cache=True, _nrt=False, error_model="numpy")
def simulate_book_span_nb(
    book,
    legs,
    config,
    stops_on,
    limits_on,
    ts,
    open_,
    high,
    low,
    close,
    weights,
    equity,
    cash,
    positions,
    fills,
    start,
    n_fills,
    exposed,
    scratch,
    order,
):
    """Loop the book's execution function over the grid rows from ``start`` on.

    Stops at the end of the rows, at a rejected bar (unprocessed), or when ``fills`` has fewer
    than ``MAX_FILLS_PER_MARKET * m`` free records (the caller grows it and calls again). The
    book as a whole is carried as values (in registers) from row to row.

    Parameters
    ----------
    book, config : tuple
        The values of a :class:`~research.kernels.portfolio_records.BookState` (the book
        before row ``start``) and of a :class:`~research.kernels.portfolio_records.BookConfig`.
    legs : ndarray, shape (m, LEG_FIELDS)
        Updated in place.
    stops_on, limits_on : True or None
        See :func:`~research.kernels.portfolio_records.book_switches`.
    ts : ndarray of int64, shape (n,)
    open_, high, low, close, weights : ndarray of float64, shape (n, m)
    equity : ndarray, shape (n,)
        Output: the book's equity at each processed row's close.
    cash : ndarray, shape (n,) or (0,); positions : ndarray, shape (n, m) or (0, m)
        Outputs like ``equity`` (the book's cash, each market's units); empty ones are skipped.
    fills : ndarray of BOOK_FILL_DTYPE
        Output from record ``n_fills`` on.
    start, n_fills, exposed : int
        First row, fill records written, processed rows that ended with some position.
    scratch, order
        Work space of :func:`~research.kernels.portfolio.advance_book_nb`.

    Returns
    -------
    book : BookState
        The book after the last processed row.
    next_row, n_fills, exposed, status : int
    """
    n = len(ts)
    m = legs.shape[0]
    record_cash = len(cash) > 0
    record_positions = positions.shape[0] > 0
    capacity = len(fills)
    st = BookState(*book)
    cfg = BookConfig(*config)
    i = start
    status = STATUS_OK
    while i < n and n_fills + MAX_FILLS_PER_MARKET * m <= capacity:
        k, st = advance_book_nb(
            st,
            legs,
            cfg,
            stops_on,
            limits_on,
            ts[i],
            open_,
            high,
            low,
            close,
            weights,
            i,
            fills,
            n_fills,
            scratch,
            order,
        )
        if k < 0:
            status = k
            break
        n_fills = k
        equity[i] = st.equity
        for j in range(m):
            if legs[j, L_POSITION] != 0.0:
                exposed += 1
                break
        if record_cash:
            cash[i] = st.cash
        if record_positions:
            for j in range(m):
                positions[i, j] = legs[j, L_POSITION]
        i += 1
    return st, i, n_fills, exposed, status


INITIAL_FILL_ROWS = 4096
_RAW_FILL = np.dtype((np.void, BOOK_FILL_DTYPE.itemsize))


class BookSimulation(NamedTuple):
    """What :func:`simulate_book` returns."""

    fills: np.ndarray  #: the fill records (BOOK_FILL_DTYPE)
    processed: int  #: rows processed (all unless a bar was rejected)
    exposed: int  #: processed rows that ended with some position
    status: int  #: ``STATUS_OK`` or the first negative status
    book: BookState  #: the book after the last processed row
    legs: np.ndarray  #: the legs after it (the array passed in, updated in place)


def simulate_book(
    book: BookState,
    legs: np.ndarray,
    config: BookConfig,
    ts,
    open_,
    high,
    low,
    close,
    weights,
    equity,
    cash=None,
    positions=None,
    fills=None,
    general: bool = False,
) -> BookSimulation:
    """Run the book over every row, growing the fill table as needed.

    Parameters
    ----------
    book, legs
        The book before the first row (:func:`~research.kernels.portfolio_records.new_book`);
        ``legs`` is updated in place.
    config : BookConfig
    ts, open_, high, low, close, weights
        As for :func:`simulate_book_span_nb`.
    equity : ndarray, shape (n,)
        Output: the equity per row. ``cash`` (n,) and ``positions`` (n, m), when given, receive
        the cash and units. Rows from the first rejected one on are left untouched.
    fills : ndarray of BOOK_FILL_DTYPE, optional
        A fill table to write into (a bigger one replaces it when it fills up).
    general : bool
        Run the book loop even for a book that the single-market loop can run (module
        docstring).
    """
    if not general and _single_market_book(config, open_, weights):
        return _simulate_single(
            book, legs, config, ts, open_, high, low, close, weights, equity, cash, positions
        )
    m = legs.shape[0]
    need = MAX_FILLS_PER_MARKET * m
    if fills is None or len(fills) < need:
        fills = new_book_fills(max(INITIAL_FILL_ROWS, 4 * need))
    cash = _NONE if cash is None else cash
    positions = np.empty((0, m)) if positions is None else positions
    stops_on, limits_on = book_switches(config)
    scratch = np.empty((m, 3))
    order = np.empty(m, dtype=np.int64)
    state, config = tuple(book), tuple(config)
    i = n_fills = exposed = 0
    while True:
        state, i, n_fills, exposed, status = simulate_book_span_nb(
            state,
            legs,
            config,
            stops_on,
            limits_on,
            ts,
            open_,
            high,
            low,
            close,
            weights,
            equity,
            cash,
            positions,
            fills,
            i,
            n_fills,
            exposed,
            scratch,
            order,
        )
        state = tuple(state)
        if i >= len(ts) or status < 0:
            break
        grown = new_book_fills(2 * len(fills))
        grown[:n_fills].view(_RAW_FILL)[...] = fills[:n_fills].view(_RAW_FILL)
        fills = grown
    return BookSimulation(fills[:n_fills], i, exposed, status, BookState._make(state), legs)


_NONE = np.empty(0)  # "do not record" (read-only use: never written)


def _single_market_book(config: BookConfig, open_: np.ndarray, weights: np.ndarray) -> bool:
    """Whether the single-market loop runs this book exactly (module docstring)."""
    return (
        open_.shape[1] == 1
        and config.every == 0.0
        and config.period_ms == 0.0
        and math.isnan(config.drift)
        and config.min_notional == 0.0
        and config.max_weight <= min(1.0, config.max_gross)
        and not math.isnan(float(open_[:, 0].sum()))
    )  # no absent bar (nan: a sum is nan)


def _simulate_single(
    book, legs, config, ts, open_, high, low, close, weights, equity, cash, positions
) -> BookSimulation:
    """:func:`simulate_book` of a one-market book through the single-market loop."""
    leg = legs[0]
    state = State(
        book.cash,
        leg[L_POSITION],
        leg[L_ENTRY],
        leg[L_EXTREME],
        leg[L_PENDING],
        leg[L_PENDING_REASON],
        leg[L_ORDERED],
        leg[L_STOPPED],
        book.day,
        book.day_start_equity,
        book.peak_equity,
        book.halt,
        book.equity,
        book.last_ts,
        book.bars,
    )
    single = Config(
        config.fee_rate,
        config.slippage_bps,
        config.stop_loss,
        config.take_profit,
        config.trailing_stop,
        config.max_weight,
        config.daily_loss_limit,
        config.max_drawdown,
    )
    n = len(ts)
    record = positions is not None or cash is not None
    cash_out = np.empty(n) if record else _NONE
    position_out = np.empty(n) if record else _NONE
    run = simulate(
        state,
        single,
        ts,
        open_[:, 0],
        high[:, 0],
        low[:, 0],
        close[:, 0],
        np.ascontiguousarray(weights[:, 0]),
        equity,
        cash_out,
        position_out,
    )
    if cash is not None:
        cash[: run.processed] = cash_out[: run.processed]
    if positions is not None:
        positions[: run.processed, 0] = position_out[: run.processed]
    fills = new_book_fills(len(run.fills))
    for name in FILL_DTYPE.names:
        fills[name] = run.fills[name]
    fills["market"] = 0
    end = run.state
    if run.processed:
        leg[L_LAST_CLOSE] = close[run.processed - 1, 0]
    leg[L_POSITION], leg[L_ENTRY], leg[L_EXTREME] = end.position, end.entry_price, end.trail_extreme
    leg[L_PENDING], leg[L_PENDING_REASON] = end.pending_target, end.pending_reason
    leg[L_ORDERED], leg[L_STOPPED] = end.ordered_target, end.stopped_target
    state = BookState(
        end.cash,
        end.day,
        end.day_start_equity,
        end.peak_equity,
        end.halt,
        end.equity,
        end.last_ts,
        end.bars,
    )
    return BookSimulation(fills, run.processed, run.exposed, run.status, state, legs)
