"""Parity of portfolio bots: the runner, fed real bars of five markets one grid bar at a time,
trades exactly like the portfolio backtest.

10,000 grid bars of five real Bittrex 1m markets (January 2018, with the exchange's own gaps:
DASH/BTC misses a bar about one minute in nine, so some market is absent at many grid bars)
are replayed through the real runner on PostgreSQL and Redis by portfolio bots: a momentum
rotation with a stop-loss, a drawdown limit and a minimum order, the inverse-volatility book
with its trend filter (a single-market strategy allocated over the universe, drift
rebalancing), and sma_cross on every market with equal slots (on change). Every bar's decision
is computed from each market's history window only. The recorded fills (time, market, side,
price, size, fee), every bar's equity and the final equity must equal the backtest's, bit for
bit. A replay from mid-series equals the backtest from that start, and HRP (skfolio,
re-estimated every hour) is replayed on a shorter span.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from runner_support import (
    bittrex_universe,
    count_rows,
    equity_rows,
    portfolio_backtest_fills,
    portfolio_config,
    portfolio_fills,
    replay,
    store_bars,
)

import research
from candela.core import schema
from candela.core.bus import RedisBus
from research.panel import align

N_GRID = 10_000
COSTS = {"fee_rate": 0.0025, "slippage_bps": 5.0}
BOTS = {
    "momentum_rotation": dict(
        params={"top": 2, "window": 60, "every_hours": 1},
        stops={"stop_loss": 0.01},
        limits={"max_drawdown": 0.5, "min_notional": 5.0},
    ),
    "inverse_vol_trend": dict(params={"trend": 60, "vol_window": 60}),
    "runner_test_strategies:sma_book": dict(params={"fast": 10, "slow": 40}),
}


def _store(engine, universe):
    for symbol, bars in universe.items():
        store_bars(engine, ("bittrex", symbol, "1m"), bars)


def _assert_same_as_backtest(engine, config, panel, **start):
    result = research.backtest(
        config.spec,
        panel,
        config.params,
        config.costs,
        stops=config.stops,
        limits=config.limits,
        rebalance=config.book_rebalance,
        initial_cash=config.initial_cash,
        **start,
    )
    expected = portfolio_backtest_fills(result)
    assert len(expected) > 20, f"{config.strategy} trades too rarely to test parity"
    assert portfolio_fills(engine, config.bot_id) == expected, config.strategy
    recorded = equity_rows(engine, config.bot_id)
    np.testing.assert_array_equal(recorded[:, 0], result.panel.ts)
    np.testing.assert_array_equal(recorded[:, 1], result.equity.to_numpy())
    return result


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_replayed_portfolio_bots_record_the_backtests_fills(pg_engine, redis_url):
    universe = bittrex_universe(grid_bars=N_GRID)
    panel = align(universe)
    assert len(panel) == N_GRID and panel.n_markets == 5
    assert (~panel.present).any(axis=1).mean() > 0.1  # some market absent at many bars
    _store(pg_engine, universe)
    prefix = f"pf-{uuid.uuid4().hex[:8]}"
    configs = [
        portfolio_config(f"{prefix}-{index}", name, universe, costs=COSTS, **fields)
        for index, (name, fields) in enumerate(BOTS.items())
    ]
    bus = RedisBus(redis_url)
    try:
        reports = replay(pg_engine, bus, configs)
        assert bus.flush(30)
    finally:
        bus.close()
    for config in configs:
        assert reports[config.bot_id].status == "finished", reports[config.bot_id]
        assert count_rows(pg_engine, schema.signals, config.bot_id) == N_GRID
        result = _assert_same_as_backtest(pg_engine, config, panel)
        assert len(set(result.fills["market"])) >= 4, config.strategy


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_a_portfolio_replay_from_mid_series_is_the_backtest_from_that_start(pg_engine, redis_url):
    universe = bittrex_universe(grid_bars=4_000)
    panel = align(universe)
    _store(pg_engine, universe)
    start = int(panel.ts[2_500])
    config = portfolio_config(
        f"from-{uuid.uuid4().hex[:8]}",
        "inverse_vol_trend",
        universe,
        costs=COSTS,
        params={"trend": 60, "vol_window": 90},
    )
    bus = RedisBus(redis_url)
    try:
        reports = replay(pg_engine, bus, [config], from_ts=start)
    finally:
        bus.close()
    assert reports[config.bot_id].status == "finished"
    assert count_rows(pg_engine, schema.signals, config.bot_id) == len(panel) - 2_500
    _assert_same_as_backtest(pg_engine, config, panel, start=2_500)


@pytest.mark.slow
@pytest.mark.postgres
def test_hrp_bot_replays_the_backtest(pg_engine):
    from candela.core.bus import InProcessBus

    universe = bittrex_universe(grid_bars=1_500)
    _store(pg_engine, universe)
    config = portfolio_config(
        f"hrp-{uuid.uuid4().hex[:8]}",
        "hrp",
        universe,
        costs=COSTS,
        params={"window": 120, "every_hours": 1},
    )
    reports = replay(pg_engine, InProcessBus(), [config])
    assert reports[config.bot_id].status == "finished"
    _assert_same_as_backtest(pg_engine, config, align(universe))
