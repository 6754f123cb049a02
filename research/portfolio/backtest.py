"""The portfolio backtest: a portfolio strategy over a universe's panel, traded as one book.

The strategy's weights are computed once over the panel (from ``start`` on, with each market's
history window before it as history only); the book kernel
(:func:`~research.kernels.portfolio_backtest.simulate_book`: in a loop, the execution function a
portfolio bot calls for each bar) trades them: decided at bar ``t``'s close, traded at bar
``t+1``'s open with shared cash, as documented in :mod:`research.kernels.portfolio`.
``research.backtest(spec, panel, ...)`` comes here for a
:class:`~research.portfolio_model.PortfolioSpec`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from research.backtesting import start_index
from research.kernels.portfolio_backtest import simulate_book
from research.kernels.portfolio_records import BookLimits, Rebalance, make_book_config, new_book
from research.panel import Panel
from research.portfolio.result import PortfolioResult, book_stats
from research.portfolio_model import PortfolioSpec, check_weights
from research.types import Costs, Stops


def backtest_portfolio(
    spec: PortfolioSpec,
    panel: Panel,
    params: Any = None,
    costs: Costs = Costs(),
    *,
    stops: Stops = Stops(),
    limits: BookLimits = BookLimits(),
    rebalance: Rebalance | None = None,
    initial_cash: float = 10_000.0,
    start: Any = None,
) -> PortfolioResult:
    """Backtest the portfolio strategy ``spec`` on ``panel``.

    Parameters
    ----------
    spec : PortfolioSpec
        A portfolio strategy (:func:`~research.portfolio_model.portfolio`,
        :func:`~research.portfolio_model.allocate`, or a shipped one from
        :mod:`strategies.portfolio_registry`).
    panel : Panel
        The universe's bars (:func:`research.portfolio.universe.load_universe` or
        :func:`research.panel.align`); at least ``spec.lookback(params) + 1`` grid bars.
    params : NamedTuple, mapping or None
        Parameter values; missing ones take their defaults.
    costs : Costs
        Fee and slippage of every fill.
    stops : Stops
        Protective exits of every position (per market).
    limits : BookLimits
        Weight and gross limits, the book's daily loss and drawdown limits, the minimum order
        value.
    rebalance : Rebalance, optional
        When the weights are traded; ``None`` uses the strategy's own (``spec.rebalance``).
    initial_cash : float
    start : str, datetime, Timestamp or int, optional
        Trade from the first grid bar at or after ``start`` (an int is a grid row); the bars
        before it are history only: each market's last ``spec.history_window(params)`` bars
        before it are evaluated with the rest, so the decisions are those of a portfolio bot
        started there. ``None``: from the first bar.

    Returns
    -------
    PortfolioResult

    Raises
    ------
    TypeError, ValueError
        For a wrong argument type, an invalid parameter, too few bars, a cost, stop or limit
        out of range, or weights a book cannot trade (``nan`` after the look-back, a gross
        weight above ``limits.max_gross``), each naming the field, market or time.
    """
    if not isinstance(spec, PortfolioSpec):
        raise TypeError(
            f"spec must be a portfolio strategy (@portfolio or allocate(...), e.g. "
            f"strategies.portfolio_registry.get_portfolio('momentum_rotation')), "
            f"got {type(spec).__name__}"
        )
    if not isinstance(panel, Panel):
        raise TypeError(
            f"a portfolio backtest takes a research.panel.Panel (see "
            f"research.portfolio.universe.load_universe), got "
            f"{type(panel).__name__}"
        )
    params = spec.make_params(params)
    first = start_index(panel, start)
    offset = history_offset(panel, first, spec.history_window(params, panel.timeframe_ms))
    evaluated = panel[offset:] if offset else panel
    spec.check_enough_bars(len(evaluated), params)
    costs = _as(costs, Costs, "costs")
    stops = _as(stops, Stops, "stops")
    limits = _as(limits, BookLimits, "limits")
    rebalance = (
        spec.rebalance(params) if rebalance is None else _as(rebalance, Rebalance, "rebalance")
    )
    initial_cash = float(initial_cash)
    if not (math.isfinite(initial_cash) and initial_cash > 0):
        raise ValueError(f"initial_cash must be a positive number, got {initial_cash}")
    config = make_book_config(costs, stops, limits, rebalance)
    evaluation = spec.evaluate(evaluated, params)
    skip = first - offset
    traded = panel[first:] if first else panel
    weights = np.ascontiguousarray(evaluation.weights[skip:])
    check_weights(
        weights, traded, max(0, evaluation.lookback - skip), spec.name, max_gross=limits.max_gross
    )
    return run_book(
        spec.name,
        params,
        traded,
        weights,
        config,
        initial_cash,
        costs=costs,
        stops=stops,
        limits=limits,
        rebalance=rebalance,
    )


def run_book(
    name: str, params: Any, panel: Panel, weights: np.ndarray, config, initial_cash, **settings: Any
) -> PortfolioResult:
    """Trade ``weights`` on ``panel`` from a fresh book; the result with its stats (what
    :func:`backtest_portfolio` and a portfolio sweep row share)."""
    n, m = len(panel), panel.n_markets
    book, legs = new_book(initial_cash, m)
    equity = np.full(n, np.nan)
    cash = np.full(n, np.nan)
    positions = np.full((n, m), np.nan)
    run = simulate_book(
        book,
        legs,
        config,
        panel.ts,
        panel.open,
        panel.high,
        panel.low,
        panel.close,
        weights,
        equity,
        cash,
        positions,
    )
    stats = book_stats(
        panel,
        run.fills,
        equity[: run.processed],
        positions[: run.processed],
        run.exposed,
        initial_cash,
    )
    return PortfolioResult(
        spec_name=name,
        params=params,
        panel=panel,
        target=weights,
        fill_rows=run.fills,
        equity_values=equity,
        cash_values=cash,
        position_values=positions,
        stats=stats,
        status=int(run.status),
        initial_cash=float(initial_cash),
        settings=dict(settings),
    )


def history_offset(panel: Panel, first: int, history: int) -> int:
    """The first grid row a backtest from row ``first`` must evaluate: every market's last
    ``history`` bars up to ``first`` (what a portfolio bot's window holds there)."""
    if first == 0:
        return 0
    offset = max(0, first - history + 1)  # the grid's own last ``history`` rows
    present = panel.present[: first + 1]
    for j in range(panel.n_markets):
        rows = np.flatnonzero(present[:, j])
        if len(rows):
            offset = min(offset, int(rows[max(0, len(rows) - history)]))
    return offset


def _as(value: Any, kind: type, name: str):
    if isinstance(value, kind):
        return value
    if isinstance(value, dict):
        try:
            return kind(**value)
        except TypeError as exc:
            raise ValueError(f"{name}: {exc}; fields are {', '.join(kind._fields)}") from None
    raise TypeError(f"{name} must be {kind.__module__}.{kind.__name__}, got {type(value).__name__}")
