"""What one portfolio backtest produced: :class:`PortfolioResult`, its tables and statistics.

The statistics of a book are those of a single-market run (:func:`research.metrics.stats_of_run`:
calendar-time CAGR, Sharpe, drawdown, coverage of the grid, closed round trips over every
market), with the **equal-weight buy-and-hold book** as the benchmark: the initial cash split
into one slot per market, each slot bought at its market's first open in the span (cash until
then), held without costs and valued at the market's last close.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from research.kernels.portfolio_records import BOOK_FILL_COLUMNS
from research.kernels.records import fill_columns
from research.kernels.trades import closed_trade_arrays_nb
from research.metrics import bars_context, gaps_held_by_position, stats_of_run
from research.panel import Panel, forward_fill
from research.result import STATUS_NAMES, trades_frame, utc_index

#: How each column of :attr:`PortfolioResult.markets` reads (kinds of
#: :func:`research.formatting.format_value`), for ``format_frame(result.markets, kinds=...)``.
MARKET_KINDS = {
    "contribution": "money",
    "contribution_pct": "return",
    "trades": "count",
    "win_rate": "percent",
    "fees": "money",
    "exposure": "percent",
    "mean_weight": "percent",
    "coverage": "percent",
}


@dataclass(eq=False)
class PortfolioResult:
    """Everything one portfolio backtest produced.

    Attributes
    ----------
    spec_name : str
    params : NamedTuple
    panel : Panel
        The traded grid bars.
    target : ndarray, shape (n, m)
        The strategy's target weights per bar (``nan`` in the look-back).
    fill_rows : ndarray of BOOK_FILL_DTYPE
        The kernel's fills (:mod:`research.kernels.portfolio_records`).
    equity_values, cash_values : ndarray, shape (n,)
        The book after each bar's close (``nan`` from a rejected bar on).
    position_values : ndarray, shape (n, m)
        Each market's units after each bar's close.
    stats : Series
        :func:`book_stats`.
    status : int
        ``0``, or the kernel's negative status.
    initial_cash : float
    settings : dict
        ``costs``, ``stops``, ``limits`` and ``rebalance`` of the run.

    Tables and series (built on first access)
    -----------------------------------------
    fills : DataFrame
        As ``Result.fills``, with ``market`` (the market's name) after ``bar_ts``.
    trades : DataFrame
        Round trips per market (flat to flat), as ``Result.trades`` with a ``market`` column.
    equity, cash : Series
        After each bar's close, on a UTC close-time index.
    positions : DataFrame
        Units held per market after each close.
    weights : DataFrame
        Each market's share of the equity after each close: ``position * last close /
        equity`` (signed; the rest is cash).
    targets : DataFrame
        The strategy's target weights.
    benchmark : Series
        The equal-weight buy-and-hold book's equity (module docstring).
    contribution : Series
        Each market's profit (quote currency): the cash its fills took and gave, fees
        included, plus its final position at its last close; they add up to ``final equity -
        initial cash``.
    markets : DataFrame
        The per-market table: ``contribution``, ``contribution_pct`` (of the initial cash),
        ``trades`` (closed round trips), ``win_rate``, ``fees``, ``exposure`` (fraction of bars
        holding it), ``mean_weight`` (mean absolute weight), ``coverage`` (fraction of the
        grid's bars it has).
    """

    spec_name: str
    params: Any
    panel: Panel
    target: np.ndarray
    fill_rows: np.ndarray
    equity_values: np.ndarray
    cash_values: np.ndarray
    position_values: np.ndarray
    stats: pd.Series
    status: int = 0
    initial_cash: float = 10_000.0
    settings: dict = field(default_factory=dict)

    @property
    def markets_names(self) -> list[str]:
        return list(self.panel.markets)

    @cached_property
    def index(self) -> pd.DatetimeIndex:
        return utc_index(self.panel.ts)

    @cached_property
    def fills(self) -> pd.DataFrame:
        columns = fill_columns(self.fill_rows, self.panel.timeframe_ms)
        for name in ("ts", "bar_ts"):
            columns[name] = pd.to_datetime(columns[name], unit="ms", utc=True)
        columns["market"] = (
            np.asarray(self.panel.markets, dtype=object)[self.fill_rows["market"]]
            if len(self.fill_rows)
            else np.empty(0, dtype=object)
        )
        return pd.DataFrame(columns, columns=list(BOOK_FILL_COLUMNS))

    @cached_property
    def trades(self) -> pd.DataFrame:
        frames = []
        for j, market in enumerate(self.panel.markets):
            own = self.fill_rows[self.fill_rows["market"] == j]
            if len(own):
                frame = trades_frame(own, self.panel.timeframe_ms)
                frame.insert(0, "market", market)
                frames.append(frame)
        if not frames:
            empty = trades_frame(self.fill_rows[:0], self.panel.timeframe_ms)
            empty.insert(0, "market", pd.Series(dtype=object))
            return empty
        return pd.concat(frames, ignore_index=True).sort_values(
            ["entry_time", "market"], kind="stable", ignore_index=True
        )

    @cached_property
    def equity(self) -> pd.Series:
        return pd.Series(self.equity_values, index=self.index, name="equity", copy=False)

    @cached_property
    def cash(self) -> pd.Series:
        return pd.Series(self.cash_values, index=self.index, name="cash", copy=False)

    @cached_property
    def positions(self) -> pd.DataFrame:
        return pd.DataFrame(
            self.position_values, index=self.index, columns=list(self.panel.markets)
        )

    @cached_property
    def weights(self) -> pd.DataFrame:
        marked = self.position_values * np.nan_to_num(forward_fill(self.panel.close))
        with np.errstate(invalid="ignore", divide="ignore"):
            share = marked / self.equity_values[:, None]
        return pd.DataFrame(share, index=self.index, columns=list(self.panel.markets))

    @cached_property
    def targets(self) -> pd.DataFrame:
        return pd.DataFrame(self.target, index=self.index, columns=list(self.panel.markets))

    @cached_property
    def benchmark(self) -> pd.Series:
        return pd.Series(
            equal_weight_buy_and_hold(self.panel, self.initial_cash),
            index=self.index,
            name="equal_weight_buy_and_hold",
        )

    @cached_property
    def contribution(self) -> pd.Series:
        values = market_contributions(
            self.panel, self.fill_rows, self.position_values, self.equity_values
        )
        return pd.Series(
            values, index=pd.Index(list(self.panel.markets), name="market"), name="contribution"
        )

    @cached_property
    def markets(self) -> pd.DataFrame:
        return market_table(self)

    @property
    def status_name(self) -> str:
        return STATUS_NAMES.get(self.status, str(self.status))

    def plot(self, **kwargs: Any):
        """Plotly figure: equity against the equal-weight buy-and-hold book, drawdown, weights
        as a stacked area, contribution by market (:mod:`research.portfolio.charts`)."""
        from research.portfolio.charts import plot_portfolio  # plotly on first use

        return plot_portfolio(self, **kwargs)

    def __repr__(self) -> str:
        final = float(self.stats.get("final_equity", math.nan))
        return (
            f"PortfolioResult({self.spec_name}, {self.params}, markets="
            f"{self.panel.n_markets}, bars={len(self.panel)}, fills={len(self.fill_rows)}, "
            f"final_equity={final:.2f}, status={self.status_name})"
        )


def equal_weight_buy_and_hold(panel: Panel, initial_cash: float) -> np.ndarray:
    """The equal-weight buy-and-hold book's equity after each grid bar (module docstring)."""
    n, m = len(panel), panel.n_markets
    slot = float(initial_cash) / m
    present = panel.present
    first_open = np.full(m, np.nan)
    for j in range(m):
        rows = np.flatnonzero(present[:, j])
        if len(rows):
            first_open[j] = panel.open[rows[0], j]
    last_close = forward_fill(panel.close)
    value = np.where(np.isnan(last_close), slot, slot * last_close / first_open)
    return value.sum(axis=1) if n else np.empty(0)


def market_contributions(
    panel: Panel, fills: np.ndarray, positions: np.ndarray, equity: np.ndarray
) -> np.ndarray:
    """Each market's profit: the cash flows of its fills (fees included) plus its final
    position at its last close (see :class:`PortfolioResult`)."""
    m = panel.n_markets
    processed = int(np.count_nonzero(~np.isnan(equity)))
    flows = np.zeros(m)
    if len(fills):
        signed = np.where(fills["side"] > 0, -1.0, 1.0) * fills["size"] * fills["price"]
        np.add.at(flows, fills["market"], signed - fills["fee"])
    if processed == 0:
        return flows
    last_close = forward_fill(panel.close[:processed])[-1]
    held = positions[processed - 1]
    return flows + np.where(held != 0.0, held * np.nan_to_num(last_close), 0.0)


def book_stats(
    panel: Panel,
    fills: np.ndarray,
    equity: np.ndarray,
    positions: np.ndarray,
    exposed: int,
    initial_cash: float,
) -> pd.Series:
    """The book's statistics over the processed bars (:func:`research.metrics.stats_of_run`
    with the equal-weight buy-and-hold book as the benchmark); empty without a bar."""
    n = len(equity)
    if n == 0:
        return pd.Series(dtype=np.float64)
    benchmark = equal_weight_buy_and_hold(panel[:n], initial_cash)
    # the benchmark's statistics are computed from an "instrument" whose first open is the
    # initial cash and whose closes are the benchmark book's equity (they are scale-free)
    context = bars_context(
        panel.ts[:n], panel.timeframe_ms, np.array([float(initial_cash)]), benchmark
    )
    if len(fills):
        pnls, durations = [], []
        for j in range(panel.n_markets):
            own = fills[fills["market"] == j]
            if len(own):
                market_pnls, market_durations = closed_trade_arrays_nb(own, panel.timeframe_ms)
                pnls.append(market_pnls)
                durations.append(market_durations)
        pnls_array = np.concatenate(pnls) if pnls else np.empty(0)
        durations_array = np.concatenate(durations) if durations else np.empty(0)
        fees = float(fills["fee"].sum())
    else:
        pnls_array, durations_array, fees = np.empty(0), np.empty(0), 0.0
    holding = (positions != 0.0).any(axis=1)
    gaps_held = gaps_held_by_position(context, holding)
    values = stats_of_run(
        equity, exposed, gaps_held, context, pnls_array, durations_array, initial_cash, fees
    )
    return pd.Series(values, dtype=np.float64)


def market_table(result: PortfolioResult) -> pd.DataFrame:
    """The per-market table of :class:`PortfolioResult` (``markets``)."""
    markets = list(result.panel.markets)
    trades = result.trades
    closed = trades[trades["exit_time"].notna()] if len(trades) else trades
    processed = ~np.isnan(result.equity_values)
    positions = result.position_values[processed]
    weights = result.weights.to_numpy()[processed]
    rows = []
    for j, market in enumerate(markets):
        own = closed[closed["market"] == market] if len(closed) else closed
        fees = result.fill_rows["fee"][result.fill_rows["market"] == j].sum()
        rows.append(
            {
                "contribution": float(result.contribution.iloc[j]),
                "contribution_pct": float(result.contribution.iloc[j]) / result.initial_cash,
                "trades": len(own),
                "win_rate": float((own["pnl"] > 0).mean()) if len(own) else math.nan,
                "fees": float(fees),
                "exposure": float((positions[:, j] != 0.0).mean()) if len(positions) else math.nan,
                "mean_weight": float(np.nanmean(np.abs(weights[:, j])))
                if len(weights)
                else math.nan,
                "coverage": float(result.panel.present[:, j].mean())
                if len(result.panel)
                else math.nan,
            }
        )
    return pd.DataFrame(rows, index=pd.Index(markets, name="market"))
