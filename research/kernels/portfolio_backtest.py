"""The portfolio backtest kernel: the book's execution function looped over a panel.

:func:`simulate_book_span_nb` runs :func:`~research.kernels.portfolio.advance_book_nb` (what a
portfolio bot's :func:`~research.kernels.portfolio.step_book` runs on one bar) over the grid
rows; :func:`simulate_book` allocates the outputs and grows the fill table between calls, as
:func:`research.kernels.backtest.simulate` does for one market.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from research.kernels.portfolio import advance_book_nb
from research.kernels.portfolio_records import (
    B_CASH,
    B_EQUITY,
    BOOK_FILL_DTYPE,
    L_POSITION,
    MAX_FILLS_PER_MARKET,
    BookConfig,
    book_switches,
    new_book_fills,
)
from research.kernels.records import STATUS_OK


@njit(cache=True, _nrt=False, error_model="numpy")
def simulate_book_span_nb(book, legs, config, stops_on, limits_on, ts, open_, high, low, close,
                          weights, equity, cash, positions, fills, start, n_fills, exposed,
                          scratch, order):
    """Loop the book's execution function over the grid rows from ``start`` on.

    Stops at the end of the rows, at a rejected bar (unprocessed), or when ``fills`` has fewer
    than ``MAX_FILLS_PER_MARKET * m`` free records (the caller grows it and calls again).

    Parameters
    ----------
    book, legs : ndarray
        The book before row ``start``; updated in place.
    config : tuple
        The values of a :class:`~research.kernels.portfolio_records.BookConfig`.
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
    next_row, n_fills, exposed, status : int
    """
    n = len(ts)
    m = legs.shape[0]
    record_cash = len(cash) > 0
    record_positions = positions.shape[0] > 0
    capacity = len(fills)
    cfg = BookConfig(*config)
    i = start
    status = STATUS_OK
    while i < n and n_fills + MAX_FILLS_PER_MARKET * m <= capacity:
        k = advance_book_nb(book, legs, cfg, stops_on, limits_on, ts[i], open_, high, low, close,
                            weights, i, fills, n_fills, scratch, order)
        if k < 0:
            status = k
            break
        n_fills = k
        equity[i] = book[B_EQUITY]
        for j in range(m):
            if legs[j, L_POSITION] != 0.0:
                exposed += 1
                break
        if record_cash:
            cash[i] = book[B_CASH]
        if record_positions:
            for j in range(m):
                positions[i, j] = legs[j, L_POSITION]
        i += 1
    return i, n_fills, exposed, status


INITIAL_FILL_ROWS = 4096
_RAW_FILL = np.dtype((np.void, BOOK_FILL_DTYPE.itemsize))


class BookSimulation(NamedTuple):
    """What :func:`simulate_book` returns."""

    fills: np.ndarray  #: the fill records (BOOK_FILL_DTYPE)
    processed: int  #: rows processed (all unless a bar was rejected)
    exposed: int  #: processed rows that ended with some position
    status: int  #: ``STATUS_OK`` or the first negative status
    book: np.ndarray  #: the book after the last processed row
    legs: np.ndarray


def simulate_book(book, legs, config: BookConfig, ts, open_, high, low, close, weights, equity,
                  cash=None, positions=None, fills=None) -> BookSimulation:
    """Run :func:`simulate_book_span_nb` over every row, growing the fill table as needed.

    ``book`` and ``legs`` are updated in place (and returned). ``equity`` (n,) receives the
    equity per row; ``cash`` (n,) and ``positions`` (n, m), when given, the cash and units.
    Rows from the first rejected one on are left untouched.
    """
    m = legs.shape[0]
    need = MAX_FILLS_PER_MARKET * m
    if fills is None or len(fills) < need:
        fills = new_book_fills(max(INITIAL_FILL_ROWS, 4 * need))
    cash = _NONE if cash is None else cash
    positions = np.empty((0, m)) if positions is None else positions
    stops_on, limits_on = book_switches(config)
    scratch = np.empty((m, 3))
    order = np.empty(m, dtype=np.int64)
    config = tuple(config)
    i = n_fills = exposed = 0
    while True:
        i, n_fills, exposed, status = simulate_book_span_nb(
            book, legs, config, stops_on, limits_on, ts, open_, high, low, close, weights,
            equity, cash, positions, fills, i, n_fills, exposed, scratch, order)
        if i >= len(ts) or status < 0:
            break
        grown = new_book_fills(2 * len(fills))
        grown[:n_fills].view(_RAW_FILL)[...] = fills[:n_fills].view(_RAW_FILL)
        fills = grown
    return BookSimulation(fills[:n_fills], i, exposed, status, book, legs)


_NONE = np.empty(0)  # "do not record" (read-only use: never written)
