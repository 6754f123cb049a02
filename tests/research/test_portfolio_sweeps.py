"""Portfolio sweeps (``research.portfolio.sweeps``): every row equals its own backtest, invalid
parameter sets are rows, universes side by side, and the per-market ("which pairs work")
table."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from market_files import read_market_bars

import research
from research.panel import align
from research.types import Costs
from strategies.portfolio_registry import get_portfolio
from strategies.registry import get_strategy

PAIRS = ["BTC-USDT", "ETH-USDT", "NEO-USDT", "XRP-USDT"]
COSTS = Costs(fee_rate=0.001)


@functools.cache
def usdt_panel():
    return align(
        {name.replace("-", "/"): read_market_bars(f"binance_{name}_1h.csv.gz") for name in PAIRS}
    )


def test_every_row_is_its_own_backtest_and_invalid_sets_are_rows():
    spec = get_portfolio("momentum_rotation")
    grid = {"top": [1, 2, 0], "window": [24, 5000]}
    frame = research.sweep_portfolio(spec, usdt_panel(), grid, COSTS, min_trades=1)
    assert len(frame) == 6 and frame["valid"].sum() == 2
    assert (
        frame.loc[~frame["valid"], "invalid_reason"]
        .str.contains("constraint 'top >= 1'|needs at least 5001 grid bars")
        .all()
    )
    for _, row in frame[frame["valid"]].iterrows():
        alone = research.backtest(
            spec, usdt_panel(), {"top": row["top"], "window": row["window"]}, COSTS
        )
        assert row["final_equity"] == alone.stats["final_equity"]
        for market in usdt_panel().markets:
            assert row[f"contribution:{market}"] == pytest.approx(
                alone.contribution[market] / 10_000.0, rel=1e-12
            )
    best = frame.loc[frame["rank"] == 1.0]
    assert best["sharpe"].iloc[0] == frame.loc[frame["valid"], "sharpe"].max()


def test_universes_side_by_side():
    panel = usdt_panel()
    universes = {
        "all": panel,
        "majors": panel.select(["BTC/USDT", "ETH/USDT"]),
        "tiny": panel.select(["NEO/USDT"])[:20],
    }
    frame = research.sweep_universes(get_portfolio("momentum_rotation"), universes, None, COSTS)
    assert list(frame.index) == ["all", "majors", "tiny"]
    assert frame.loc["majors", "markets"] == "BTC/USDT, ETH/USDT"
    assert (
        not frame.loc["tiny", "valid"] and "needs at least" in frame.loc["tiny", "invalid_reason"]
    )
    alone = research.backtest(get_portfolio("momentum_rotation"), universes["majors"], costs=COSTS)
    assert frame.loc["majors", "total_return"] == alone.stats["total_return"]


def test_the_pairs_table_is_one_backtest_per_pair_and_the_books_contribution():
    strategy = get_strategy("sma_cross")
    params = {"fast": 10, "slow": 40}
    table = research.pairs_table(strategy, usdt_panel(), params, COSTS)
    assert set(table.index) == set(usdt_panel().markets)
    assert list(table["sharpe"]) == sorted(table["sharpe"], reverse=True)
    for market in usdt_panel().markets:
        alone = research.backtest(strategy, usdt_panel().bars(market), params, COSTS)
        assert table.loc[market, "total_return"] == alone.stats["total_return"]
        assert table.loc[market, "bars"] == len(usdt_panel().bars(market))
    book = research.backtest(research.allocate(strategy), usdt_panel(), params, COSTS)
    np.testing.assert_allclose(
        table["book_contribution"].sort_index(),
        (book.contribution / 10_000.0).sort_index(),
        rtol=1e-12,
    )
