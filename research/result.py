"""What one backtest produced: :class:`Result`, and the tables built from the kernel's arrays.

:func:`research.backtest` returns a :class:`Result`; :mod:`research.storage` saves one and
loads it back. Both import this module; it imports neither.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from research.kernels.backtest import account_from_fills_nb
from research.kernels.records import (
    FILL_COLUMNS,
    REASON_NAMES,
    STATUS_BAD_BAR,
    STATUS_OK,
    STATUS_OUT_OF_ORDER,
    fill_columns,
)
from research.kernels.trades import TRADE_DTYPE, round_trips_nb
from research.types import Bars, Costs, RiskLimits, Stops

STATUS_NAMES = {STATUS_OK: "ok", STATUS_BAD_BAR: "bad_bar", STATUS_OUT_OF_ORDER: "out_of_order"}
TRADE_COLUMNS = [
    "entry_time",
    "exit_time",
    "side",
    "size",
    "entry_price",
    "exit_price",
    "fees",
    "pnl",
    "return",
    "exit_reason",
    "duration",
]
_EXIT_REASONS = np.array(REASON_NAMES + ("open",), dtype=object)  # "open": no exit yet


@dataclass(eq=False)
class Result:
    """Everything one backtest produced.

    The kernel's arrays are kept as they came; the pandas tables and series are built from them
    on first access and then kept (a sweep or a benchmark that only reads ``stats`` never pays
    for them). Save one with :func:`research.storage.save_result`.

    Attributes
    ----------
    spec_name : str
        The strategy's registry name.
    params : NamedTuple
        The validated parameters.
    costs, stops, risk : Costs, Stops, RiskLimits
        What the execution function was configured with.
    initial_cash : float
    bars : Bars or None
        The input bars (``None`` for a run loaded from the database).
    target : ndarray
        The strategy's target level per bar, as returned (``nan`` = flat).
    indicators : dict of str to ndarray
        The strategy's indicators over the bars.
    ts : ndarray of int64
        Close time of every bar, ms UTC.
    fill_rows : ndarray of FILL_DTYPE
        The kernel's fill records (see :mod:`research.kernels.records`).
    equity_values : ndarray
        The kernel's equity after each bar's close (``nan`` from a rejected bar on).
    stats : Series
        :func:`research.metrics.compute_stats` over the processed bars and closed trades.
    status : int
        ``0`` if every bar was processed, else the kernel's negative status (``-1`` bad bar,
        ``-2`` out of order); the series are ``nan`` from the offending bar on.
    timeframe_ms : int
        The bar interval the fills and stats were computed with.
    extra : dict
        Free-form details (e.g. where a loaded run came from).
    cash_values, position_values : ndarray or None
        The account after each bar's close; ``None`` (the default) derives them from the fills
        (:func:`~research.kernels.backtest.account_from_fills_nb`: between fills nothing
        changes), which is what the kernel held.
    panes : dict of str to list of str
        The strategy's series by chart pane (``{"price": [...], "rsi": ["rsi"]}``): the pane
        ``"price"`` is drawn over the candles, each other one in a subplot of its own
        (:func:`research.charts.plot_result`). Empty for a run loaded from the database.

    Tables and series (built on first access)
    -----------------------------------------
    fills : DataFrame
        One row per fill: ``ts`` (UTC; the bar's open time for fills at the open, its close
        time for intrabar stop fills), ``bar_ts`` (close time of the bar of the fill), ``side``
        (``buy``/``sell``), ``size`` (units, positive), ``price`` (including slippage), ``fee``,
        ``reason`` (``signal``, ``stop_loss``, ``take_profit``, ``trailing_stop``,
        ``daily_loss``, ``max_drawdown``), ``realized_pnl`` (price P&L of the closed part minus
        this fill's fee), ``cash_after``, ``position_after``. Also available as ``orders``.
    trades : DataFrame
        Round trips, flat to flat (a flip ends one and starts another): ``entry_time``,
        ``exit_time`` (``NaT`` while open), ``side`` (``long``/``short``), ``size`` (units
        entered), ``entry_price``/``exit_price`` (size-weighted averages), ``fees`` (all fills),
        ``pnl`` (net of every fee), ``return`` (``pnl / (entry_price * size)``, a fraction),
        ``exit_reason`` (``open`` while open), ``duration``.
    equity, cash, position : Series
        After each bar's close, on a UTC close-time index (equity marked at the close).
    """

    spec_name: str
    params: Any
    costs: Costs
    stops: Stops
    risk: RiskLimits
    initial_cash: float
    bars: Bars | None
    target: np.ndarray
    indicators: dict
    ts: np.ndarray
    fill_rows: np.ndarray
    equity_values: np.ndarray
    stats: pd.Series
    status: int = STATUS_OK
    timeframe_ms: int = 0
    extra: dict = field(default_factory=dict)
    cash_values: np.ndarray | None = None
    position_values: np.ndarray | None = None
    panes: dict = field(default_factory=dict)

    def _account_from_fills(self) -> None:
        if self.cash_values is None or self.position_values is None:
            self.cash_values, self.position_values = account_from_fills_nb(
                self.fill_rows,
                len(self.ts),
                processed_bars(self.equity_values, self.status),
                float(self.initial_cash),
            )

    @cached_property
    def index(self) -> pd.DatetimeIndex:
        """The bars' close times as a tz-aware UTC index named ``ts``."""
        return utc_index(self.ts)

    @cached_property
    def fills(self) -> pd.DataFrame:
        return fills_frame(self.fill_rows, self.timeframe_ms)

    @cached_property
    def trades(self) -> pd.DataFrame:
        return trades_frame(self.fill_rows, self.timeframe_ms)

    @cached_property
    def equity(self) -> pd.Series:
        # the kernel's arrays belong to this result alone: wrap them rather than copy them
        return pd.Series(self.equity_values, index=self.index, name="equity", copy=False)

    @cached_property
    def cash(self) -> pd.Series:
        self._account_from_fills()
        return pd.Series(self.cash_values, index=self.index, name="cash", copy=False)

    @cached_property
    def position(self) -> pd.Series:
        self._account_from_fills()
        return pd.Series(self.position_values, index=self.index, name="position", copy=False)

    @property
    def orders(self) -> pd.DataFrame:
        """The fills (every order is filled in full at its price)."""
        return self.fills

    @property
    def status_name(self) -> str:
        return STATUS_NAMES.get(self.status, str(self.status))

    def plot(self, **kwargs: Any):
        """Plotly figure: candles with the strategy's series and trades, volume, equity against
        buy and hold, drawdown (:func:`research.charts.plot_result`)."""
        # imported on first use: plotly adds 0.2 s to the first backtest of a process
        from research.charts import plot_result

        return plot_result(self, **kwargs)

    def __repr__(self) -> str:
        final = float(self.stats.get("final_equity", math.nan))
        return (
            f"Result({self.spec_name}, {self.params}, bars={len(self.ts)}, "
            f"trades={len(self.trades)}, final_equity={final:.2f}, "
            f"status={self.status_name})"
        )


def utc_index(ts: np.ndarray) -> pd.DatetimeIndex:
    """Millisecond UTC timestamps as a tz-aware index named ``ts``."""
    return pd.DatetimeIndex(
        pd.to_datetime(np.asarray(ts, dtype=np.int64), unit="ms", utc=True), name="ts"
    )


def fills_frame(fills: np.ndarray, timeframe_ms: int) -> pd.DataFrame:
    """The kernel's fill records as the ``Result.fills`` table (columns of
    :func:`~research.kernels.records.fill_columns`, times as UTC datetimes)."""
    columns = fill_columns(fills, timeframe_ms)
    for name in ("ts", "bar_ts"):
        columns[name] = pd.to_datetime(columns[name], unit="ms", utc=True)
    return pd.DataFrame(columns, columns=list(FILL_COLUMNS))


def trades_frame(fills: np.ndarray, timeframe_ms: int) -> pd.DataFrame:
    """Round trips of the kernel's fill records as the ``Result.trades`` table."""
    rows = round_trips_nb(fills, timeframe_ms) if len(fills) else np.empty(0, TRADE_DTYPE)
    is_open = rows["exit_fill"] < 0
    entry_time = pd.to_datetime(rows["entry_ts"], unit="ms", utc=True)
    exit_time = pd.to_datetime(np.where(is_open, 0, rows["exit_ts"]), unit="ms", utc=True).where(
        ~is_open
    )  # NaT while open
    exit_reason = np.where(is_open, len(REASON_NAMES), fills["reason"][rows["exit_fill"]])
    frame = pd.DataFrame(
        {
            "entry_time": entry_time,
            # without a closed trade the column goes through objects, as it always did (whole
            # seconds); with one, the datetimes go straight in (an object round trip is slow)
            "exit_time": exit_time if not is_open.all() else exit_time.to_numpy(dtype=object),
            "side": np.where(rows["side"] > 0, "long", "short"),
            "size": rows["size"],
            "entry_price": rows["entry_price"],
            "exit_price": rows["exit_price"],
            "fees": rows["fees"],
            "pnl": rows["pnl"],
            "return": rows["pnl"] / (rows["entry_price"] * rows["size"]),
            "exit_reason": _EXIT_REASONS[exit_reason],
        }
    )
    frame["exit_time"] = pd.to_datetime(frame["exit_time"], utc=True)
    frame["entry_time"] = pd.to_datetime(frame["entry_time"], utc=True)
    frame["duration"] = frame["exit_time"] - frame["entry_time"]
    return frame


def processed_bars(equity: np.ndarray, status: int) -> int:
    """Bars the kernel processed: all of them with ``STATUS_OK``, else those before the
    rejected bar (whose equity, like every later one, is ``nan``)."""
    return len(equity) if status == STATUS_OK else int(np.count_nonzero(~np.isnan(equity)))
