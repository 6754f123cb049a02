"""Sweeps of portfolios: over parameters, over universes, and the per-market table.

* :func:`sweep_portfolio` backtests a portfolio strategy for every parameter set of a grid:
  one row per set with the book's statistics and each market's contribution.
* :func:`sweep_universes` backtests one parameter set on several universes (sub-panels).
* :func:`pairs_table` runs a single-market strategy on each market of a universe on its own
  (the "which pairs work" table, one backtest per pair) next to its contribution in the
  equal-weight book of all of them.

Runs are sequential, in this process: a book's run is a few milliseconds of kernel per
thousand bars, the weights' evaluation dominates, and the strategies need not be importable by
worker processes. An invalid parameter set (a broken constraint, too few bars, a strategy
that raises, weights a book cannot trade) is a row with ``valid=False`` and its reason, left
out of the ranking.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from research.kernels.portfolio_records import BookLimits, Rebalance
from research.panel import Panel
from research.portfolio.backtest import backtest_portfolio
from research.portfolio_model import EQUAL_WEIGHT, PortfolioSpec, allocate
from research.strategy_model import StrategySpec
from research.types import Costs, Stops

DEFAULT_MIN_TRADES = 10


def sweep_portfolio(
    spec: PortfolioSpec,
    panel: Panel,
    grid: Mapping[str, Iterable[Any]] | None = None,
    costs: Costs = Costs(),
    *,
    stops: Stops = Stops(),
    limits: BookLimits = BookLimits(),
    rebalance: Rebalance | None = None,
    initial_cash: float = 10_000.0,
    metric: str = "sharpe",
    min_trades: int = DEFAULT_MIN_TRADES,
    per_market: bool = True,
) -> pd.DataFrame:
    """Backtest ``spec`` on ``panel`` for every parameter set of ``grid``.

    Parameters
    ----------
    spec : PortfolioSpec
    panel : Panel
    grid : mapping, optional
        ``{parameter: values}``; the others keep their defaults. Default ``spec.sweep``.
    costs, stops, limits, rebalance, initial_cash
        As for :func:`~research.portfolio.backtest.backtest_portfolio`, the same for every run
        (``rebalance=None``: each parameter set's own).
    metric : str
        The statistic to rank by (higher is better).
    min_trades : int
        Rows with fewer closed round trips are kept but not ranked.
    per_market : bool
        Add each market's contribution (a fraction of the initial cash) as columns
        ``contribution:<market>``.

    Returns
    -------
    DataFrame
        One row per parameter set in grid order: the parameters, ``valid``,
        ``invalid_reason``, the statistics, the contributions, and ``rank`` (1 = best by
        ``metric`` among the valid rows with at least ``min_trades`` trades; ``nan`` else).
    """
    grid = dict(spec.sweep if grid is None else grid)
    unknown = [name for name in grid if name not in spec.params._fields]
    if unknown:
        raise ValueError(
            f"grid names unknown parameter {unknown[0]!r} of portfolio strategy "
            f"{spec.name!r} (parameters: {', '.join(spec.params._fields)})"
        )
    names = list(grid)
    rows = []
    for values in itertools.product(*(list(grid[name]) for name in names)):
        row: dict[str, Any] = dict(zip(names, values, strict=False))
        try:
            result = backtest_portfolio(
                spec,
                panel,
                row,
                costs,
                stops=stops,
                limits=limits,
                rebalance=rebalance,
                initial_cash=initial_cash,
            )
        except (ValueError, TypeError) as exc:
            row.update(valid=False, invalid_reason=str(exc))
        else:
            row.update(valid=True, invalid_reason="")
            row.update(result.stats.to_dict())
            if per_market:
                shares = result.contribution / result.initial_cash
                row.update({f"contribution:{market}": value for market, value in shares.items()})
        rows.append(row)
    return _ranked(pd.DataFrame(rows), metric, min_trades)


def sweep_universes(
    spec: PortfolioSpec,
    universes: Mapping[str, Panel],
    params: Any = None,
    costs: Costs = Costs(),
    **settings: Any,
) -> pd.DataFrame:
    """Backtest ``spec`` with ``params`` on each universe of ``universes`` (``{name: Panel}``,
    e.g. ``panel.select([...])`` subsets).

    Returns
    -------
    DataFrame
        One row per universe (index ``universe``): ``markets`` (their names), ``valid``,
        ``invalid_reason`` and the statistics.
    """
    rows = []
    for name, panel in universes.items():
        row: dict[str, Any] = {"universe": name, "markets": ", ".join(panel.markets)}
        try:
            result = backtest_portfolio(spec, panel, params, costs, **settings)
        except (ValueError, TypeError) as exc:
            row.update(valid=False, invalid_reason=str(exc))
        else:
            row.update(valid=True, invalid_reason="")
            row.update(result.stats.to_dict())
        rows.append(row)
    return pd.DataFrame(rows).set_index("universe")


def pairs_table(
    strategy: StrategySpec,
    panel: Panel,
    params: Any = None,
    costs: Costs = Costs(),
    *,
    stops: Stops | None = None,
    initial_cash: float = 10_000.0,
) -> pd.DataFrame:
    """The "which pairs work" table: ``strategy`` backtested on each market of ``panel`` alone
    (:func:`research.backtest` on its own bars), and its contribution in the equal-weight book
    of all the markets (:func:`~research.portfolio_model.allocate` with
    :data:`~research.portfolio_model.EQUAL_WEIGHT`, rebalanced on change).

    Returns
    -------
    DataFrame
        One row per market (index ``market``), sorted by ``sharpe``: ``bars``,
        ``total_return``, ``sharpe``, ``max_drawdown``, ``trade_count``, ``win_rate``,
        ``profit_factor``, ``buy_hold_return`` of its own backtest (or ``invalid_reason``), and
        ``book_contribution`` (a fraction of the book's initial cash).
    """
    from research.backtesting import backtest  # the single-market backtest

    columns = [
        "total_return",
        "sharpe",
        "max_drawdown",
        "trade_count",
        "win_rate",
        "profit_factor",
        "buy_hold_return",
    ]
    params = strategy.make_params(params)
    book = backtest_portfolio(
        allocate(strategy, EQUAL_WEIGHT),
        panel,
        params._asdict(),
        costs,
        stops=stops or strategy.stops,
        initial_cash=initial_cash,
    )
    rows = []
    for market in panel.markets:
        bars = panel.bars(market)
        row: dict[str, Any] = {"market": market, "bars": len(bars), "invalid_reason": ""}
        try:
            result = backtest(strategy, bars, params, costs, stops=stops, initial_cash=initial_cash)
        except (ValueError, TypeError) as exc:
            row["invalid_reason"] = str(exc)
        else:
            row.update({name: float(result.stats[name]) for name in columns})
        row["book_contribution"] = float(book.contribution[market]) / initial_cash
        rows.append(row)
    frame = pd.DataFrame(rows).set_index("market")
    return (
        frame.sort_values("sharpe", ascending=False, na_position="last")
        if "sharpe" in frame
        else frame
    )


def _ranked(frame: pd.DataFrame, metric: str, min_trades: int) -> pd.DataFrame:
    frame["rank"] = np.nan
    if metric not in frame or not frame["valid"].any():
        return frame
    eligible = frame["valid"] & (frame.get("trade_count", 0) >= min_trades)
    order = frame.loc[eligible, metric].rank(ascending=False, method="first")
    frame.loc[eligible, "rank"] = order
    return frame
