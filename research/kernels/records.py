"""The execution kernel's records: account state, configuration and fills, by name.

* :class:`State`, the account between two bars, and :class:`Config`, the costs, stops and risk
  limits, are named tuples of floats. Numba keeps a tuple's values in registers, so the
  backtest loop carries the whole account from bar to bar without storing it to memory; the
  runner persists a state as the JSON list of its values (:func:`runner.ledger.encode_state`).
* A fill is a record of :data:`FILL_DTYPE`: the kernel writes them into a numpy structured
  array (:func:`new_fills`), and :func:`fill_columns` decodes such an array into plain
  columns, for the backtest's tables and (through :func:`fill_rows`) for the runner's rows
  alike; the time a fill carries is :func:`fill_times_nb`'s rule.

Pure core: numpy and numba only.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

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

# ---- status codes of the execution function
STATUS_OK = 0
STATUS_BAD_BAR = -1  # non-finite or non-positive price, or high/low inconsistent
STATUS_OUT_OF_ORDER = -2  # bar ts not after the last processed bar

MAX_FILLS_PER_BAR = 3


class State(NamedTuple):
    """An account between two bars: what the execution function carries from one bar to the
    next. Every field is a float (codes and counts too), so that Numba types the tuple as 15
    float64 values; :func:`new_state` makes the state of a fresh account."""

    cash: float
    position: float  #: units of the base asset, signed
    entry_price: float  #: average entry price of the open position (nan when flat)
    trail_extreme: float  #: highest (long) / lowest (short) price since entry
    pending_target: float  #: level to trade to at the next open (nan: nothing pending)
    pending_reason: float  #: ``REASON_*`` of the pending order
    ordered_target: float  #: level last ordered (the position's nominal level)
    stopped_target: float  #: target that a protective exit closed (nan: none)
    day: float  #: UTC day index of the last processed bar
    day_start_equity: float
    peak_equity: float
    halt: float  #: ``HALT_*`` code
    equity: float  #: equity at the last processed close
    last_ts: float  #: close time of the last processed bar, ms UTC (-1: none)
    bars: float  #: bars processed


class Config(NamedTuple):
    """Costs, stops and risk limits of an account, validated by :func:`make_config`; a
    disabled stop or limit is ``nan``."""

    fee_rate: float
    slippage_bps: float
    stop_loss: float
    take_profit: float
    trailing_stop: float
    max_position: float
    daily_loss_limit: float
    max_drawdown: float


#: One fill. ``align=True`` keeps every field on its natural boundary: the kernel stores and
#: numpy sums the float fields in place, as columns of a 2-D array would be.
FILL_DTYPE = np.dtype(
    [
        ("bar", np.int64),  # index of the bar: bars the account processed before it
        ("bar_ts", np.int64),  # close time of the bar, ms UTC
        ("side", np.int8),  # +1 buy, -1 sell
        ("reason", np.int8),  # REASON_*
        ("at_open", np.bool_),  # filled at the bar's open (else intrabar)
        ("size", np.float64),  # units, positive
        ("price", np.float64),  # fill price including slippage
        ("fee", np.float64),
        ("realized_pnl", np.float64),  # price P&L of the closed part minus this fill's fee
        ("cash_after", np.float64),
        ("position_after", np.float64),
    ],
    align=True,
)

#: The columns of :func:`fill_columns`, in order.
FILL_COLUMNS = (
    "ts",
    "bar_ts",
    "side",
    "size",
    "price",
    "fee",
    "reason",
    "realized_pnl",
    "cash_after",
    "position_after",
)
_REASON_NAMES = np.array(REASON_NAMES, dtype=object)


def new_state(initial_cash: float) -> State:
    """The state of a fresh, flat account holding ``initial_cash``."""
    cash = float(initial_cash)
    return State(
        cash=cash,
        position=0.0,
        entry_price=math.nan,
        trail_extreme=math.nan,
        pending_target=math.nan,
        pending_reason=math.nan,
        ordered_target=0.0,
        stopped_target=math.nan,
        day=-1.0,
        day_start_equity=cash,
        peak_equity=cash,
        halt=float(HALT_NONE),
        equity=cash,
        last_ts=-1.0,
        bars=0.0,
    )


def make_config(costs, stops, risk) -> Config:
    """Validate :class:`~research.types.Costs`, ``Stops`` and ``RiskLimits`` into a
    :class:`Config`.

    Raises
    ------
    ValueError
        If a value is out of range; the message names the field and its valid range.
    """
    return Config(
        fee_rate=_within(costs.fee_rate, "costs.fee_rate", 0.0, 0.5),
        slippage_bps=_within(costs.slippage_bps, "costs.slippage_bps", 0.0, 5000.0),
        stop_loss=_fraction_or_nan(stops.stop_loss, "stops.stop_loss", 1.0),
        take_profit=_fraction_or_nan(stops.take_profit, "stops.take_profit", 100.0),
        trailing_stop=_fraction_or_nan(stops.trailing_stop, "stops.trailing_stop", 1.0),
        max_position=_within(risk.max_position, "risk.max_position", 0.0, 100.0),
        daily_loss_limit=_fraction_or_nan(risk.daily_loss_limit, "risk.daily_loss_limit", 1.0),
        max_drawdown=_fraction_or_nan(risk.max_drawdown, "risk.max_drawdown", 1.0),
    )


def feature_switches(config: Config) -> tuple[bool | None, bool | None]:
    """The ``(stops_on, limits_on)`` switches of
    :func:`~research.kernels.execution.advance_nb` for ``config``: ``None`` (compile the step
    out) when every stop, respectively every risk limit, is ``nan``, else ``True``."""
    stops = (config.stop_loss, config.take_profit, config.trailing_stop)
    limits = (config.daily_loss_limit, config.max_drawdown)
    return (
        None if all(map(math.isnan, stops)) else True,
        None if all(map(math.isnan, limits)) else True,
    )


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


def new_fills(rows: int) -> np.ndarray:
    """An uninitialised fill table of ``rows`` records (:data:`FILL_DTYPE`)."""
    return np.empty(rows, dtype=FILL_DTYPE)


@njit(cache=True)
def fill_times_nb(fills, timeframe_ms):
    """The time each fill carries, ms UTC: its bar's open time (``bar_ts - timeframe_ms``) if
    it filled at the open, else (an intrabar stop) the bar's close time ``bar_ts``."""
    out = np.empty(len(fills), dtype=np.int64)
    for j in range(len(fills)):
        fill = fills[j]
        out[j] = fill.bar_ts - timeframe_ms if fill.at_open else fill.bar_ts
    return out


def fill_columns(fills: np.ndarray, timeframe_ms: int) -> dict[str, np.ndarray]:
    """Decode fill records into the columns :data:`FILL_COLUMNS`.

    ``ts`` (:func:`fill_times_nb`) and ``bar_ts`` are int64 ms UTC; ``side`` is ``"buy"`` or
    ``"sell"``, ``reason`` a name of ``REASON_NAMES``; the other columns are float64 as in
    the records.
    """
    return {
        "ts": fill_times_nb(fills, timeframe_ms),
        "bar_ts": fills["bar_ts"],
        "side": np.where(fills["side"] > 0, "buy", "sell"),
        "size": fills["size"],
        "price": fills["price"],
        "fee": fills["fee"],
        "reason": _REASON_NAMES[fills["reason"]],
        "realized_pnl": fills["realized_pnl"],
        "cash_after": fills["cash_after"],
        "position_after": fills["position_after"],
    }


def fill_rows(fills: np.ndarray, timeframe_ms: int) -> list[dict]:
    """The fills as one dict per fill, keyed by :data:`FILL_COLUMNS`, of plain Python values
    (:func:`fill_columns` row by row)."""
    if len(fills) == 0:
        return []
    columns = [column.tolist() for column in fill_columns(fills, timeframe_ms).values()]
    return [dict(zip(FILL_COLUMNS, values)) for values in zip(*columns)]
