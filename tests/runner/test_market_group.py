"""The market group: its bots' bars commit together, yet each bot stays exactly-once and isolated.

Real databases (SQLite and PostgreSQL) and real bars; the groups are driven directly, as the
runner's worker threads drive them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from runner_support import (
    ADA_BTC,
    backtest_fills,
    bot_config,
    count_rows,
    cursor_ts,
    runner_fills,
    store_bars,
    table_rows,
)

import research
from candela.core import schema
from runner import ledger, registry
from runner.bot import Bot, StrategyError, ThreadConnections
from runner.ledger import BarRecord
from runner.market_data import MarketFeed
from runner.market_group import MarketGroup, Member
from strategies.registry import get_strategy


class Departures:
    """Collects ``on_leave`` calls: ``{bot_id: error or None}``."""

    def __init__(self) -> None:
        self.left: dict[str, BaseException | None] = {}

    def member(self, bot: Bot) -> Member:
        return Member(bot, lambda: False, lambda error: self.left.__setitem__(bot.bot_id, error))


def _recovered(engine, config, begin_ts: int) -> Bot:
    bot = Bot(config)
    with engine.connect() as connection:
        bot.recover(connection, begin_ts)
    return bot


def _replay_group(
    engine, bots, departures, published, *, until_ts=None, batch_bars=500, pipelined=False
) -> None:
    """One replay pass (``follow=False``) of ``bots`` on a fresh group; ``pipelined``: full
    batches are committed by the group's writer thread while the next one is decided."""
    connections = ThreadConnections(engine)
    group = MarketGroup(
        MarketFeed(ADA_BTC),
        published.extend,
        follow=False,
        until_ts=until_ts,
        batch_bars=batch_bars,
        writer=connections.get if pipelined else None,
    )
    for bot in bots:
        group.join(departures.member(bot))
    try:
        group.run_pass(connections.get())
    finally:
        group.close()
        connections.close_all()
    assert group.idle


def _signal_ts(published, bot_id: str) -> list[int]:
    return [payload["ts"] for channel, payload in published if channel == f"signals:{bot_id}"]


@pytest.mark.parametrize("batch_bars, pipelined", [(1, False), (500, False), (7, True)])
def test_a_bot_whose_bar_is_already_recorded_reloads_while_the_others_commit(
    any_engine, ada_btc_bars, batch_bars, pipelined
):
    """Another runner recorded the ema bot's first bars: its first batch is refused (its stored
    cursor moved), it reloads and goes on, and the others commit as if nothing happened; with a
    bar per transaction, a batch of all bars, or batches of 7 committed while the next ones are
    decided (the refusal then arrives when the bot has decided its next batch already)."""
    bars = ada_btc_bars[:600]
    store_bars(any_engine, ADA_BTC, bars)
    begin = int(bars.ts[0])
    configs = [
        bot_config("batch-sma", "sma_cross"),
        bot_config("batch-ema", "ema_cross", params={"fast": 5, "slow": 15}),
        bot_config("batch-donchian", "donchian_breakout"),
    ]
    registry.register_bots(any_engine, configs)
    group_bots = [_recovered(any_engine, config, begin) for config in configs]

    # meanwhile "another runner" records the first 151 bars of the ema bot
    elsewhere, elsewhere_published = Departures(), []
    _replay_group(
        any_engine,
        [_recovered(any_engine, configs[1], begin)],
        elsewhere,
        elsewhere_published,
        until_ts=int(bars.ts[150]),
    )
    assert cursor_ts(any_engine, "batch-ema") == bars.ts[150]

    departures, published = Departures(), []
    _replay_group(
        any_engine, group_bots, departures, published, batch_bars=batch_bars, pipelined=pipelined
    )

    assert departures.left == {
        config.bot_id: None for config in configs
    }  # all finished, none failed
    for config in configs:
        assert count_rows(any_engine, schema.signals, config.bot_id) == len(
            bars
        )  # each bar exactly once
        assert count_rows(any_engine, schema.bot_performance, config.bot_id) == len(bars)
        result = research.backtest(get_strategy(config.strategy), bars, config.params, config.costs)
        np.testing.assert_array_equal(
            runner_fills(any_engine, config.bot_id), backtest_fills(result)
        )
    # the ema bot's first bar conflicted: it published nothing for the bars recorded elsewhere
    assert _signal_ts(published, "batch-ema") == bars.ts[151:].tolist()
    assert _signal_ts(published, "batch-sma") == bars.ts.tolist()


def test_a_bot_whose_strategy_raises_leaves_alone_and_the_others_commit_that_bar(
    any_engine, ada_btc_bars
):
    bars = ada_btc_bars[:300]
    store_bars(any_engine, ADA_BTC, bars)
    fail_at = int(bars.ts[120])
    configs = [
        bot_config("healthy", "sma_cross"),
        bot_config("broken", "runner_test_strategies:BROKEN", params={"fail_at_ts": fail_at}),
    ]
    registry.register_bots(any_engine, configs)
    departures, published = Departures(), []
    _replay_group(
        any_engine,
        [_recovered(any_engine, config, int(bars.ts[0])) for config in configs],
        departures,
        published,
    )

    error = departures.left["broken"]
    assert isinstance(error, StrategyError) and error.bar_ts == fail_at
    assert departures.left["healthy"] is None
    assert cursor_ts(any_engine, "broken") == bars.ts[119]  # nothing of the failing bar was written
    assert count_rows(any_engine, schema.signals, "broken") == 120
    assert _signal_ts(published, "broken") == bars.ts[:120].tolist()
    assert count_rows(any_engine, schema.signals, "healthy") == len(bars)
    assert _signal_ts(published, "healthy") == bars.ts.tolist()
    result = research.backtest(get_strategy("sma_cross"), bars, None, configs[0].costs)
    np.testing.assert_array_equal(runner_fills(any_engine, "healthy"), backtest_fills(result))


def _record(
    bot_id: str, ts: int, value: float, text: str, previous_ts: int | None = None
) -> BarRecord:
    return BarRecord(
        bot_id=bot_id,
        bar_ts=ts,
        signal=dict(
            bot_id=bot_id,
            ts=ts,
            action="buy",
            target=value,
            raw_target=-value,
            price=value,
            executed=True,
            indicators_json=text,
            created_at=ts,
        ),
        trades=[
            dict(
                bot_id=bot_id,
                bar_ts=ts,
                seq=seq,
                ts=ts - 60_000,
                side="buy",
                size=value,
                price=value,
                fee=value,
                reason="signal",
                realized_pnl=-value,
                cash_after=value,
                position_after=value,
                created_at=ts,
            )
            for seq in range(2)
        ],
        state=dict(
            bot_id=bot_id, cash=value, position=-value, cursor_ts=ts, state_json=text, updated_at=ts
        ),
        performance=dict(
            bot_id=bot_id, ts=ts, equity=value, cash=value, position=-value, price=value
        ),
        previous_ts=previous_ts,
    )


def test_write_bars_commits_each_new_bar_exactly_once_and_values_round_trip(any_engine):
    configs = [bot_config(f"writer-{index}", "sma_cross") for index in range(3)]
    registry.register_bots(any_engine, configs)
    awkward = 'say "hi" \\ {a,b} NULL é'
    values = {"writer-0": 1 / 3, "writer-1": 5e-324, "writer-2": -123456.78901234567}

    def connect():
        connection = any_engine.connect()
        if connection.dialect.name == "postgresql":
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        return connection

    with connect() as connection:
        first = [_record("writer-0", 1000, values["writer-0"], awkward)]
        assert ledger.write_bars(connection, first) == {"writer-0"}
        batch = [_record(bot_id, 1000, value, awkward) for bot_id, value in values.items()]
        assert ledger.write_bars(connection, batch) == {"writer-1", "writer-2"}  # writer-0 had it
        assert ledger.write_bars(connection, []) == set()
        with pytest.raises(ValueError, match="consecutive"):
            ledger.write_bars(
                connection,
                [
                    _record("writer-1", 2000, 1.0, "x", 1000),
                    _record("writer-1", 3000, 1.0, "x", 1000),
                ],
            )

    for bot_id, value in values.items():
        assert count_rows(any_engine, schema.signals, bot_id) == 1
        assert count_rows(any_engine, schema.trades, bot_id) == 2
        with any_engine.connect() as connection:
            signal = connection.execute(
                schema.signals.select().where(schema.signals.c.bot_id == bot_id)
            ).one()
            state = connection.execute(
                schema.bot_state.select().where(schema.bot_state.c.bot_id == bot_id)
            ).one()
            trade = connection.execute(
                schema.trades.select().where(schema.trades.c.bot_id == bot_id)
            ).first()
        assert (signal.target, signal.raw_target, signal.indicators_json) == (
            value,
            -value,
            awkward,
        )
        assert (state.cash, state.position, state.cursor_ts, state.state_json) == (
            value,
            -value,
            1000,
            awkward,
        )
        assert (trade.realized_pnl, trade.ts) == (-value, 1000 - 60_000)
        assert not math.isnan(state.cash)


def test_write_bars_commits_a_bots_bars_only_from_its_stored_cursor_all_or_none(any_engine):
    """Several bars per bot in one batch: written only if the bot's stored cursor is the one the
    batch continues; a stale batch writes nothing for that bot and the others still commit."""
    configs = [bot_config(f"chain-{index}", "sma_cross") for index in range(2)]
    registry.register_bots(any_engine, configs)

    def chain(bot_id, first_ts, count, previous_ts):
        records, previous = [], previous_ts
        for ts in range(first_ts, first_ts + 1000 * count, 1000):
            records.append(_record(bot_id, ts, ts / 7, f"{bot_id} {ts}", previous))
            previous = ts
        return records

    connection = any_engine.connect()
    if connection.dialect.name == "postgresql":
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
    with connection:
        # interleaved in bar order, as the market group batches them
        pairs = zip(chain("chain-0", 1000, 3, None), chain("chain-1", 1000, 3, None), strict=True)
        first = [record for pair in pairs for record in pair]
        assert ledger.write_bars(connection, first) == {"chain-0", "chain-1"}
        assert ledger.write_bars(
            connection, chain("chain-0", 4000, 2, 3000) + chain("chain-1", 2000, 2, 1000)
        ) == {"chain-0"}  # 1 is stale
        # not chain-1's first bar any more
        assert ledger.write_bars(connection, chain("chain-1", 1000, 1, None)) == set()

    def decided(bot_id):
        return [ts for (ts,) in table_rows(any_engine, schema.signals, bot_id, ("ts",))]

    assert decided("chain-0") == [1000, 2000, 3000, 4000, 5000]
    assert decided("chain-1") == [1000, 2000, 3000]
    assert count_rows(any_engine, schema.bot_performance, "chain-1") == 3
    assert count_rows(any_engine, schema.trades, "chain-0") == 10
    assert cursor_ts(any_engine, "chain-0") == 5000 and cursor_ts(any_engine, "chain-1") == 3000
    with any_engine.connect() as connection:
        state = connection.execute(
            schema.bot_state.select().where(schema.bot_state.c.bot_id == "chain-0")
        ).one()
    assert (state.cash, state.state_json) == (5000 / 7, "chain-0 5000")  # the batch's last state
