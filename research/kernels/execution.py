"""The one execution model: (state, target, bar, costs) -> (new state, fills).

:func:`advance_nb` is the single function that turns a strategy's target into virtual fills.
The backtest loop runs it over history; the paper-trading runner calls it, through
:func:`step`, for each live bar with the persisted state. Fees, slippage, stops and risk
limits live here and nowhere else, so the backtest and the runner cannot disagree about a fill
(docs/architecture.md §3).

The state (:class:`~research.kernels.records.State`) and the configuration
(:class:`~research.kernels.records.Config`) are named tuples of floats; the fills are records
of :data:`~research.kernels.records.FILL_DTYPE` (see :mod:`research.kernels.records`).

Per bar ``t`` (open ``o``, high ``h``, low ``l``, close ``c``, close time ``ts``), in order:

1. **Day roll.** The bar belongs to UTC day ``(ts - 1) // 86_400_000``. On a new day the
   day-start equity becomes the previous close's equity and a daily-loss halt is lifted.
2. **Open fill.** If a target level was decided at bar ``t-1``'s close, trade to it at ``o``
   (slippage against the trader). Sizing: with equity ``E`` marked at the fill price ``p``
   (the open slipped towards the side of the coming fill, which is the side that the target
   would need at the plain open), the new position is ``L * E / (p * (1 + fee_rate))`` units
   for level ``L``, so that, from flat, position value plus the fee equals ``L * E`` (``L = 1``
   spends all cash, as vectorbt's ``size=inf``).
   Changing sides closes first, then opens from the resulting cash (two fills). With equity
   at or below zero (ruin) the order closes any position and opens nothing.
3. **Protective exits**, for the position held after the open: the stop level is the tighter
   of stop-loss (from the entry price) and trailing stop (from the extreme of completed bars and
   this open). It triggers if the bar's low (long) / high (short) reaches it; it fills at the
   stop level, or at the open if the open is already beyond it. Take-profit likewise (fills at
   its level, or at the open if the open is already beyond it, which is then the better price).
   The open comes first: a level the open gapped through fills there. Otherwise, if both the
   stop and the take-profit lie within the bar's range, the stop (the worse outcome) is assumed.
   Protective fills pay slippage and fees like any other fill. Only one protective exit per
   bar; the position opened at this bar's open is protected from this bar on.
4. **Close.** Mark equity at ``c``; update the equity peak and the trailing extreme; apply
   risk limits (daily loss, maximum drawdown), which force the target to flat.
5. **Decision.** The strategy's target for bar ``t`` (``nan`` = flat) is clipped to
   ``±max_position``, forced to 0 while halted, held at 0 after a protective exit until the
   target changes, and, if it differs from the level last ordered, queued for the next open.

Before step 1 the bar is checked: a non-finite or non-positive price, a high below the open,
close or low, a low above the open or close (``STATUS_BAD_BAR``), or a close time not after
the last processed one (``STATUS_OUT_OF_ORDER``) leaves the state untouched.

The function never raises; it returns the first free fill row after the bar's fills, or a
negative status.

**Long and short** are one rule with the position's direction ``d`` (``+1`` long, ``-1``
short): a level ``x`` is beyond ``y`` in direction ``d`` when ``d * x > d * y``. Multiplying by
``±1`` and negating are exact in floating point, so each folded rule gives the very numbers the
two mirrored ones did.

**Compiled-out steps.** Step 3 and the risk-limit checks of step 4 are no-ops when every stop,
respectively every risk limit, is disabled (``nan``). :func:`advance_nb` takes two switches,
``stops_on`` and ``limits_on``; passing ``None`` (instead of ``True``) for one of them makes
Numba compile that step out of the loop, which a backtest without stops or limits spends
about a fifth of its time on. It is the same function, and the result is the same, bit for
bit, state included (tested): the trailing extreme a skipped step 3 would have moved to the
open is moved past it at step 4 anyway, since a valid bar's high (low) is at least (most) its
open. :func:`~research.kernels.records.feature_switches` picks the switches from a
configuration; :func:`step`, the runner's entry, always passes ``True``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from research.kernels.records import (
    HALT_DAILY_LOSS,
    HALT_MAX_DRAWDOWN,
    HALT_NONE,
    REASON_DAILY_LOSS,
    REASON_MAX_DRAWDOWN,
    REASON_SIGNAL,
    REASON_STOP_LOSS,
    REASON_TAKE_PROFIT,
    REASON_TRAILING_STOP,
    STATUS_BAD_BAR,
    STATUS_OK,
    STATUS_OUT_OF_ORDER,
    Config,
    State,
)

DAY_MS = 86_400_000

# Compilation flags. The kernel allocates nothing, so it is compiled without Numba's reference
# counting (``_nrt=False``): with it, every call would pay atomic increments and decrements of
# the fill array. ``error_model="numpy"`` drops the ZeroDivisionError checks (no division here
# can see a zero: prices are checked positive first). The helpers are inlined into
# :func:`advance_nb`, and :func:`advance_nb` into the backtest loop (itself compiled without
# reference counting, see :mod:`research.kernels.backtest`) and into :func:`step_nb`, at Numba
# IR level: the loop then holds the account's values in registers from bar to bar.
_KERNEL = {"cache": True, "_nrt": False, "error_model": "numpy"}
_INLINED = dict(_KERNEL, inline="always")


@njit(**_INLINED)
def _beyond(d, x, y):
    """The one of ``x`` and ``y`` further in direction ``d``: ``max(x, y)`` for ``d = 1``,
    ``min(x, y)`` for ``d = -1`` (``x`` on a tie or a ``nan``, as Python's ``max``)."""
    return y if d * y > d * x else x


@njit(**_INLINED)
def _trade(cash, position, entry, extreme, cfg, fills, k, delta, mid_price, reason, at_open):
    """Trade ``delta`` units at ``mid_price`` plus slippage and write fill ``k`` (all but its
    bar, which :func:`advance_nb` stamps).

    Returns ``(k + 1, cash, position, entry, extreme)`` after the trade.
    """
    side = 1 if delta > 0.0 else -1
    price = mid_price * (1.0 + side * cfg.slippage_bps * 1e-4)
    size = abs(delta)
    fee = size * price * cfg.fee_rate
    pnl = -fee
    new_position = position + delta
    if position != 0.0 and (position > 0.0) != (delta > 0.0):
        closed = min(size, abs(position))
        direction = 1.0 if position > 0.0 else -1.0
        pnl += (price - entry) * closed * direction
        if abs(new_position) <= 1e-12 * max(abs(position), 1.0):
            new_position = 0.0
    if new_position == 0.0:
        entry = np.nan
        extreme = np.nan
    elif position == 0.0 or (position > 0.0) != (new_position > 0.0):
        entry = price
        extreme = mid_price
    elif abs(new_position) > abs(position):
        entry = (entry * abs(position) + price * size) / abs(new_position)
    cash = cash - delta * price - fee
    fill = fills[k]
    fill.side = side
    fill.reason = reason
    fill.at_open = at_open
    fill.size = size
    fill.price = price
    fill.fee = fee
    fill.realized_pnl = pnl
    fill.cash_after = cash
    fill.position_after = new_position
    return k + 1, cash, new_position, entry, extreme


@njit(**_INLINED)
def _units_for_level(cash, position, cfg, level, mid_price):
    """Units held after trading to ``level`` at ``mid_price`` (see module docstring, step 2),
    and the equity marked at the slipped price."""
    fee_factor = 1.0 + cfg.fee_rate
    unslipped = level * (cash + position * mid_price) / (mid_price * fee_factor)
    side = 1.0 if unslipped > position else -1.0  # the side of the coming fill
    price = mid_price * (1.0 + side * cfg.slippage_bps * 1e-4)
    equity = cash + position * price
    return level * equity / (price * (1.0 + cfg.fee_rate)), equity


@njit(**_INLINED)
def _fill_pending(cash, position, entry, extreme, level, reason, cfg, fills, k, open_price):
    """Step 2: trade to the pending ``level`` at the open.

    Returns ``(k, cash, position, entry, extreme, ordered)``: the account after the fills and
    the level now ordered (``0.0`` when ruin prevented opening).
    """
    if position != 0.0 and (level == 0.0 or (level > 0.0) != (position > 0.0)):
        k, cash, position, entry, extreme = _trade(
            cash, position, entry, extreme, cfg, fills, k, -position, open_price, reason, True
        )
    if level != 0.0:
        units, equity = _units_for_level(cash, position, cfg, level, open_price)
        if equity <= 0.0:  # bankrupt: close what is left, open nothing
            if position != 0.0:
                k, cash, position, entry, extreme = _trade(
                    cash,
                    position,
                    entry,
                    extreme,
                    cfg,
                    fills,
                    k,
                    -position,
                    open_price,
                    reason,
                    True,
                )
            return k, cash, position, entry, extreme, 0.0
        delta = units - position
        if delta != 0.0:
            k, cash, position, entry, extreme = _trade(
                cash, position, entry, extreme, cfg, fills, k, delta, open_price, reason, True
            )
    return k, cash, position, entry, extreme, level


@njit(**_INLINED)
def _stop_level(d, cfg, entry, extreme):
    """The stop of a position in direction ``d``: ``(level, reason)``, the tighter of the
    stop-loss and the trailing stop (``nan`` when both are disabled)."""
    level = entry * (1.0 - d * cfg.stop_loss)  # nan when disabled
    trail_level = extreme * (1.0 - d * cfg.trailing_stop)
    if not math.isnan(trail_level) and not d * trail_level <= d * level:  # tighter, or alone
        return trail_level, REASON_TRAILING_STOP
    return level, REASON_STOP_LOSS


@njit(**_INLINED)
def _exit_price(d, cfg, entry, extreme, open_price, high, low):
    """Step 3 for a position in direction ``d``: ``(price, reason)`` of its protective exit,
    or ``(nan, REASON_SIGNAL)``. A disabled level is ``nan``, which no comparison reaches."""
    stop_level, stop_reason = _stop_level(d, cfg, entry, extreme)
    target_level = entry * (1.0 + d * cfg.take_profit)  # nan when disabled
    adverse = low if d > 0.0 else high  # the bar's price furthest against the position
    favourable = high if d > 0.0 else low
    if d * open_price <= d * stop_level:  # the open gapped through the stop
        return open_price, stop_reason
    if d * open_price >= d * target_level:  # ... through the take-profit: it fills first
        return open_price, REASON_TAKE_PROFIT
    if d * adverse <= d * stop_level:  # intrabar; also when the take-profit was reachable
        return stop_level, stop_reason
    if d * favourable >= d * target_level:
        return target_level, REASON_TAKE_PROFIT
    return np.nan, REASON_SIGNAL


@njit(**_INLINED)
def _protective_exit(
    cash, position, entry, extreme, ordered, stopped, cfg, fills, k, open_price, high, low
):
    """Step 3 of the module docstring.

    Returns ``(k, cash, position, entry, extreme, ordered, stopped)``.
    """
    if position == 0.0:
        return k, cash, position, entry, extreme, ordered, stopped
    d = 1.0 if position > 0.0 else -1.0
    extreme = _beyond(d, extreme, open_price)
    exit_price, reason = _exit_price(d, cfg, entry, extreme, open_price, high, low)
    if math.isnan(exit_price):
        return k, cash, position, entry, extreme, ordered, stopped
    k, cash, position, entry, extreme = _trade(
        cash,
        position,
        entry,
        extreme,
        cfg,
        fills,
        k,
        -position,
        exit_price,
        reason,
        exit_price == open_price,
    )
    return k, cash, position, entry, extreme, 0.0, ordered


@njit(**_INLINED)
def _bar_status(last_ts, ts, open_price, high, low, close):
    """``STATUS_OK``, or why the bar cannot be processed (see the module docstring)."""
    if ts <= last_ts:
        return STATUS_OUT_OF_ORDER
    if not (open_price > 0.0 and low > 0.0 and math.isfinite(high) and math.isfinite(close)):
        return STATUS_BAD_BAR
    if not (high >= max(low, open_price, close) and low <= min(open_price, close)):
        return STATUS_BAD_BAR
    return STATUS_OK


@njit(**_INLINED)
def _risk_halt(cfg, halt, equity, peak, day_start_equity):
    """Step 4's risk limits: the halt code after this close (a disabled limit is ``nan``,
    which no equity reaches)."""
    if halt != HALT_MAX_DRAWDOWN and equity <= peak * (1.0 - cfg.max_drawdown):
        return float(HALT_MAX_DRAWDOWN)
    if halt == HALT_NONE and equity <= day_start_equity * (1.0 - cfg.daily_loss_limit):
        return float(HALT_DAILY_LOSS)
    return halt


@njit(**_INLINED)
def _decide(cfg, target, stopped, halt):
    """Step 5: ``(level, reason, stopped)``, the level the account should hold from the next
    open, the reason of an order to it, and the stopped target still held."""
    level = 0.0 if math.isnan(target) else target
    level = min(max(level, -cfg.max_position), cfg.max_position)
    if not math.isnan(stopped):
        if level == stopped:
            level = 0.0
        else:
            stopped = np.nan
    if halt == HALT_NONE:
        return level, float(REASON_SIGNAL), stopped
    reason = REASON_MAX_DRAWDOWN if halt == HALT_MAX_DRAWDOWN else REASON_DAILY_LOSS
    return 0.0, float(reason), stopped


@njit(**_INLINED)
def advance_nb(st, cfg, stops_on, limits_on, ts, open_price, high, low, close, target, fills, k):
    """The execution function: advance the account ``st`` by one bar.

    Parameters
    ----------
    st : State
        The account after the previous bar.
    cfg : Config
        Costs, stops and limits.
    stops_on, limits_on : True or None
        ``True`` runs step 3 (protective exits) and the risk-limit checks of step 4 as
        configured; ``None`` compiles them out, which is only correct when ``cfg`` disables
        every stop, respectively every limit (see
        :func:`~research.kernels.records.feature_switches`).
    ts : int
        The bar's close time, ms UTC; must be greater than ``st.last_ts``.
    open_price, high, low, close : float
        The bar's prices.
    target : float
        The strategy's target level decided at this bar's close (``nan`` = flat).
    fills : ndarray of FILL_DTYPE, at least ``k + MAX_FILLS_PER_BAR`` long
        Output: this bar's fills (the open fill(s) first, then any protective exit), from
        record ``k`` on.
    k : int
        First free fill record.

    Returns
    -------
    k : int
        The first free fill record after this bar's fills (``k`` plus 0 to 3), or a negative
        ``STATUS_*`` code.
    st : State
        The account after the bar; ``st`` itself with a negative status.
    """
    status = _bar_status(st.last_ts, ts, open_price, high, low, close)
    if status != STATUS_OK:
        return status, st
    first = k
    cash, position, entry, extreme = st.cash, st.position, st.entry_price, st.trail_extreme
    ordered, stopped, halt = st.ordered_target, st.stopped_target, st.halt
    # 1. day roll (the division only runs when the bar leaves the stored day)
    day, day_start_equity = st.day, st.day_start_equity
    day_start = day * DAY_MS  # exact: integers below 2**53
    if not day_start <= float(ts - 1) < day_start + DAY_MS:
        day = float((ts - 1) // DAY_MS)
        day_start_equity = st.equity
        if halt == HALT_DAILY_LOSS:
            halt = float(HALT_NONE)
    # 2. open fill
    if not math.isnan(st.pending_target):
        k, cash, position, entry, extreme, ordered = _fill_pending(
            cash,
            position,
            entry,
            extreme,
            st.pending_target,
            st.pending_reason,
            cfg,
            fills,
            k,
            open_price,
        )
    # 3. protective exits (compiled out with stops_on=None; the trailing extreme is still
    # carried past the open at step 4)
    if stops_on is not None:
        k, cash, position, entry, extreme, ordered, stopped = _protective_exit(
            cash, position, entry, extreme, ordered, stopped, cfg, fills, k, open_price, high, low
        )
    for j in range(first, k):  # the bar of this bar's fills
        fills[j].bar = int(st.bars)
        fills[j].bar_ts = ts
    # 4. close: mark to market, trailing extreme, risk limits
    equity = cash + position * close
    peak = max(st.peak_equity, equity)
    if position > 0.0:
        extreme = max(extreme, high)
    elif position < 0.0:
        extreme = min(extreme, low)
    if limits_on is not None:  # compiled out with limits_on=None
        halt = _risk_halt(cfg, halt, equity, peak, day_start_equity)
    # 5. decision
    level, reason, stopped = _decide(cfg, target, stopped, halt)
    pending, pending_reason = np.nan, st.pending_reason
    if level != ordered:  # queued for the next open
        pending, pending_reason = level, reason
    return k, State(
        cash,
        position,
        entry,
        extreme,
        pending,
        pending_reason,
        ordered,
        stopped,
        day,
        day_start_equity,
        peak,
        halt,
        equity,
        float(ts),
        st.bars + 1.0,
    )


def step(
    state: State,
    config: Config,
    ts: int,
    open_price: float,
    high: float,
    low: float,
    close: float,
    target: float,
    fills: np.ndarray,
) -> tuple[int, State]:
    """Advance ``state`` by one bar: :func:`advance_nb` with every step compiled in; the
    runner's entry point.

    Parameters
    ----------
    state : State
        The account (start from :func:`~research.kernels.records.new_state`).
    config : Config
        Costs, stops and risk limits (:func:`~research.kernels.records.make_config`).
    ts, open_price, high, low, close, target
        As for :func:`advance_nb`.
    fills : ndarray of FILL_DTYPE, at least ``MAX_FILLS_PER_BAR`` long
        Output: this bar's fills, from record 0 on.

    Returns
    -------
    n_fills : int
        Number of fills written (0 to 3), or a negative ``STATUS_*`` code, in which case the
        state is unchanged.
    state : State
        The account after the bar.
    """
    n_fills, values = step_nb(
        tuple(state), tuple(config), ts, open_price, high, low, close, target, fills
    )
    return n_fills, State._make(values)


@njit(**_KERNEL)
def step_nb(state, config, ts, open_price, high, low, close, target, fills):
    """:func:`step` on plain tuples: ``state`` and ``config`` are the values of a
    :class:`~research.kernels.records.State` and a :class:`~research.kernels.records.Config`,
    and so is the state returned. Numba's dispatcher types a plain tuple of floats in C and
    boxes one several times faster than a named tuple (about 1 µs a call against 10)."""
    n_fills, st = advance_nb(
        State(*state),
        Config(*config),
        True,
        True,
        ts,
        open_price,
        high,
        low,
        close,
        target,
        fills,
        0,
    )
    return n_fills, st[:]


def step_span(
    state: State,
    config: Config,
    ts: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    target: np.ndarray,
    states: np.ndarray,
    statuses: np.ndarray,
    fills: np.ndarray,
) -> tuple[int, int]:
    """:func:`step` on each bar of a span in turn, keeping every bar's state and fills: the
    runner's replay entry point (bar ``i`` gets exactly what ``step`` would give it, from the
    state ``step`` left after bar ``i - 1``).

    Parameters
    ----------
    state, config
        As for :func:`step`: the account before ``ts[0]``.
    ts, open_, high, low, close, target : ndarray, shape (n,)
        The bars and the strategy's target decided at each bar's close.
    states : ndarray of float64, shape (n, len(State._fields))
        Output: row ``i`` is the state after bar ``i`` (the state before it when the bar was
        rejected, as :func:`step` leaves it).
    statuses : ndarray of int64, shape (n,)
        Output: what :func:`step` returned for bar ``i``: its number of fills, or
        ``STATUS_BAD_BAR``.
    fills : ndarray of FILL_DTYPE, at least ``MAX_FILLS_PER_BAR * n`` long
        Output: the span's fills in bar order (bar ``i``'s are the ``statuses[i]`` records after
        those of the bars before it).

    Returns
    -------
    processed : int
        Bars processed: ``n``, or the index of the first bar whose close time is not after the
        state's last one (``STATUS_OUT_OF_ORDER``: that bar and the later ones are untouched).
    n_fills : int
        Fill records written.
    """
    return step_span_nb(
        tuple(state), tuple(config), ts, open_, high, low, close, target, states, statuses, fills
    )


@njit(**_KERNEL)
def step_span_nb(state, config, ts, open_, high, low, close, target, states, statuses, fills):
    """:func:`step_span` on plain tuples (see :func:`step_nb`)."""
    st = State(*state)
    cfg = Config(*config)
    k = 0
    for i in range(len(ts)):
        end, st = advance_nb(
            st, cfg, True, True, ts[i], open_[i], high[i], low[i], close[i], target[i], fills, k
        )
        if end == STATUS_OUT_OF_ORDER:
            return i, k
        if end < 0:
            statuses[i] = end
        else:
            statuses[i] = end - k
            k = end
        values = st[:]
        for j in range(len(values)):
            states[i, j] = values[j]
    return len(ts), k
