"""The one execution model of a book of many markets with shared cash.

:func:`advance_book_nb` turns target weights into virtual fills for one grid bar of a
:class:`~research.panel.Panel`. The portfolio backtest loops it over history
(:mod:`research.kernels.portfolio_backtest`); the runner's portfolio bots call it, through
:func:`step_book`, for each live bar with the persisted book (docs/architecture.md §3). It is
the single-market execution function (:mod:`research.kernels.execution`) generalised to many
markets, built from the very same fill, stop and limit helpers: a book of one market with
weight 1 gives that function's fills, cash and equity bit for bit (tested).

A **weight** is a fraction of the book's equity, signed (``-0.5``: short half the equity);
``nan`` means 0. A market is **absent** at a bar when its open is ``nan``
(:mod:`research.panel`): it does not trade, its stops are not checked, and the book values its
position at its last close. The book state is a :class:`BookState` and the ``legs`` array
(:mod:`research.kernels.portfolio_records`).

Per grid bar ``t`` (close time ``ts``), in order:

1. **Day roll**, as the single-market step 1, on the book's equity.
2. **Rebalance at the open**, for the present markets with a pending weight ``w``:

   a. *Flips*: a market whose position has the opposite sign of ``w`` is closed first.
   b. *Valuation*: every position is marked at its market's open (an absent market at its
      last close), ``E_mid = cash + sum(position * mark)``. If some pending ``w`` is not 0,
      each pending market's mark becomes its open slipped towards the side of its coming fill
      (the sign of ``w * E_mid / (open * (1 + fee)) - position``), and the book's equity is
      re-marked: ``E = cash + sum(position * mark)``.
   c. *Sizing*: the market's new position is ``w * E / (mark * (1 + fee))`` units: from flat,
      position value plus fee is ``w * E`` (the single-market rule). With ``E <= 0`` (ruin)
      every present position is closed and nothing is opened.
   d. *Orders*, **sells before buys**: in ascending order of value ``w / (1 + fee) * E -
      position * mark`` (the largest sale first, the smallest purchase first; ties by
      column), as vectorbt's ``call_seq='auto'``. A purchase that opens or grows a long
      position is cut to the cash at hand (fee included) when it needs more, beyond a
      tolerance of 1e-9 relative (vectorbt's ``allow_partial``); with no cash left (less than
      1e-9 of its cost, or 1e-12: rounding) it is not sent. The book never borrows cash for a
      long position (shorts are margin positions, as in the single-market model: their
      proceeds are cash). An order worth less than ``min_notional`` at its fill price is not
      sent, except one that closes a position (no dust is left); nor is the resize of a
      market whose weight did not change when it is smaller than 1e-12 of the position
      (rounding). Every fill pays slippage and fee.

   The weight is then *ordered* (even if an order was cut or not sent).
3. **Protective exits** per present position, exactly the single-market step 3.
4. **Close**: each present market's last close becomes its close; equity ``cash +
   sum(position * last close)``; peak, trailing extremes; the book's risk limits (daily loss,
   maximum drawdown) as the single-market step 4: a halt orders every market to 0.
5. **Decision**: each market's weight for bar ``t`` (``nan`` = 0) is clipped to
   ``±max_weight``; if the gross weight ``sum(|w|)`` exceeds ``max_gross`` all are scaled by
   ``max_gross / gross``; a market is held at 0 after a protective exit until its weight
   changes; a halt forces 0. Then the **rebalancing rule**
   (:class:`~research.kernels.portfolio_records.Rebalance`): *on change* (no trigger), a market
   whose weight differs from its ordered weight gets it pending (and only it); with a trigger
   (every N bars, a calendar period, a drift threshold) every market gets its weight pending at
   a rebalance decision and nothing changes between them; a halt is a rebalance. A pending
   weight waits for the market's next bar (an absent market trades at its next open).

Before step 1 the bar is checked: a close time not after the last one (``STATUS_OUT_OF_ORDER``)
or a present market with a bad bar (``STATUS_BAD_BAR``, the single-market rule) leaves the book
untouched. The function never raises.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from research.kernels.execution import DAY_MS, _bar_status, _protective_exit, _risk_halt, _trade
from research.kernels.portfolio_records import (
    L_ENTRY,
    L_EXTREME,
    L_LAST_CLOSE,
    L_ORDERED,
    L_PENDING,
    L_PENDING_REASON,
    L_POSITION,
    L_STOPPED,
    BookConfig,
    BookState,
)
from research.kernels.records import (
    HALT_DAILY_LOSS,
    HALT_MAX_DRAWDOWN,
    HALT_NONE,
    REASON_DAILY_LOSS,
    REASON_MAX_DRAWDOWN,
    REASON_SIGNAL,
    STATUS_OK,
    STATUS_OUT_OF_ORDER,
)

_KERNEL = {"cache": True, "_nrt": False, "error_model": "numpy"}
_INLINED = dict(_KERNEL, inline="always")

CASH_TOLERANCE = 1e-9
"""Relative tolerance of the cash check of a purchase (vectorbt's ``is_close`` tolerance)."""

# scratch columns (per market)
_S_MARK = 0  # the price the position is marked at for sizing
_S_DELTA = 1  # the order's units
_S_VALUE = 2  # the order's value, for the order of execution; then the decided level


@njit(**_INLINED)
def _trade_leg(legs, j, cash, cfg, fills, k, delta, mid_price, reason, at_open):
    """:func:`~research.kernels.execution._trade` on market ``j``'s leg; returns ``(k, cash)``."""
    k, cash, position, entry, extreme = _trade(
        cash,
        legs[j, L_POSITION],
        legs[j, L_ENTRY],
        legs[j, L_EXTREME],
        cfg,
        fills,
        k,
        delta,
        mid_price,
        reason,
        at_open,
    )
    legs[j, L_POSITION] = position
    legs[j, L_ENTRY] = entry
    legs[j, L_EXTREME] = extreme
    fills[k - 1].market = j
    return k, cash


@njit(**_INLINED)
def _cash_covers(cost, cash):
    """Whether ``cash`` covers ``cost`` (within :data:`CASH_TOLERANCE`, as vectorbt)."""
    if cost <= cash:
        return True
    return cost - cash <= max(CASH_TOLERANCE * max(abs(cost), abs(cash)), 1e-12)


@njit(**_KERNEL)
def _rebalance_open(legs, cash, cfg, fills, k, open_, i, scratch, order):
    """Step 2 of the module docstring; returns ``(k, cash)``.

    Not inlined: it runs only at the bars where some order is pending, and the loop over
    the other bars is faster without its code in the way."""
    m = legs.shape[0]
    fee_factor = 1.0 + cfg.fee_rate
    # a. flips
    for j in range(m):
        mid = open_[i, j]
        level = legs[j, L_PENDING]
        if math.isnan(mid) or math.isnan(level):
            continue
        position = legs[j, L_POSITION]
        if position != 0.0 and level != 0.0 and (level > 0.0) != (position > 0.0):
            k, cash = _trade_leg(
                legs, j, cash, cfg, fills, k, -position, mid, legs[j, L_PENDING_REASON], True
            )
    # b. valuation
    sizing = False
    equity_mid = cash
    for j in range(m):
        mid = open_[i, j]
        if math.isnan(mid):
            mid = legs[j, L_LAST_CLOSE]
        scratch[j, _S_MARK] = mid
        position = legs[j, L_POSITION]
        if position != 0.0:
            equity_mid += position * mid
        if (
            not math.isnan(open_[i, j])
            and legs[j, L_PENDING] != 0.0
            and not math.isnan(legs[j, L_PENDING])
        ):
            sizing = True
    equity = equity_mid
    if sizing:
        for j in range(m):
            level = legs[j, L_PENDING]
            mid = open_[i, j]
            if math.isnan(mid) or math.isnan(level):
                continue
            unslipped = level * equity_mid / (mid * fee_factor)
            side = 1.0 if unslipped > legs[j, L_POSITION] else -1.0
            scratch[j, _S_MARK] = mid * (1.0 + side * cfg.slippage_bps * 1e-4)
        equity = cash
        for j in range(m):
            position = legs[j, L_POSITION]
            if position != 0.0:
                equity += position * scratch[j, _S_MARK]
    ruined = sizing and equity <= 0.0
    if ruined:  # bankrupt: every present market is ordered to 0
        for j in range(m):
            if not math.isnan(open_[i, j]) and math.isnan(legs[j, L_PENDING]):
                legs[j, L_PENDING] = 0.0
                legs[j, L_PENDING_REASON] = float(REASON_SIGNAL)
    # c. sizing, and the orders to send
    count = 0
    for j in range(m):
        mid = open_[i, j]
        level = legs[j, L_PENDING]
        if math.isnan(mid) or math.isnan(level):
            continue
        position = legs[j, L_POSITION]
        mark = scratch[j, _S_MARK]
        if ruined or level == 0.0:
            delta = -position
            value = -position * mark
        else:
            delta = level * equity / (mark * (1.0 + cfg.fee_rate)) - position
            value = level / fee_factor * equity - position * mark
        resize = level == legs[j, L_ORDERED] and level != 0.0 and not ruined
        if delta != 0.0 and not (resize and abs(delta) <= 1e-12 * abs(position)):
            scratch[j, _S_DELTA] = delta
            scratch[j, _S_VALUE] = value
            # insertion sort by value (stable: ties keep column order)
            slot = count
            while slot > 0 and scratch[order[slot - 1], _S_VALUE] > scratch[j, _S_VALUE]:
                order[slot] = order[slot - 1]
                slot -= 1
            order[slot] = j
            count += 1
    # d. orders: sells first, then buys
    for slot in range(count):
        j = order[slot]
        mid = open_[i, j]
        delta = scratch[j, _S_DELTA]
        position = legs[j, L_POSITION]
        closing = delta == -position
        if delta > 0.0 and position >= 0.0:  # a purchase for a long position
            price = mid * (1.0 + cfg.slippage_bps * 1e-4)
            cost = delta * price + delta * price * cfg.fee_rate
            if not _cash_covers(cost, cash):
                if cash <= max(CASH_TOLERANCE * cost, 1e-12):  # nothing left but rounding
                    continue
                delta = cash / fee_factor / price
        if cfg.min_notional > 0.0 and not closing:
            side = 1.0 if delta > 0.0 else -1.0
            if abs(delta) * mid * (1.0 + side * cfg.slippage_bps * 1e-4) < cfg.min_notional:
                continue
        k, cash = _trade_leg(
            legs, j, cash, cfg, fills, k, delta, mid, legs[j, L_PENDING_REASON], True
        )
    # the weights are ordered
    for j in range(m):
        if math.isnan(open_[i, j]) or math.isnan(legs[j, L_PENDING]):
            continue
        legs[j, L_ORDERED] = 0.0 if ruined else legs[j, L_PENDING]
        legs[j, L_PENDING] = np.nan
    return k, cash


@njit(**_INLINED)
def _rebalance_due(cfg, bars, last_ts, ts):
    """Whether a schedule trigger fires at the decision of the bar closing at ``ts`` (the
    ``bars``-th grid bar; the previous one closed at ``last_ts``)."""
    if cfg.every > 0.0 and bars % cfg.every == 0.0:
        return True
    if cfg.period_ms > 0.0:
        now = math.floor((ts - cfg.offset_ms) / cfg.period_ms)
        before = math.floor((last_ts - cfg.offset_ms) / cfg.period_ms)
        if now > before:
            return True
    return False


@njit(**_INLINED)
def _target_level(cfg, weights, i, j):
    """Market ``j``'s weight decided at row ``i`` (``nan`` = 0), clipped to ``±max_weight``."""
    level = weights[i, j]
    level = 0.0 if math.isnan(level) else level
    return min(max(level, -cfg.max_weight), cfg.max_weight)


@njit(**_INLINED)
def _decide_book(legs, cfg, weights, i, halt, equity, rebalance, scratch):
    """Step 5 of the module docstring: set the pending weights."""
    m = legs.shape[0]
    scale = 1.0
    if m * cfg.max_weight > cfg.max_gross:  # else the gross weight cannot exceed it
        gross = 0.0
        for j in range(m):
            gross += abs(_target_level(cfg, weights, i, j))
        if gross > cfg.max_gross:
            scale = cfg.max_gross / gross
    reason = float(REASON_SIGNAL)
    if halt != HALT_NONE:
        reason = float(REASON_MAX_DRAWDOWN if halt == HALT_MAX_DRAWDOWN else REASON_DAILY_LOSS)
        rebalance = True
    drift = cfg.drift
    scheduled = cfg.every > 0.0 or cfg.period_ms > 0.0 or not math.isnan(drift)
    for j in range(m):
        level = _target_level(cfg, weights, i, j)
        if scale != 1.0:
            level = level * scale
        stopped = legs[j, L_STOPPED]
        if not math.isnan(stopped):
            if level == stopped:
                level = 0.0
            else:
                legs[j, L_STOPPED] = np.nan
        if halt != HALT_NONE:
            level = 0.0
        if scheduled:  # pending only at a rebalance, decided below
            scratch[j, _S_VALUE] = level
            if not rebalance and not math.isnan(drift) and equity > 0.0:
                position = legs[j, L_POSITION]
                held = position * legs[j, L_LAST_CLOSE] / equity if position != 0.0 else 0.0
                if abs(held - level) > drift:
                    rebalance = True
        elif level != legs[j, L_ORDERED]:  # on change
            legs[j, L_PENDING] = level
            legs[j, L_PENDING_REASON] = reason
        elif not math.isnan(legs[j, L_PENDING]):
            legs[j, L_PENDING] = np.nan
    if scheduled and rebalance:
        for j in range(m):
            legs[j, L_PENDING] = scratch[j, _S_VALUE]
            legs[j, L_PENDING_REASON] = reason


@njit(**_INLINED)
def advance_book_nb(
    st,
    legs,
    cfg,
    stops_on,
    limits_on,
    ts,
    open_,
    high,
    low,
    close,
    weights,
    i,
    fills,
    k,
    scratch,
    order,
):
    """The execution function of a book: advance it by grid row ``i``.

    Parameters
    ----------
    st : BookState
        The book as a whole after the previous bar.
    legs : ndarray of float64, shape (m, LEG_FIELDS)
        The markets' legs (:mod:`research.kernels.portfolio_records`), updated in place.
    cfg : BookConfig
    stops_on, limits_on : True or None
        As for :func:`~research.kernels.execution.advance_nb`
        (:func:`~research.kernels.portfolio_records.book_switches`).
    ts : int
        The grid bar's close time, ms UTC; must be greater than ``st.last_ts``.
    open_, high, low, close : ndarray of float64, shape (rows, m)
        The panel's prices; row ``i`` is this bar (``nan`` open: market absent).
    weights : ndarray of float64, shape (rows, m)
        Target weights; row ``i`` is decided at this bar's close.
    i : int
        The row.
    fills : ndarray of BOOK_FILL_DTYPE, at least ``k + MAX_FILLS_PER_MARKET * m`` long
        Output: this bar's fills from record ``k`` on (the rebalance in execution order, then
        the protective exits by column).
    k : int
        First free fill record.
    scratch : ndarray of float64, shape (m, 3); order : ndarray of int64, shape (m,)
        Work space (any contents).

    Returns
    -------
    k : int
        The first free fill record after this bar's fills, or a negative ``STATUS_*`` code
        (then ``legs`` are untouched).
    st : BookState
        The book after the bar (``st`` itself with a negative status).
    """
    m = legs.shape[0]
    u = np.uint64(i)  # an unsigned row: no negative-index wraparound code per read
    if ts <= st.last_ts:
        return STATUS_OUT_OF_ORDER, st
    for j in range(m):
        if not math.isnan(open_[u, j]):
            status = _bar_status(st.last_ts, ts, open_[u, j], high[u, j], low[u, j], close[u, j])
            if status != STATUS_OK:
                return status, st
    first = k
    cash, halt = st.cash, st.halt
    # 1. day roll
    day, day_start_equity = st.day, st.day_start_equity
    day_start = day * DAY_MS
    if not day_start <= float(ts - 1) < day_start + DAY_MS:
        day = float((ts - 1) // DAY_MS)
        day_start_equity = st.equity
        if halt == HALT_DAILY_LOSS:
            halt = float(HALT_NONE)
    # 2. rebalance at the open
    for j in range(m):
        if not math.isnan(legs[j, L_PENDING]) and not math.isnan(open_[u, j]):
            k, cash = _rebalance_open(legs, cash, cfg, fills, k, open_, u, scratch, order)
            break
    # 3. protective exits
    if stops_on is not None:
        for j in range(m):
            if math.isnan(open_[u, j]) or legs[j, L_POSITION] == 0.0:
                continue
            before = k
            k, cash, position, entry, extreme, ordered, stopped = _protective_exit(
                cash,
                legs[j, L_POSITION],
                legs[j, L_ENTRY],
                legs[j, L_EXTREME],
                legs[j, L_ORDERED],
                legs[j, L_STOPPED],
                cfg,
                fills,
                k,
                open_[u, j],
                high[u, j],
                low[u, j],
            )
            if k != before:
                fills[k - 1].market = j
            legs[j, L_POSITION] = position
            legs[j, L_ENTRY] = entry
            legs[j, L_EXTREME] = extreme
            legs[j, L_ORDERED] = ordered
            legs[j, L_STOPPED] = stopped
    for f in range(first, k):
        fills[f].bar = int(st.bars)
        fills[f].bar_ts = ts
    # 4. close
    equity = cash
    for j in range(m):
        price = close[u, j]
        position = legs[j, L_POSITION]
        if not math.isnan(price):
            legs[j, L_LAST_CLOSE] = price
            if position > 0.0:
                legs[j, L_EXTREME] = max(legs[j, L_EXTREME], high[u, j])
            elif position < 0.0:
                legs[j, L_EXTREME] = min(legs[j, L_EXTREME], low[u, j])
        else:
            price = legs[j, L_LAST_CLOSE]
        if position != 0.0:
            equity += position * price
    peak = max(st.peak_equity, equity)
    if limits_on is not None:
        halt = _risk_halt(cfg, halt, equity, peak, day_start_equity)
    # 5. decision
    rebalance = _rebalance_due(cfg, st.bars, st.last_ts, ts)
    _decide_book(legs, cfg, weights, u, halt, equity, rebalance, scratch)
    return k, BookState(cash, day, day_start_equity, peak, halt, equity, float(ts), st.bars + 1.0)


@njit(**_KERNEL)
def step_book_nb(book, legs, config, ts, open_, high, low, close, weights, fills, scratch, order):
    """:func:`advance_book_nb` on row 0 of one-row arrays, every step compiled in; ``book``
    and ``config`` are plain tuples of their values (faster to pass, see
    :func:`~research.kernels.execution.step_nb`), and so is the book returned."""
    k, st = advance_book_nb(
        BookState(*book),
        legs,
        BookConfig(*config),
        True,
        True,
        ts,
        open_,
        high,
        low,
        close,
        weights,
        0,
        fills,
        0,
        scratch,
        order,
    )
    return k, st[:]


def step_book(
    book: BookState,
    legs: np.ndarray,
    config: BookConfig,
    ts: int,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    weights: np.ndarray,
    fills: np.ndarray,
) -> tuple[int, BookState]:
    """Advance a book by one grid bar: the runner's entry point.

    Parameters
    ----------
    book : BookState
        The book as a whole (:func:`~research.kernels.portfolio_records.new_book`).
    legs : ndarray
        The markets' legs, updated in place (the runner advances a copy and adopts it after
        its commit).
    config : BookConfig
    ts : int
        The bar's close time, ms UTC.
    open_, high, low, close, weights : ndarray of float64, shape (m,)
        Each market's bar (``nan`` open: absent) and the target weights decided at its close.
    fills : ndarray of BOOK_FILL_DTYPE, at least ``MAX_FILLS_PER_MARKET * m`` long
        Output: this bar's fills from record 0 on.

    Returns
    -------
    n_fills : int
        Number of fills written, or a negative ``STATUS_*`` code (then neither the book nor
        the legs changed).
    book : BookState
        The book after the bar.
    """
    m = legs.shape[0]
    rows = [
        np.ascontiguousarray(values, dtype=np.float64).reshape(1, m)
        for values in (open_, high, low, close, weights)
    ]
    k, values = step_book_nb(
        tuple(book),
        legs,
        tuple(config),
        ts,
        *rows,
        fills,
        np.empty((m, 3)),
        np.empty(m, dtype=np.int64),
    )
    return int(k), BookState._make(values)
