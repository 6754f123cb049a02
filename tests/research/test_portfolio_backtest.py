"""``research.backtest`` of a portfolio strategy on a universe (``research.portfolio``): the
result's tables against independent computations (pandas), a backtest from a start, the
charts, and bad input."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
from market_files import read_market_bars

import research
from research.kernels.portfolio_records import BookLimits, Rebalance
from research.panel import align
from research.portfolio.backtest import backtest_portfolio
from research.portfolio_model import portfolio
from research.types import Costs, RiskLimits, Stops
from strategies.portfolio_registry import get_portfolio
from strategies.registry import get_strategy

PAIRS = ["BTC-USDT", "ETH-USDT", "NEO-USDT", "XRP-USDT"]
COSTS = Costs(fee_rate=0.001, slippage_bps=2.0)


@functools.cache
def usdt_panel():
    return align(
        {name.replace("-", "/"): read_market_bars(f"binance_{name}_1h.csv.gz") for name in PAIRS}
    )


@functools.cache
def rotation():
    return research.backtest(
        get_portfolio("momentum_rotation"),
        usdt_panel(),
        {"top": 2, "window": 48, "every_hours": 24},
        COSTS,
    )


def test_research_backtest_runs_a_portfolio_on_its_own_weights_and_rule():
    result = rotation()
    spec = get_portfolio("momentum_rotation")
    assert result.status == 0 and len(result.fills) > 50
    np.testing.assert_array_equal(
        result.target, spec.weights(usdt_panel(), {"top": 2, "window": 48, "every_hours": 24})
    )
    assert result.settings["rebalance"] == Rebalance(period=86_400_000)
    # traded only at the first open after a daily rebalance decision (the first close at or
    # after 00:00 UTC), or at a market's next bar when it was absent then
    panel = usdt_panel()
    day = panel.ts // 86_400_000
    decisions = np.flatnonzero(np.concatenate([[True], day[1:] > day[:-1]]))
    for row, market in zip(result.fill_rows["bar"], result.fill_rows["market"], strict=False):
        decision = decisions[decisions < row][-1]
        assert not panel.present[decision + 1 : row, market].any()


def test_the_tables_agree_with_the_fills_and_prices():
    result = rotation()
    panel = usdt_panel()
    fills = result.fills
    # positions: cumulative signed fill sizes per market (pandas)
    signed = fills.assign(units=np.where(fills["side"] == "buy", 1, -1) * fills["size"])
    for market in panel.markets:
        own = signed[signed["market"] == market]
        held = own.groupby("bar_ts")["units"].sum().cumsum()
        position = result.positions[market]
        np.testing.assert_allclose(position.loc[held.index], held, rtol=1e-9, atol=1e-9)
    # weights: position at the last close over the equity
    last_close = (
        pd.DataFrame(panel.close, index=result.index, columns=list(panel.markets))
        .ffill()
        .fillna(0.0)
    )
    expected = result.positions * last_close
    np.testing.assert_allclose(result.weights, expected.div(result.equity, axis=0), rtol=1e-12)
    # equity = cash + marked positions; contributions add up to the profit
    np.testing.assert_allclose(result.equity, result.cash + expected.sum(axis=1), rtol=1e-12)
    assert result.contribution.sum() == pytest.approx(
        result.stats["final_equity"] - result.initial_cash, rel=1e-9
    )
    table = result.markets
    assert list(table.columns) == [
        "contribution",
        "contribution_pct",
        "trades",
        "win_rate",
        "fees",
        "exposure",
        "mean_weight",
        "coverage",
    ]
    assert table["fees"].sum() == pytest.approx(fills["fee"].sum())
    assert table["trades"].sum() == result.stats["trade_count"]
    closed = result.trades.dropna(subset=["exit_time"])
    assert closed["pnl"].sum() == pytest.approx(
        sum(
            result.trades[result.trades["market"] == m]["pnl"][
                result.trades["exit_time"].notna()
            ].sum()
            for m in panel.markets
        )
    )


def test_the_benchmark_is_the_equal_weight_buy_and_hold_book():
    result = rotation()
    panel = usdt_panel()
    close = pd.DataFrame(panel.close).ffill()
    opens = pd.DataFrame(panel.open)
    first_open = opens.apply(lambda column: column.dropna().iloc[0])
    slots = (2_500.0 * close / first_open).fillna(2_500.0)
    np.testing.assert_allclose(result.benchmark, slots.sum(axis=1), rtol=1e-12)
    assert result.stats["buy_hold_return"] == pytest.approx(
        result.benchmark.iloc[-1] / 10_000.0 - 1.0, rel=1e-12
    )


def test_a_backtest_from_a_start_makes_the_full_historys_decisions_from_there():
    spec = get_portfolio("inverse_vol_trend")
    panel = usdt_panel()
    full = research.backtest(spec, panel, costs=COSTS)
    late = research.backtest(spec, panel, costs=COSTS, start="2018-06-01")
    first = int(np.searchsorted(panel.ts, pd.Timestamp("2018-06-01", tz="UTC").value // 10**6))
    assert late.panel.ts[0] == panel.ts[first]
    np.testing.assert_array_equal(late.target, full.target[first:])
    assert late.equity.iloc[0] == pytest.approx(10_000.0, rel=1e-3)
    assert late.fills["bar_ts"].min() >= late.index[0]


def test_plot_draws_equity_benchmark_drawdown_weights_and_contribution():
    figure = rotation().plot()
    names = [trace.name for trace in figure.data]
    assert "equity" in names and "equal-weight buy and hold" in names
    stacked = [trace for trace in figure.data if getattr(trace, "stackgroup", None)]
    assert {trace.name for trace in stacked} == set(usdt_panel().markets)
    bars = [trace for trace in figure.data if trace.type == "bar"]
    assert len(bars) == 1 and len(bars[0].x) == 4


def test_a_single_market_strategy_allocated_over_the_universe():
    from research.portfolio_model import EQUAL_WEIGHT, allocate

    spec = allocate(get_strategy("sma_cross"), EQUAL_WEIGHT, rebalance=Rebalance())
    result = research.backtest(
        spec, usdt_panel(), {"fast": 10, "slow": 40}, COSTS, stops=Stops(stop_loss=0.05)
    )
    assert result.status == 0 and set(result.fills["market"]) == set(usdt_panel().markets)
    assert (result.fills["reason"] == "stop_loss").any()


@portfolio(lookback=0, name="too_much")
def too_much(panel, weight: float = 0.5):
    """Every market at the same weight."""
    return np.full(panel.close.shape, weight)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: research.backtest(too_much, usdt_panel()),
            ValueError,
            "asks for a gross weight of 2 at 2018-04-07T16:00:00.000Z, above the book's limit "
            "max_gross=1",
        ),
        (
            lambda: research.backtest(too_much, usdt_panel(), limits=BookLimits(max_gross=2.0)),
            None,
            None,
        ),
        (
            lambda: research.backtest(too_much, usdt_panel(), risk=RiskLimits(max_position=2.0)),
            TypeError,
            "a portfolio takes limits=BookLimits",
        ),
        (
            lambda: research.backtest(
                get_strategy("sma_cross"),
                read_market_bars("binance_BTC-USDT_1h.csv.gz"),
                limits=BookLimits(),
            ),
            TypeError,
            "limits= and rebalance= are for portfolio strategies",
        ),
        (
            lambda: backtest_portfolio(too_much, read_market_bars("binance_BTC-USDT_1h.csv.gz")),
            TypeError,
            "a portfolio backtest takes a research.panel.Panel",
        ),
        (
            lambda: research.backtest(too_much, usdt_panel(), limits=BookLimits(max_weight=-1)),
            ValueError,
            r"limits.max_weight must be a number within \[0.0, 100.0\]",
        ),
        (
            lambda: research.backtest(too_much, usdt_panel(), rebalance=Rebalance(every=1.5)),
            ValueError,
            "rebalance.every must be a whole number of bars",
        ),
    ],
)
def test_bad_input_is_one_clear_error(call, error, message):
    if error is None:
        assert call().status == 0
        return
    with pytest.raises(error, match=message):
        call()
