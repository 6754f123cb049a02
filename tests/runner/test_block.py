"""The replay's block path (``runner.block``) decides and records exactly what the per-bar path
does: one strategy evaluation per block of bars, the same values at every bar, the same rows.

Real bars (Bittrex ADA/BTC 1m), real databases (SQLite and PostgreSQL), every shipped strategy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from runner_support import ADA_BTC, TRADE_COLUMNS, bot_config, store_bars, table_rows

from candela.core import schema
from research.types import Bars
from runner import registry
from runner.block import decide_block, rows_to_arrays
from runner.bot import Bot, ThreadConnections
from runner.market_data import MarketFeed
from runner.market_group import MarketGroup, Member
from strategies.registry import all_specs

EXTRAS = {  # stops and risk limits, so that protective exits and halts are recorded too
    "sma_cross": {"stops": {"stop_loss": 0.01, "trailing_stop": 0.02}},
    "ema_cross": {"risk": {"max_position": 1.0, "daily_loss_limit": 0.02, "max_drawdown": 0.3}},
    "bollinger_breakout": {"stops": {"take_profit": 0.01}},
}
COSTS = {"fee_rate": 0.0025, "slippage_bps": 5.0}


def _window(bars: Bars, start: int, stop: int) -> Bars:
    return Bars(
        *(getattr(bars, name)[start:stop] for name in ("ts", *Bars.COLUMNS)), bars.timeframe_ms
    )


def _per_bar(spec, params, bars: Bars, t: int, history: int):
    """The per-bar path's decision at bar ``t``: the last ``history`` bars, clamped at 0."""
    target, series = spec.target_and_indicators(
        _window(bars, max(t - history + 1, 0), t + 1), params
    )
    values = {name: float(values[-1]) for name, values in series.items()}
    return float(target[-1]), {k: None if math.isnan(v) else v for k, v in values.items()}


@pytest.mark.parametrize("name", sorted(all_specs()))
def test_block_decisions_equal_the_per_bar_window_decisions(name, ada_btc_bars):
    """For every shipped strategy, blocks of 1, 7, 300 and 1,500 bars (the first one inside the
    clamped start of the series, where no whole history window is stored yet) give, at every
    bar checked, the target and indicator values of the per-bar window, bit for bit."""
    spec = all_specs()[name]
    params = spec.make_params()
    history = spec.history_window(params)
    bars = ada_btc_bars[:2_900]
    rows = list(
        zip(
            bars.ts.tolist(),
            bars.open.tolist(),
            bars.high.tolist(),
            bars.low.tolist(),
            bars.close.tolist(),
            bars.volume.tolist(),
        )
    )
    rng = np.random.default_rng(7)
    start = 0
    for size in (1, 7, 300, 1_500, 1_092):
        stop = start + size
        before = _window(bars, max(start - history, 0), start)
        ts, values = rows_to_arrays(rows[start:stop])
        decided = decide_block(
            spec,
            params,
            (before.ts, before.open, before.high, before.low, before.close, before.volume),
            ts,
            values,
            bars.timeframe_ms,
        )
        checked = {start, stop - 1, *rng.integers(start, stop, 12).tolist()}
        for t in sorted(checked):
            target, indicators = _per_bar(spec, params, bars, t, history)
            i = t - start
            assert decided.target[i] == target or (
                math.isnan(target) and np.isnan(decided.target[i])
            )
            assert {key: column[i] for key, column in decided.indicators.items()} == indicators
        start = stop
    assert start == len(bars)


def _group_pass(engine, bots, published, *, follow, until_ts=None, batch_bars=500, chunk=2000):
    connections = ThreadConnections(engine)
    group = MarketGroup(
        MarketFeed(ADA_BTC),
        published.extend,
        follow=follow,
        until_ts=until_ts,
        batch_bars=batch_bars,
        chunk=chunk,
        writer=connections.get,
    )
    left = {}
    for bot in bots:
        group.join(
            Member(bot, lambda: False, lambda error, b=bot: left.__setitem__(b.bot_id, error))
        )
    try:
        group.run_pass(connections.get())
    finally:
        group.close()
        connections.close_all()
    assert all(error is None for error in left.values()), left


def _bots(engine, prefix: str, begin: int) -> list[Bot]:
    configs = [
        bot_config(f"{prefix}-{name}", name, costs=COSTS, **EXTRAS.get(name, {}))
        for name in sorted(all_specs())
    ]
    registry.register_bots(engine, configs)
    bots = []
    for config in configs:
        bot = Bot(config)
        with engine.connect() as connection:
            bot.recover(connection, begin)
        bots.append(bot)
    return bots


def _ledger(engine, bot_id: str) -> dict:
    return dict(
        signals=table_rows(
            engine,
            schema.signals,
            bot_id,
            ("ts", "action", "target", "raw_target", "price", "executed", "indicators_json"),
        ),
        performance=table_rows(
            engine, schema.bot_performance, bot_id, ("ts", "equity", "cash", "position", "price")
        ),
        trades=table_rows(engine, schema.trades, bot_id, TRADE_COLUMNS),
        state=table_rows(
            engine, schema.bot_state, bot_id, ("cash", "position", "cursor_ts", "state_json")
        ),
    )


def _messages(published, bot_id: str) -> list[tuple[str, dict]]:
    varying = ("published_at", "created_at", "bot_id")
    return [
        (channel.split(":")[0], {k: v for k, v in payload.items() if k not in varying})
        for channel, payload in published
        if channel.endswith(f":{bot_id}")
    ]


def test_a_block_replay_records_and_publishes_what_the_per_bar_path_does(any_engine, ada_btc_bars):
    """Every shipped strategy (some with stops and risk limits), 1,600 real bars with one bad
    bar in them: the per-bar path (a live group), the block path with blocks cut by small
    batches (7 bars) and reads (300 bars, less than most history windows), and the block path
    stopped inside a block and restarted from the stored cursor all record the same signals,
    equity snapshots, fills and final state, and publish the same messages."""
    bars = ada_btc_bars[:1_600]
    bad = 777  # a bar the execution function rejects (its high below its low)
    high = bars.high.copy()
    high[bad] = bars.low[bad] / 2
    bars = Bars(bars.ts, bars.open, high, bars.low, bars.close, bars.volume, bars.timeframe_ms)
    store_bars(any_engine, ADA_BTC, bars)
    begin = int(bars.ts[0])

    per_bar = []
    _group_pass(any_engine, _bots(any_engine, "each", begin), per_bar, follow=True)
    block = []
    _group_pass(
        any_engine, _bots(any_engine, "block", begin), block, follow=False, batch_bars=7, chunk=300
    )
    restarted = []
    _group_pass(
        any_engine,
        _bots(any_engine, "again", begin),
        restarted,
        follow=False,
        until_ts=int(bars.ts[1_111]),  # inside the third block of 500
    )
    _group_pass(any_engine, _bots(any_engine, "again", begin), restarted, follow=False)

    for name in sorted(all_specs()):
        expected = _ledger(any_engine, f"each-{name}")
        assert len(expected["signals"]) == len(bars)
        assert "error" in expected["signals"][bad][-1]  # the bad bar is recorded as such
        for prefix, published in (("block", block), ("again", restarted)):
            assert _ledger(any_engine, f"{prefix}-{name}") == expected, (prefix, name)
            assert _messages(published, f"{prefix}-{name}") == _messages(per_bar, f"each-{name}"), (
                prefix,
                name,
            )
    assert any(_ledger(any_engine, f"each-{name}")["trades"] for name in all_specs())
