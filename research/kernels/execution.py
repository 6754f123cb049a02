"""The one execution model: (state, target, bar, costs) -> (new state, fills).

:func:`step_nb` is the single function that turns a strategy's target into virtual fills. The
backtest kernel loops it over history; the paper-trading runner calls it for each live bar with
the persisted state. Fees, slippage, stops and risk limits live here and nowhere else, so the
backtest and the runner cannot disagree about a fill (docs/architecture.md §3).

State, configuration and fills are flat float64 arrays (Numba-friendly and trivially
persisted); the ``S_*``, ``C_*`` and ``F_*`` constants name their slots.

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

The function never raises; it returns the number of fills written, or a negative status.

**Compiled-out steps.** Step 3 and the risk-limit checks of step 4 are no-ops when every stop,
respectively every risk limit, is disabled (``nan``). :func:`advance_nb` takes two switches,
``stops_on`` and ``limits_on``; passing ``None`` (instead of ``True``) for one of them makes
Numba compile that step out of the loop, which a backtest without stops or limits spends
about a fifth of its time on. It is the same function, and the result is the same, bit for
bit, state included (tested): the trailing extreme a skipped step 3 would have moved to the
open is moved past it at step 4 anyway, since a valid bar's high (low) is at least (most) its
open. :func:`feature_switches` picks the switches from a configuration; :func:`step_nb`, the
runner's entry, always passes ``True``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# ---- state vector slots
S_CASH = 0
S_POSITION = 1  # units of base asset, signed
S_ENTRY_PRICE = 2  # average entry price of the open position (nan when flat)
S_TRAIL_EXTREME = 3  # highest (long) / lowest (short) price since entry
S_PENDING_TARGET = 4  # level to trade to at the next open (nan: nothing pending)
S_PENDING_REASON = 5  # REASON_* of the pending order
S_ORDERED_TARGET = 6  # level last ordered (the position's nominal level)
S_STOPPED_TARGET = 7  # target that a protective exit closed (nan: none)
S_DAY = 8  # UTC day index of the last processed bar
S_DAY_START_EQUITY = 9
S_PEAK_EQUITY = 10
S_HALT = 11  # HALT_* code
S_EQUITY = 12  # equity at the last processed close
S_LAST_TS = 13  # close ts of the last processed bar
S_BARS = 14  # bars processed
N_STATE = 15

# ---- configuration slots
C_FEE_RATE = 0
C_SLIPPAGE_BPS = 1
C_STOP_LOSS = 2
C_TAKE_PROFIT = 3
C_TRAILING_STOP = 4
C_MAX_POSITION = 5
C_DAILY_LOSS_LIMIT = 6
C_MAX_DRAWDOWN = 7
N_CONFIG = 8

# ---- fill record fields
F_SIDE = 0  # +1 buy, -1 sell
F_SIZE = 1  # units, positive
F_PRICE = 2  # fill price including slippage
F_FEE = 3
F_REASON = 4  # REASON_*
F_REALIZED_PNL = 5  # price P&L of the closed part minus this fill's fee
F_AT_OPEN = 6  # 1.0 if filled at the bar's open, 0.0 if intrabar
F_CASH_AFTER = 7
F_POSITION_AFTER = 8
N_FILL = 9
MAX_FILLS_PER_BAR = 3

# ---- fill reasons
REASON_SIGNAL = 0
REASON_STOP_LOSS = 1
REASON_TAKE_PROFIT = 2
REASON_TRAILING_STOP = 3
REASON_DAILY_LOSS = 4
REASON_MAX_DRAWDOWN = 5
REASON_NAMES = ("signal", "stop_loss", "take_profit", "trailing_stop", "daily_loss", "max_drawdown")

# ---- halt codes
HALT_NONE = 0
HALT_DAILY_LOSS = 1
HALT_MAX_DRAWDOWN = 2

# ---- status codes
STATUS_OK = 0
STATUS_BAD_BAR = -1  # non-finite or non-positive price, or high/low inconsistent
STATUS_OUT_OF_ORDER = -2  # bar ts not after the last processed bar

DAY_MS = 86_400_000

# Compilation flags. The kernel allocates nothing, so it is compiled without Numba's reference
# counting (``_nrt=False``): with it, every call would pay atomic increments and decrements of
# the state, config and fill arrays (about two thirds of the per-bar time). ``error_model=
# "numpy"`` drops the ZeroDivisionError checks (no division here can see a zero: prices are
# checked positive first). The helpers are inlined into :func:`step_nb`, and :func:`step_nb`
# into the backtest loop (itself compiled without reference counting, see
# :mod:`research.kernels.backtest`), at Numba IR level; called from Python (the runner),
# :func:`step_nb` is an ordinary compiled function.
_KERNEL = {"cache": True, "_nrt": False, "error_model": "numpy"}
_INLINED = dict(_KERNEL, inline="always")


def new_state(initial_cash: float) -> np.ndarray:
    """Return the state vector of a fresh, flat account holding ``initial_cash``."""
    state = np.full(N_STATE, np.nan)
    state[S_CASH] = initial_cash
    state[S_POSITION] = 0.0
    state[S_ORDERED_TARGET] = 0.0
    state[S_DAY] = -1.0
    state[S_DAY_START_EQUITY] = initial_cash
    state[S_PEAK_EQUITY] = initial_cash
    state[S_HALT] = HALT_NONE
    state[S_EQUITY] = initial_cash
    state[S_LAST_TS] = -1.0
    state[S_BARS] = 0.0
    return state


def make_config(costs, stops, risk) -> np.ndarray:
    """Pack :class:`~research.types.Costs`, ``Stops`` and ``RiskLimits`` into a config vector.

    Raises
    ------
    ValueError
        If a value is out of range; the message names the field and its valid range.
    """
    config = np.empty(N_CONFIG)
    config[C_FEE_RATE] = _within(costs.fee_rate, "costs.fee_rate", 0.0, 0.5)
    config[C_SLIPPAGE_BPS] = _within(costs.slippage_bps, "costs.slippage_bps", 0.0, 5000.0)
    config[C_STOP_LOSS] = _fraction_or_nan(stops.stop_loss, "stops.stop_loss", 1.0)
    config[C_TAKE_PROFIT] = _fraction_or_nan(stops.take_profit, "stops.take_profit", 100.0)
    config[C_TRAILING_STOP] = _fraction_or_nan(stops.trailing_stop, "stops.trailing_stop", 1.0)
    config[C_MAX_POSITION] = _within(risk.max_position, "risk.max_position", 0.0, 100.0)
    config[C_DAILY_LOSS_LIMIT] = _fraction_or_nan(risk.daily_loss_limit, "risk.daily_loss_limit", 1.0)
    config[C_MAX_DRAWDOWN] = _fraction_or_nan(risk.max_drawdown, "risk.max_drawdown", 1.0)
    return config


def feature_switches(config: np.ndarray) -> tuple[bool | None, bool | None]:
    """The ``(stops_on, limits_on)`` switches of :func:`advance_nb` for ``config``: ``None``
    (compile the step out) when every stop, respectively every risk limit, is ``nan``, else
    ``True``."""
    stops = config[[C_STOP_LOSS, C_TAKE_PROFIT, C_TRAILING_STOP]]
    limits = config[[C_DAILY_LOSS_LIMIT, C_MAX_DRAWDOWN]]
    return (None if np.isnan(stops).all() else True,
            None if np.isnan(limits).all() else True)


def _within(value, name: str, low: float, high: float) -> float:
    value = float(value)
    if not low <= value <= high:  # also rejects nan
        raise ValueError(f"{name} must be a number within [{low}, {high}], got {value}")
    return value


def _fraction_or_nan(value, name: str, high: float) -> float:
    value = float(value)
    if math.isnan(value) or 0.0 < value <= high:
        return value
    raise ValueError(f"{name} must be within (0, {high}] or nan to disable it, got {value}")


# ---- the state and the configuration as tuples of scalars
#
# The logic below works on the state as a tuple of 15 floats in ``S_*`` order (``st``) and the
# configuration as a tuple of 8 floats in ``C_*`` order (``cfg``): values, not memory, so that
# a loop over bars keeps the whole account in registers instead of storing it to an array and
# reading it back at every bar (about half the per-bar time). :func:`step_nb` reads the state
# array into such a tuple, advances it and writes it back; the backtest loop reads it once,
# advances it bar after bar with the same :func:`advance_nb`, and writes it back at the end.

assert (S_CASH, S_POSITION, S_ENTRY_PRICE, S_TRAIL_EXTREME, S_PENDING_TARGET, S_PENDING_REASON,
        S_ORDERED_TARGET, S_STOPPED_TARGET, S_DAY, S_DAY_START_EQUITY, S_PEAK_EQUITY, S_HALT,
        S_EQUITY, S_LAST_TS, S_BARS) == tuple(range(N_STATE))
assert (C_FEE_RATE, C_SLIPPAGE_BPS, C_STOP_LOSS, C_TAKE_PROFIT, C_TRAILING_STOP, C_MAX_POSITION,
        C_DAILY_LOSS_LIMIT, C_MAX_DRAWDOWN) == tuple(range(N_CONFIG))


@njit(**_INLINED)
def state_tuple_nb(state):
    """The state array (``S_*`` slots) as a tuple of its 15 values."""
    return (state[0], state[1], state[2], state[3], state[4], state[5], state[6], state[7],
            state[8], state[9], state[10], state[11], state[12], state[13], state[14])


@njit(**_INLINED)
def store_state_nb(state, st):
    """Write the state tuple ``st`` into the state array."""
    for slot in range(N_STATE):
        state[slot] = st[slot]


@njit(**_INLINED)
def config_tuple_nb(config):
    """The configuration array (``C_*`` slots) as a tuple of its 8 values."""
    return (config[0], config[1], config[2], config[3], config[4], config[5], config[6],
            config[7])


@njit(**_INLINED)
def _write_fill(fills, k, side, size, price, fee, reason, pnl, at_open, cash, position):
    fills[k, F_SIDE] = side
    fills[k, F_SIZE] = size
    fills[k, F_PRICE] = price
    fills[k, F_FEE] = fee
    fills[k, F_REASON] = reason
    fills[k, F_REALIZED_PNL] = pnl
    fills[k, F_AT_OPEN] = at_open
    fills[k, F_CASH_AFTER] = cash
    fills[k, F_POSITION_AFTER] = position


@njit(**_INLINED)
def _trade(cash, position, entry, extreme, cfg, fills, k, delta, mid_price, reason, at_open):
    """Trade ``delta`` units at ``mid_price`` plus slippage and write fill row ``k``.

    Returns ``(k + 1, cash, position, entry, extreme)`` after the trade.
    """
    side = 1.0 if delta > 0.0 else -1.0
    price = mid_price * (1.0 + side * cfg[C_SLIPPAGE_BPS] * 1e-4)
    size = abs(delta)
    fee = size * price * cfg[C_FEE_RATE]
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
    _write_fill(fills, k, side, size, price, fee, reason, pnl, at_open, cash, new_position)
    return k + 1, cash, new_position, entry, extreme


@njit(**_INLINED)
def _units_for_level(cash, position, cfg, level, mid_price):
    """Units held after trading to ``level`` at ``mid_price`` (see module docstring, step 2),
    and the equity marked at the slipped price."""
    fee_factor = 1.0 + cfg[C_FEE_RATE]
    unslipped = level * (cash + position * mid_price) / (mid_price * fee_factor)
    side = 1.0 if unslipped > position else -1.0  # the side of the coming fill
    price = mid_price * (1.0 + side * cfg[C_SLIPPAGE_BPS] * 1e-4)
    equity = cash + position * price
    return level * equity / (price * (1.0 + cfg[C_FEE_RATE])), equity


@njit(**_INLINED)
def _fill_pending(cash, position, entry, extreme, level, reason, cfg, fills, k, open_price):
    """Trade to the pending ``level`` at the open.

    Returns ``(k, cash, position, entry, extreme, ordered)``: the account after the fills and
    the level now ordered (``0.0`` when ruin prevented opening).
    """
    if position != 0.0 and (level == 0.0 or (level > 0.0) != (position > 0.0)):
        k, cash, position, entry, extreme = _trade(cash, position, entry, extreme, cfg, fills, k,
                                                   -position, open_price, reason, 1.0)
    if level != 0.0:
        units, equity = _units_for_level(cash, position, cfg, level, open_price)
        if equity <= 0.0:  # bankrupt: close what is left, open nothing
            if position != 0.0:
                k, cash, position, entry, extreme = _trade(
                    cash, position, entry, extreme, cfg, fills, k, -position, open_price, reason,
                    1.0)
            return k, cash, position, entry, extreme, 0.0
        delta = units - position
        if delta != 0.0:
            k, cash, position, entry, extreme = _trade(cash, position, entry, extreme, cfg, fills,
                                                       k, delta, open_price, reason, 1.0)
    return k, cash, position, entry, extreme, level


@njit(**_INLINED)
def _protective_exit(cash, position, entry, extreme, ordered, stopped, cfg, fills, k, open_price,
                     high, low):
    """Step 3 of the module docstring.

    Returns ``(k, cash, position, entry, extreme, ordered, stopped)``.
    """
    if position == 0.0:
        return k, cash, position, entry, extreme, ordered, stopped
    stop_loss = cfg[C_STOP_LOSS]
    take_profit = cfg[C_TAKE_PROFIT]
    trailing = cfg[C_TRAILING_STOP]
    long = position > 0.0
    if long:
        extreme = max(extreme, open_price)
    else:
        extreme = min(extreme, open_price)
    if math.isnan(stop_loss) and math.isnan(take_profit) and math.isnan(trailing):
        return k, cash, position, entry, extreme, ordered, stopped
    stop_level = np.nan
    stop_reason = REASON_STOP_LOSS
    if not math.isnan(stop_loss):
        stop_level = entry * (1.0 - stop_loss) if long else entry * (1.0 + stop_loss)
    if not math.isnan(trailing):
        trail_level = extreme * (1.0 - trailing) if long else extreme * (1.0 + trailing)
        if math.isnan(stop_level) or (long and trail_level > stop_level) or (
            not long and trail_level < stop_level
        ):
            stop_level = trail_level
            stop_reason = REASON_TRAILING_STOP
    target_level = np.nan
    if not math.isnan(take_profit):
        target_level = entry * (1.0 + take_profit) if long else entry * (1.0 - take_profit)
    has_stop = not math.isnan(stop_level)
    has_target = not math.isnan(target_level)
    exit_price = np.nan
    exit_reason = REASON_SIGNAL
    if has_stop and (
        (long and open_price <= stop_level) or (not long and open_price >= stop_level)
    ):
        exit_price = open_price  # the open gapped through the stop
        exit_reason = stop_reason
    elif has_target and (
        (long and open_price >= target_level) or (not long and open_price <= target_level)
    ):
        exit_price = open_price  # the open gapped through the take-profit: it fills first
        exit_reason = REASON_TAKE_PROFIT
    elif has_stop and ((long and low <= stop_level) or (not long and high >= stop_level)):
        exit_price = stop_level  # intrabar; also when the take-profit was reachable (worse case)
        exit_reason = stop_reason
    elif has_target and ((long and high >= target_level) or (not long and low <= target_level)):
        exit_price = target_level
        exit_reason = REASON_TAKE_PROFIT
    if math.isnan(exit_price):
        return k, cash, position, entry, extreme, ordered, stopped
    at_open = 1.0 if exit_price == open_price else 0.0
    k, cash, position, entry, extreme = _trade(cash, position, entry, extreme, cfg, fills, k,
                                               -position, exit_price, exit_reason, at_open)
    return k, cash, position, entry, extreme, 0.0, ordered


@njit(**_INLINED)
def advance_nb(st, cfg, stops_on, limits_on, ts, open_price, high, low, close, target, fills,
               k):
    """The execution function on values: advance the state tuple ``st`` by one bar.

    Parameters
    ----------
    st : tuple of 15 floats
        Account state in ``S_*`` order (see :func:`state_tuple_nb`).
    cfg : tuple of 8 floats
        Costs, stops and limits in ``C_*`` order (see :func:`config_tuple_nb`).
    stops_on, limits_on : True or None
        ``True`` runs step 3 (protective exits) and the risk-limit checks of step 4 as
        configured; ``None`` compiles them out, which is only correct when ``cfg`` disables
        every stop, respectively every limit (see :func:`feature_switches`).
    ts, open_price, high, low, close, target
        As for :func:`step_nb`.
    fills : ndarray, shape (at least k + MAX_FILLS_PER_BAR, N_FILL) or wider
        Output: this bar's fill records, written from row ``k`` on.
    k : int
        First free fill row.

    Returns
    -------
    k : int
        The first free fill row after this bar's fills (``k`` plus 0 to 3), or a negative
        ``STATUS_*`` code.
    st : tuple
        The state after the bar; ``st`` unchanged with a negative status.
    """
    if ts <= st[S_LAST_TS]:
        return STATUS_OUT_OF_ORDER, st
    prices_ok = open_price > 0.0 and low > 0.0 and math.isfinite(high) and math.isfinite(close)
    if not prices_ok or not (
        high >= low and high >= open_price and high >= close and low <= open_price and low <= close
    ):
        return STATUS_BAD_BAR, st
    (cash, position, entry, extreme, pending, pending_reason, ordered, stopped, day,
     day_start_equity, peak, halt, equity, _, bars) = st  # S_* order (asserted above)
    # 1. day roll (the division only runs when the bar leaves the stored day)
    day_start = day * DAY_MS  # exact: integers below 2**53
    if not day_start <= float(ts - 1) < day_start + DAY_MS:
        day = float((ts - 1) // DAY_MS)
        day_start_equity = equity
        if halt == HALT_DAILY_LOSS:
            halt = HALT_NONE
    # 2. open fill
    if not math.isnan(pending):
        k, cash, position, entry, extreme, ordered = _fill_pending(
            cash, position, entry, extreme, pending, pending_reason, cfg, fills, k, open_price)
        pending = np.nan
    # 3. protective exits (compiled out with stops_on=None; the trailing extreme is still
    # carried past the open at step 4)
    if stops_on is not None:
        k, cash, position, entry, extreme, ordered, stopped = _protective_exit(
            cash, position, entry, extreme, ordered, stopped, cfg, fills, k, open_price, high,
            low)
    # 4. close: mark to market, trailing extreme, risk limits
    equity = cash + position * close
    if equity > peak:
        peak = equity
    if position > 0.0:
        extreme = max(extreme, high)
    elif position < 0.0:
        extreme = min(extreme, low)
    halt_reason = -1.0
    if limits_on is not None:  # compiled out with limits_on=None
        max_drawdown = cfg[C_MAX_DRAWDOWN]
        daily_limit = cfg[C_DAILY_LOSS_LIMIT]
        if halt != HALT_MAX_DRAWDOWN and not math.isnan(max_drawdown):
            if equity <= peak * (1.0 - max_drawdown):
                halt = HALT_MAX_DRAWDOWN
                halt_reason = REASON_MAX_DRAWDOWN
        if halt == HALT_NONE and not math.isnan(daily_limit):
            if equity <= day_start_equity * (1.0 - daily_limit):
                halt = HALT_DAILY_LOSS
                halt_reason = REASON_DAILY_LOSS
    # 5. decision
    level = 0.0 if math.isnan(target) else target
    max_position = cfg[C_MAX_POSITION]
    if level > max_position:
        level = max_position
    elif level < -max_position:
        level = -max_position
    if not math.isnan(stopped):
        if level == stopped:
            level = 0.0
        else:
            stopped = np.nan
    reason = REASON_SIGNAL
    if halt != HALT_NONE:
        level = 0.0
        if halt_reason >= 0.0:
            reason = halt_reason
        elif halt == HALT_MAX_DRAWDOWN:
            reason = REASON_MAX_DRAWDOWN
        else:
            reason = REASON_DAILY_LOSS
    if level != ordered:
        pending = level
        pending_reason = reason
    return k, (cash, position, entry, extreme, pending, pending_reason, ordered, stopped, day,
               day_start_equity, peak, halt, equity, float(ts), bars + 1.0)


@njit(**_INLINED)
def step_nb(state, config, ts, open_price, high, low, close, target, fills):
    """Advance ``state`` by one bar and write the bar's fills; see the module docstring.

    The runner's entry point: :func:`advance_nb` on the state and configuration arrays.

    Parameters
    ----------
    state : ndarray, shape (N_STATE,)
        Account state, updated in place (see ``S_*``; start from :func:`new_state`).
    config : ndarray, shape (N_CONFIG,)
        Costs, stops and risk limits (see :func:`make_config`).
    ts : int
        The bar's close time, ms UTC; must be greater than the last processed bar's.
    open_price, high, low, close : float
        The bar's prices.
    target : float
        The strategy's target level decided at this bar's close (``nan`` = flat).
    fills : ndarray, shape (MAX_FILLS_PER_BAR, N_FILL)
        Output: fill records of this bar (the open fill(s) first, then any protective exit).

    Returns
    -------
    int
        Number of fills written (0 to 3), or a negative ``STATUS_*`` code, in which case the
        state is left unchanged. With equity at or below zero (marked at the open) an order
        to a non-zero level closes any position and opens nothing.
    """
    k, st = advance_nb(state_tuple_nb(state), config_tuple_nb(config), True, True, ts,
                       open_price, high, low, close, target, fills, 0)
    if k >= 0:
        store_state_nb(state, st)
    return k
