"""Parity: the runner, fed real bars one at a time, trades exactly like ``research.backtest``.

For every shipped strategy, 10,000 real Bittrex ADA/BTC 1m bars (with the exchange's own gaps:
the runner simply takes the next stored bar, as the backtest does) are replayed through the real
runner: PostgreSQL for the ledger, Redis for the bus, the bots' records of each bar committed
in one transaction, each decision computed from the strategy's history window only (clamped at
the first stored bar). The recorded fills (time, side, price, size, fee) and the final equity
must equal the backtest's on the same bars, bit for bit. Stops and risk limits are switched on
for some bots, so the intrabar and halt paths are covered. A replay that starts mid-series
(``--from``) must equal ``research.backtest(..., start=...)``: the same decisions from the same
history window before the start.
"""

from __future__ import annotations

import math
import threading
import time
import uuid

import numpy as np
import pandas as pd
import pytest
from runner_support import (
    ADA_BTC,
    backtest_fills,
    bot_config,
    count_rows,
    final_equity,
    replay,
    runner_fills,
    store_bars,
)

import research
from candela.core import schema
from candela.core.bus import RedisBus
from research.types import RiskLimits, Stops
from strategies.registry import all_specs

N_BARS = 10_000
COSTS = {"fee_rate": 0.0025, "slippage_bps": 5.0}
EXTRAS = {  # stops / risk per strategy, to cover protective exits and halts as well
    "sma_cross": {"stops": {"stop_loss": 0.01, "trailing_stop": 0.02}},
    "ema_cross": {"risk": {"max_position": 1.0, "daily_loss_limit": 0.02, "max_drawdown": 0.3}},
    "bollinger_breakout": {"stops": {"take_profit": 0.01}},
}


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_replayed_runner_records_the_backtests_trades(pg_engine, redis_url, ada_btc_bars):
    bars = ada_btc_bars[:N_BARS]
    store_bars(pg_engine, ADA_BTC, bars)
    prefix = f"parity-{uuid.uuid4().hex[:8]}"
    specs = all_specs()
    assert len(specs) >= 6
    configs = [
        bot_config(f"{prefix}-{name}", name, costs=COSTS, **EXTRAS.get(name, {})) for name in specs
    ]

    bus = RedisBus(redis_url)
    received: dict[str, int] = {}
    lock = threading.Lock()

    def count(channel, payload):
        with lock:
            received[channel] = received.get(channel, 0) + 1

    def delivered() -> bool:
        with lock:
            return all(received.get(f"signals:{c.bot_id}", 0) >= N_BARS for c in configs)

    subscription = bus.subscribe([f"signals:{prefix}-*"], count)
    try:
        reports = replay(pg_engine, bus, configs)
        assert bus.flush(30)
        # a replay publishes a batch's decisions in one burst: the subscriber may still be
        # reading them when the publisher is done
        deadline = time.monotonic() + 30
        while not delivered() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        subscription.close()
        bus.close()

    for config in configs:
        assert reports[config.bot_id].status == "finished", reports[config.bot_id]
        assert count_rows(pg_engine, schema.signals, config.bot_id) == N_BARS
        assert count_rows(pg_engine, schema.bot_performance, config.bot_id) == N_BARS
        result = research.backtest(
            specs[config.strategy],
            bars,
            config.params,
            config.costs,
            stops=config.stops,
            risk=config.risk,
            initial_cash=config.initial_cash,
        )
        expected = backtest_fills(result)
        recorded = runner_fills(pg_engine, config.bot_id)
        assert len(expected) > 10, f"{config.strategy} trades too rarely to test parity"
        np.testing.assert_array_equal(recorded, expected, err_msg=config.strategy)
        assert final_equity(pg_engine, config.bot_id) == float(result.equity.iloc[-1])
    # the bus carried every decision, once
    for config in configs:
        assert received.get(f"signals:{config.bot_id}", 0) == N_BARS


def test_risk_limits_halt_at_the_same_bar_in_runner_and_backtest(any_engine, ada_btc_bars):
    """Daily-loss limit and drawdown kill switch fire at the same bar, with the same fills."""
    from sqlalchemy import select

    from candela.core.bus import InProcessBus

    bars = ada_btc_bars[:3000]
    store_bars(any_engine, ADA_BTC, bars)
    risk = {"max_position": 1.0, "daily_loss_limit": 0.003, "max_drawdown": 0.025}
    config = bot_config(
        "halting",
        "ema_cross",
        params={"fast": 3, "slow": 8},
        costs={"fee_rate": 0.003, "slippage_bps": 10},
        risk=risk,
    )
    replay(any_engine, InProcessBus(), [config])
    result = research.backtest(
        all_specs()["ema_cross"],
        bars,
        config.params,
        config.costs,
        risk=RiskLimits(**risk),
        stops=Stops(),
        initial_cash=config.initial_cash,
    )
    np.testing.assert_array_equal(runner_fills(any_engine, "halting"), backtest_fills(result))
    fills = result.fills
    reasons = set(fills["reason"])
    assert {"daily_loss", "max_drawdown"} <= reasons, reasons  # both limits really fired
    with any_engine.connect() as connection:
        halts = connection.execute(
            select(schema.trades.c.bar_ts, schema.trades.c.reason)
            .where(schema.trades.c.bot_id == "halting", schema.trades.c.reason != "signal")
            .order_by(schema.trades.c.bar_ts)
        ).all()
    expected = [
        (int(ts.value // 10**6), reason)
        for ts, reason in zip(
            fills.loc[fills.reason != "signal", "bar_ts"],
            fills.loc[fills.reason != "signal", "reason"],
        )
    ]
    assert [(int(ts), reason) for ts, reason in halts] == expected
    assert not math.isnan(final_equity(any_engine, "halting"))


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.parametrize("first", [300, 2_500])
def test_a_replay_from_mid_series_records_the_backtest_from_that_start(
    pg_engine, redis_url, ada_btc_bars, first
):
    """``candela run --replay --from T``: every bot starts at the first bar closing at or after
    T with its history window of stored bars before it (all the bars there are when the start is
    nearer the first stored bar than a history window: 300 bars here, less than every shipped
    strategy's window but sma_cross's). Its fills equal ``research.backtest(..., start=T)``."""
    bars = ada_btc_bars[: first + 1_500]
    store_bars(pg_engine, ADA_BTC, bars)
    prefix = f"from-{first}-{uuid.uuid4().hex[:8]}"
    specs = all_specs()
    configs = [
        bot_config(f"{prefix}-{name}", name, costs=COSTS, **EXTRAS.get(name, {})) for name in specs
    ]
    windows = [specs[name].history_window(specs[name].make_params()) for name in specs]
    if first == 300:
        assert sum(window > first for window in windows) >= 4  # clamped at the first bar
    else:
        assert max(windows) < first  # whole history windows before the start
    start = int(bars.ts[first])
    bus = RedisBus(redis_url)
    try:
        reports = replay(pg_engine, bus, configs, from_ts=start)
        assert bus.flush(30)
    finally:
        bus.close()
    traded = 0
    for config in configs:
        assert reports[config.bot_id].status == "finished", reports[config.bot_id]
        assert count_rows(pg_engine, schema.signals, config.bot_id) == len(bars) - first
        result = research.backtest(
            specs[config.strategy],
            bars,
            config.params,
            config.costs,
            stops=config.stops,
            risk=config.risk,
            initial_cash=config.initial_cash,
            start=pd.Timestamp(start, unit="ms", tz="UTC"),
        )
        expected = backtest_fills(result)
        traded += len(expected) > 0
        np.testing.assert_array_equal(
            runner_fills(pg_engine, config.bot_id), expected, err_msg=config.strategy
        )
        assert final_equity(pg_engine, config.bot_id) == float(result.equity.iloc[-1])
    assert traded >= 5
