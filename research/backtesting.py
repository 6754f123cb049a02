"""``research.backtest``: run one strategy over bars and return a :class:`Result`.

The strategy's target is computed once, vectorized, over all bars; the execution kernel
(:func:`~research.kernels.backtest.run_equity`, i.e. the runner's own ``step_nb`` in a loop)
turns it into fills: decided at bar ``t``'s close, filled at bar ``t+1``'s open, with fees,
slippage, stops and risk limits exactly as documented in :mod:`research.kernels.execution`.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from research.indicators import indicator_cache
from research.kernels import execution as ex
from research.kernels import trades as tr
from research.kernels.backtest import FILL_BAR, account_from_fills_nb, run_equity
from research.metrics import stats_of_run
from research.types import Bars, Costs, RiskLimits, Stops, StrategySpec

STATUS_NAMES = {ex.STATUS_OK: "ok", ex.STATUS_BAD_BAR: "bad_bar",
                ex.STATUS_OUT_OF_ORDER: "out_of_order"}

FILL_COLUMNS = ["ts", "bar_ts", "side", "size", "price", "fee", "reason", "realized_pnl",
                "cash_after", "position_after"]
_REASON_NAMES = np.array(ex.REASON_NAMES, dtype=object)
TRADE_COLUMNS = ["entry_time", "exit_time", "side", "size", "entry_price", "exit_price", "fees",
                 "pnl", "return_pct", "exit_reason", "duration"]


@dataclass(eq=False)
class Result:
    """Everything one backtest produced.

    The kernel's arrays are kept as they came; the pandas tables and series are built from them
    on first access and then kept (a sweep or a benchmark that only reads ``stats`` never pays
    for them).

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
    fill_rows : ndarray, shape (n_fills, N_FILL + 1)
        The kernel's fill records (``F_*`` fields of :mod:`research.kernels.execution`, then the
        bar index).
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
        ``pnl`` (net of every fee), ``return_pct`` (``pnl / (entry_price * size) * 100``),
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
    status: int = ex.STATUS_OK
    timeframe_ms: int = 0
    extra: dict = field(default_factory=dict)
    cash_values: np.ndarray | None = None
    position_values: np.ndarray | None = None

    def _account_from_fills(self) -> None:
        if self.cash_values is None or self.position_values is None:
            self.cash_values, self.position_values = account_from_fills_nb(
                self.fill_rows, len(self.ts), processed_bars(self.equity_values, self.status),
                float(self.initial_cash))

    @cached_property
    def index(self) -> pd.DatetimeIndex:
        """The bars' close times as a tz-aware UTC index named ``ts``."""
        return utc_index(self.ts)

    @cached_property
    def fills(self) -> pd.DataFrame:
        return fills_frame(self.fill_rows, self.ts, self.timeframe_ms)

    @cached_property
    def trades(self) -> pd.DataFrame:
        return trades_frame(self.fill_rows, self.ts, self.timeframe_ms)

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
        """Plotly figure: candles with indicators and trades, equity and drawdown panes."""
        from research.charts import plot_result

        return plot_result(self, **kwargs)

    def save(self, engine, *, exchange: str | None = None, symbol: str | None = None,
             timeframe: str | None = None) -> str:
        """Store the run in ``strategy_runs`` / ``strategy_signals`` / ``strategy_trades``;
        return its ``run_id`` (see :func:`research.storage.save_result`)."""
        from research.storage import save_result

        return save_result(engine, self, exchange=exchange, symbol=symbol, timeframe=timeframe)

    def __repr__(self) -> str:
        final = float(self.stats.get("final_equity", math.nan))
        return (f"Result({self.spec_name}, {self.params}, bars={len(self.ts)}, "
                f"trades={len(self.trades)}, final_equity={final:.2f}, "
                f"status={self.status_name})")


def backtest(
    spec: StrategySpec,
    bars: Bars,
    params: Any = None,
    costs: Costs = Costs(),
    *,
    stops: Stops | None = None,
    risk: RiskLimits = RiskLimits(),
    initial_cash: float = 10_000.0,
) -> Result:
    """Backtest ``spec`` on ``bars``.

    Parameters
    ----------
    spec : StrategySpec
    bars : Bars
        At least ``spec.required_bars(params)`` bars.
    params : NamedTuple, mapping or None
        Parameter values; missing ones take their defaults (see ``StrategySpec.make_params``).
    costs : Costs
    stops : Stops, optional
        Protective exits; ``None`` uses the strategy's own ``spec.stops``.
    risk : RiskLimits
    initial_cash : float
        Quote-currency cash at the start.

    Returns
    -------
    Result

    Raises
    ------
    TypeError, ValueError
        For a wrong argument type, an unknown or invalid parameter, too few bars, a cost, stop
        or limit out of range, or a strategy whose target is not one float per bar.
    """
    if not isinstance(spec, StrategySpec):
        raise TypeError(f"spec must be a StrategySpec (e.g. strategies.registry.get_strategy("
                        f"'sma_cross')), got {type(spec).__name__}")
    if not isinstance(bars, Bars):
        raise TypeError(f"bars must be research.types.Bars (see research.load_bars), got "
                        f"{type(bars).__name__}")
    params = spec.make_params(params)
    spec.check_enough_bars(len(bars), params)
    costs = _as(costs, Costs, "costs")
    stops = spec.stops if stops is None else _as(stops, Stops, "stops")
    risk = _as(risk, RiskLimits, "risk")
    initial_cash = float(initial_cash)
    if not (math.isfinite(initial_cash) and initial_cash > 0):
        raise ValueError(f"initial_cash must be a positive number, got {initial_cash}")
    config = ex.make_config(costs, stops, risk)
    timeframe_ms = infer_timeframe_ms(bars)
    # the indicators to plot are those the target computed: in one pass when the strategy has
    # ``evaluate``, else the second call finds them in the scoped indicator memo
    with indicator_cache() if spec.evaluate is None else nullcontext():
        raw_target, raw_indicators = spec.target_and_indicators(bars, params)
    target = checked_target(spec, raw_target, len(bars))
    indicators = {name: np.asarray(values) for name, values in raw_indicators.items()}

    equity = np.empty(len(bars))
    fills, processed, status, values = run_target(bars, target, config, initial_cash,
                                                  timeframe_ms, equity)
    equity[processed:] = np.nan
    stats = pd.Series(values, dtype=np.float64, name=spec.name)
    return Result(
        spec_name=spec.name, params=params, costs=costs, stops=stops, risk=risk,
        initial_cash=initial_cash, bars=bars, target=target, indicators=indicators, ts=bars.ts,
        fill_rows=fills, equity_values=equity, stats=stats, status=int(status),
        timeframe_ms=timeframe_ms)


def run_target(bars: Bars, target: np.ndarray, config: np.ndarray, initial_cash: float,
               timeframe_ms: int, equity: np.ndarray,
               fills: np.ndarray | None = None) -> tuple[np.ndarray, int, int, dict[str, float]]:
    """The execution loop over ``target`` from a fresh account, then the run's stats: what
    :func:`backtest` and a sweep row (:func:`research.sweeps.run_stats`) share.

    ``equity`` (at least as long as ``bars``) receives the equity of the processed bars;
    ``fills`` is a fill table to reuse (see :func:`research.kernels.backtest.simulate`).
    Returns ``(fill rows, bars processed, status, stats dict)``; the stats are ``{}`` when the
    first bar was rejected.
    """
    fills, processed, exposed, status = run_equity(
        ex.new_state(initial_cash), config, bars.ts, bars.open, bars.high, bars.low, bars.close,
        target, equity, fills)
    stats = run_stats_values(equity[:processed], exposed, bars.ts[:processed], timeframe_ms,
                             fills, initial_cash)
    return fills, processed, status, stats


def run_stats_values(equity: np.ndarray, exposed: int, ts: np.ndarray, timeframe_ms: int,
                     fills: np.ndarray, initial_cash: float) -> dict[str, float]:
    """The stats of a run: :func:`research.metrics.stats_of_run` over the processed bars
    (``equity``, ``ts``) and the closed round trips of ``fills``; ``{}`` without a bar."""
    if len(equity) == 0:
        return {}
    if len(fills):
        pnls, durations = tr.closed_trade_arrays_nb(fills, ts, timeframe_ms)
        fees = float(fills[:, ex.F_FEE].sum())
    else:
        pnls, durations, fees = np.empty(0), np.empty(0), 0.0
    return stats_of_run(equity, exposed, ts, timeframe_ms, pnls, durations, initial_cash, fees)


def strategy_target(spec: StrategySpec, bars: Bars, params: Any) -> np.ndarray:
    """Call ``spec.target`` and check it returned one float per bar."""
    return checked_target(spec, spec.target(bars, params), len(bars))


def checked_target(spec: StrategySpec, target: Any, n_bars: int) -> np.ndarray:
    """``target`` as contiguous float64 after checking it is one number per bar."""
    if not isinstance(target, np.ndarray):
        raise TypeError(f"strategy {spec.name!r} must return a numpy array from target(), got "
                        f"{type(target).__name__}")
    if target.shape != (n_bars,):
        raise ValueError(f"strategy {spec.name!r} returned a target of shape {target.shape}; "
                         f"expected ({n_bars},), one level per bar")
    if not (np.issubdtype(target.dtype, np.floating) or np.issubdtype(target.dtype, np.integer)
            or target.dtype == np.bool_):
        raise TypeError(f"strategy {spec.name!r} returned a target of dtype {target.dtype}; "
                        "return float64 levels (nan = flat)")
    return np.ascontiguousarray(target, dtype=np.float64)


def infer_timeframe_ms(bars: Bars) -> int:
    """``bars.timeframe_ms``, or the smallest gap between bar times when it is 0."""
    if bars.timeframe_ms > 0:
        return int(bars.timeframe_ms)
    if len(bars) < 2:
        raise ValueError("cannot infer the bar interval from fewer than 2 bars: set "
                         "Bars.timeframe_ms")
    return int(np.diff(bars.ts).min())


def _as(value: Any, kind: type, name: str):
    if isinstance(value, kind):
        return value
    if isinstance(value, dict):
        try:
            return kind(**value)
        except TypeError as exc:
            raise ValueError(f"{name}: {exc}; fields are {', '.join(kind._fields)}") from None
    raise TypeError(f"{name} must be research.types.{kind.__name__}, got {type(value).__name__}")


def utc_index(ts: np.ndarray) -> pd.DatetimeIndex:
    """Millisecond UTC timestamps as a tz-aware index named ``ts``."""
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(ts, dtype=np.int64), unit="ms", utc=True),
                            name="ts")


def fills_frame(fills: np.ndarray, ts: np.ndarray, timeframe_ms: int) -> pd.DataFrame:
    """The kernel's fill rows as the ``Result.fills`` table."""
    if len(fills) == 0:
        frame = pd.DataFrame({column: [] for column in FILL_COLUMNS})
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
        frame["bar_ts"] = pd.to_datetime(frame["bar_ts"], utc=True)
        return frame
    bar = fills[:, FILL_BAR].astype(np.int64)
    times = tr.fill_times_nb(fills, ts, timeframe_ms)
    return pd.DataFrame({
        "ts": pd.to_datetime(times, unit="ms", utc=True),
        "bar_ts": pd.to_datetime(ts[bar], unit="ms", utc=True),
        "side": np.where(fills[:, ex.F_SIDE] > 0, "buy", "sell"),
        "size": fills[:, ex.F_SIZE],
        "price": fills[:, ex.F_PRICE],
        "fee": fills[:, ex.F_FEE],
        "reason": _REASON_NAMES[fills[:, ex.F_REASON].astype(np.int64)],
        "realized_pnl": fills[:, ex.F_REALIZED_PNL],
        "cash_after": fills[:, ex.F_CASH_AFTER],
        "position_after": fills[:, ex.F_POSITION_AFTER],
    })


def trades_frame(fills: np.ndarray, ts: np.ndarray, timeframe_ms: int) -> pd.DataFrame:
    """Round trips of the kernel's fill rows as the ``Result.trades`` table."""
    rows = tr.round_trips_nb(fills, ts, timeframe_ms) if len(fills) else np.empty((0, tr.N_TRADE))
    is_open = rows[:, tr.T_EXIT_FILL] < 0
    exit_ms = np.where(is_open, 0, rows[:, tr.T_EXIT_TS]).astype(np.int64)
    entry_time = pd.to_datetime(rows[:, tr.T_ENTRY_TS].astype(np.int64), unit="ms", utc=True)
    exit_time = pd.to_datetime(exit_ms, unit="ms", utc=True).where(~is_open)  # NaT while open
    exit_fill = np.where(is_open, 0, rows[:, tr.T_EXIT_FILL]).astype(np.int64)
    reasons = np.where(is_open, "open", _REASON_NAMES[fills[exit_fill, ex.F_REASON].astype(
        np.int64)]).astype(object) if len(rows) else []
    frame = pd.DataFrame({
        "entry_time": entry_time,
        # without a closed trade the column goes through objects, as it always did (whole
        # seconds); with one, the datetimes go straight in (an object round trip is slow)
        "exit_time": exit_time if not is_open.all() else exit_time.to_numpy(dtype=object),
        "side": np.where(rows[:, tr.T_SIDE] > 0, "long", "short"),
        "size": rows[:, tr.T_SIZE],
        "entry_price": rows[:, tr.T_ENTRY_PRICE],
        "exit_price": rows[:, tr.T_EXIT_PRICE],
        "fees": rows[:, tr.T_FEES],
        "pnl": rows[:, tr.T_PNL],
        "return_pct": rows[:, tr.T_PNL] / (rows[:, tr.T_ENTRY_PRICE] * rows[:, tr.T_SIZE]) * 100.0
        if len(rows) else np.empty(0),
        "exit_reason": reasons,
    })
    frame["exit_time"] = pd.to_datetime(frame["exit_time"], utc=True)
    frame["entry_time"] = pd.to_datetime(frame["entry_time"], utc=True)
    frame["duration"] = frame["exit_time"] - frame["entry_time"]
    return frame


def processed_bars(equity: np.ndarray, status: int) -> int:
    """Bars the kernel processed: all of them with ``STATUS_OK``, else those before the
    rejected bar (whose equity, like every later one, is ``nan``)."""
    return len(equity) if status == ex.STATUS_OK else int(np.count_nonzero(~np.isnan(equity)))


def assemble_result(spec_name, params, costs, stops, risk, initial_cash, bars, target,
                    indicators, fills, cash, position, equity, status, timeframe_ms,
                    ts=None, stats=None) -> Result:
    """Build a :class:`Result` from stored or recorded account arrays (a loaded run)."""
    ts = bars.ts if ts is None else np.asarray(ts, dtype=np.int64)
    if stats is None:
        processed = processed_bars(equity, status)
        stats = pd.Series(run_stats_values(equity[:processed],
                                           int(np.count_nonzero(position[:processed])),
                                           ts[:processed], timeframe_ms, fills, initial_cash),
                          dtype=np.float64, name=spec_name)
    return Result(
        spec_name=spec_name, params=params, costs=costs, stops=stops, risk=risk,
        initial_cash=initial_cash, bars=bars, target=target, indicators=indicators, ts=ts,
        fill_rows=fills, equity_values=equity, stats=stats, status=status,
        timeframe_ms=timeframe_ms, cash_values=cash, position_values=position,
    )
