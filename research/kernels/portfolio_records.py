"""The portfolio execution function's records: book state, configuration and fills, by name.

A book's state is in two parts:

* :class:`BookState`, the account as a whole (cash, UTC day, day-start equity, equity peak,
  halt code, equity, last close time, bars), a named tuple of floats that
  :func:`~research.kernels.portfolio.advance_book_nb` returns anew (the backtest loop keeps it
  in registers, as the single-market :class:`~research.kernels.records.State`);
* ``legs``, a float64 array of shape ``(m, LEG_FIELDS)``: one row per market, indexed by the
  ``L_*`` constants (position, entry price, trailing extreme, pending and ordered weight,
  stopped weight, last close), updated in place.

Their meanings are those of :class:`~research.kernels.records.State`'s fields, split between
the book and its markets. The runner persists a book as the JSON lists of both.
:class:`BookConfig` holds costs, stops, limits and the rebalancing rule; a fill is a record of
:data:`BOOK_FILL_DTYPE`: the single-market fill plus the market's column.

Pure core: numpy and numba only.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from research.kernels.records import FILL_DTYPE, HALT_NONE, _fraction_or_nan, _within

# ---- leg fields (one row per market)
L_POSITION = 0  #: units of the base asset, signed
L_ENTRY = 1  #: average entry price of the open position (nan when flat)
L_EXTREME = 2  #: highest (long) / lowest (short) price since entry
L_PENDING = 3  #: weight to trade to at the market's next open (nan: nothing pending)
L_PENDING_REASON = 4  #: REASON_* of the pending order
L_ORDERED = 5  #: weight last ordered
L_STOPPED = 6  #: weight that a protective exit closed (nan: none)
L_LAST_CLOSE = 7  #: the market's last close (nan before its first bar)
LEG_FIELDS = 8

#: Fills a market can make in one bar: a flip's close and open, and a protective exit.
MAX_FILLS_PER_MARKET = 3

#: One fill of a book: :data:`~research.kernels.records.FILL_DTYPE` and the market's column.
#: ``cash_after`` is the book's cash, ``position_after`` the market's position.
BOOK_FILL_DTYPE = np.dtype(
    [(name, FILL_DTYPE.fields[name][0]) for name in FILL_DTYPE.names] + [("market", np.int64)],
    align=True,
)

BOOK_FILL_COLUMNS = (
    "ts",
    "bar_ts",
    "market",
    "side",
    "size",
    "price",
    "fee",
    "reason",
    "realized_pnl",
    "cash_after",
    "position_after",
)


class BookState(NamedTuple):
    """A book as a whole between two grid bars (every field a float, as
    :class:`~research.kernels.records.State`)."""

    cash: float
    day: float  #: UTC day index of the last processed bar
    day_start_equity: float
    peak_equity: float
    halt: float  #: ``HALT_*`` code
    equity: float  #: equity at the last processed close
    last_ts: float  #: close time of the last processed grid bar, ms UTC (-1: none)
    bars: float  #: grid bars processed


class BookConfig(NamedTuple):
    """Costs, stops, limits and the rebalancing rule of a book (:func:`make_book_config`).

    Stops and limits disabled by ``nan``; a rebalancing trigger disabled by ``0`` (``every``,
    ``period_ms``) or ``nan`` (``drift``). With no trigger the book rebalances *on change*:
    a market gets an order when its target weight differs from the weight last ordered for it
    (the single-market rule).
    """

    fee_rate: float
    slippage_bps: float
    stop_loss: float
    take_profit: float
    trailing_stop: float
    max_weight: float  #: largest absolute weight of one market; targets are clipped to it
    daily_loss_limit: float
    max_drawdown: float
    max_gross: float  #: largest sum of absolute weights; larger targets are scaled down
    min_notional: float  #: smallest order value (quote currency); smaller orders are not sent
    every: float  #: rebalance every this many grid bars (0: off)
    period_ms: float  #: rebalance at each ``offset_ms + k * period_ms`` (0: off)
    offset_ms: float
    drift: float  #: rebalance when a weight drifts further than this from its target (nan: off)


class Rebalance(NamedTuple):
    """When a book sends its target weights to the market.

    Attributes
    ----------
    every : int
        Every this many grid bars, counted from the first bar: the decisions of bars 0,
        ``every``, ``2 * every``, ... (0: off).
    period : int
        With ``offset``, ms: at the first decision at or after each time ``offset + k *
        period``, e.g. ``period=86_400_000`` rebalances on the close of 00:00 UTC, or the first
        bar after it (0: off).
    offset : int
        See ``period``.
    drift : float
        At any decision where some market's weight (marked at the close) is further than
        this from its target (nan: off).

    With every trigger off (the default) the book rebalances *on change*: each market trades
    when its own target weight changes, and only it. With a trigger, at a rebalance every market
    is traded back to its target weight, and between rebalances targets are not acted upon
    (stops and risk limits still are).
    """

    every: int = 0
    period: int = 0
    offset: int = 0
    drift: float = math.nan


class BookLimits(NamedTuple):
    """Limits of a book, enforced by the execution function.

    Attributes
    ----------
    max_weight : float
        Largest absolute target weight of one market; targets are clipped to it.
    max_gross : float
        Largest sum of absolute target weights (gross exposure); a larger decision is scaled
        down to it. The research API refuses weights above it instead.
    daily_loss_limit, max_drawdown : float
        As :class:`~research.types.RiskLimits`, on the book's equity: the whole book is closed
        at the next open (``nan`` disables).
    min_notional : float
        Smallest order value in the quote currency, like an exchange minimum (0: none). An
        order worth less (at its fill price) is not sent.
    """

    max_weight: float = 1.0
    max_gross: float = 1.0
    daily_loss_limit: float = math.nan
    max_drawdown: float = math.nan
    min_notional: float = 0.0


def make_book_config(
    costs, stops, limits: BookLimits = BookLimits(), rebalance: Rebalance = Rebalance()
) -> BookConfig:
    """Validate :class:`~research.types.Costs`, ``Stops``, :class:`BookLimits` and
    :class:`Rebalance` into a :class:`BookConfig`.

    Raises
    ------
    ValueError
        If a value is out of range; the message names the field and its valid range.
    """
    every = _within(rebalance.every, "rebalance.every", 0.0, 1e9)
    if not every.is_integer():
        raise ValueError(f"rebalance.every must be a whole number of bars, got {every}")
    period = _within(rebalance.period, "rebalance.period", 0.0, 1e13)
    offset = _within(rebalance.offset, "rebalance.offset", 0.0, max(period, 0.0))
    if period and offset >= period:
        raise ValueError(
            f"rebalance.offset must be below rebalance.period ({period:.0f} ms), got {offset:.0f}"
        )
    return BookConfig(
        fee_rate=_within(costs.fee_rate, "costs.fee_rate", 0.0, 0.5),
        slippage_bps=_within(costs.slippage_bps, "costs.slippage_bps", 0.0, 5000.0),
        stop_loss=_fraction_or_nan(stops.stop_loss, "stops.stop_loss", 1.0),
        take_profit=_fraction_or_nan(stops.take_profit, "stops.take_profit", 100.0),
        trailing_stop=_fraction_or_nan(stops.trailing_stop, "stops.trailing_stop", 1.0),
        max_weight=_within(limits.max_weight, "limits.max_weight", 0.0, 100.0),
        daily_loss_limit=_fraction_or_nan(limits.daily_loss_limit, "limits.daily_loss_limit", 1.0),
        max_drawdown=_fraction_or_nan(limits.max_drawdown, "limits.max_drawdown", 1.0),
        max_gross=_within(limits.max_gross, "limits.max_gross", 0.0, 100.0),
        min_notional=_within(limits.min_notional, "limits.min_notional", 0.0, 1e12),
        every=every,
        period_ms=period,
        offset_ms=offset,
        drift=_fraction_or_nan(rebalance.drift, "rebalance.drift", 100.0),
    )


def book_switches(config: BookConfig) -> tuple[bool | None, bool | None]:
    """The ``(stops_on, limits_on)`` switches of
    :func:`~research.kernels.portfolio.advance_book_nb` (as
    :func:`~research.kernels.records.feature_switches`)."""
    stops = (config.stop_loss, config.take_profit, config.trailing_stop)
    limits = (config.daily_loss_limit, config.max_drawdown)
    return (
        None if all(map(math.isnan, stops)) else True,
        None if all(map(math.isnan, limits)) else True,
    )


def new_book(initial_cash: float, n_markets: int) -> tuple[BookState, np.ndarray]:
    """The ``(book, legs)`` of a fresh, flat book of ``n_markets`` markets holding
    ``initial_cash``."""
    cash = float(initial_cash)
    book = BookState(
        cash=cash,
        day=-1.0,
        day_start_equity=cash,
        peak_equity=cash,
        halt=float(HALT_NONE),
        equity=cash,
        last_ts=-1.0,
        bars=0.0,
    )
    legs = np.empty((n_markets, LEG_FIELDS))
    legs[:, L_POSITION] = 0.0
    legs[:, L_ENTRY] = np.nan
    legs[:, L_EXTREME] = np.nan
    legs[:, L_PENDING] = np.nan
    legs[:, L_PENDING_REASON] = np.nan
    legs[:, L_ORDERED] = 0.0
    legs[:, L_STOPPED] = np.nan
    legs[:, L_LAST_CLOSE] = np.nan
    return book, legs


def new_book_fills(rows: int) -> np.ndarray:
    """An uninitialised fill table of ``rows`` records (:data:`BOOK_FILL_DTYPE`)."""
    return np.empty(rows, dtype=BOOK_FILL_DTYPE)
