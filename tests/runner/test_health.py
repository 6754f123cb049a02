"""A live runner announces stalled markets, stale heartbeats and bots left behind on
``system:events`` (and records them in ``bot_events``); a replay announces none of them."""

from __future__ import annotations

import json

import numpy as np
from runner_support import (
    ADA_BTC,
    MINUTE_MS,
    LiveRunner,
    bot_config,
    cursor_ts,
    replay,
    store_bars,
    wait_for,
)
from sqlalchemy import select, update

from candela.core import schema
from candela.core.bus import SYSTEM_EVENTS, InProcessBus
from candela.core.db import now_ms
from research.types import Bars
from runner.health import CONDITION_EVENTS, HealthSettings
from runner.registry import register_bots


def _listen(bus) -> list[dict]:
    notices: list[dict] = []
    bus.subscribe([SYSTEM_EVENTS], lambda _channel, payload: notices.append(payload))
    return notices


def _named(notices, event):
    return [notice for notice in notices if notice["event"] == event]


def _recorded(engine, bot_id):
    with engine.connect() as connection:
        return [
            (row.event, json.loads(row.detail))
            for row in connection.execute(
                select(schema.bot_events)
                .where(
                    schema.bot_events.c.bot_id == bot_id,
                    schema.bot_events.c.event.in_(CONDITION_EVENTS),
                )
                .order_by(schema.bot_events.c.id)
            )
        ]


def _shifted(bars: Bars, last_close: int) -> Bars:
    """The same real bars, moved in time so that the last one closes at ``last_close``."""
    return Bars(
        bars.ts - bars.ts[-1] + last_close,
        bars.open,
        bars.high,
        bars.low,
        bars.close,
        bars.volume,
        bars.timeframe_ms,
    )


def test_a_market_whose_bars_stop_is_announced_and_so_is_its_recovery(any_engine, ada_btc_bars):
    bars = ada_btc_bars[:300]
    store_bars(any_engine, ADA_BTC, bars, 0, 200)  # 2017 bars: the next one is long overdue
    config = bot_config("watched", "sma_cross", start=int(bars.ts[0]))
    bus = InProcessBus()
    notices = _listen(bus)
    with LiveRunner(any_engine, bus, [config]):
        wait_for(lambda: _named(notices, "market_stalled"), 20, message="market_stalled")
        stalled = _named(notices, "market_stalled")[0]
        assert (stalled["exchange"], stalled["symbol"], stalled["timeframe"]) == ADA_BTC
        assert stalled["last_bar_ts"] == bars.ts[199] and stalled["bots"] == ["watched"]
        assert stalled["overdue_ms"] > 0
        # bars arrive again, the newest closing now: the market is live again
        fresh = _shifted(bars[200:300], now_ms() // MINUTE_MS * MINUTE_MS)
        store_bars(any_engine, ADA_BTC, fresh)
        wait_for(lambda: _named(notices, "market_resumed"), 20, message="market_resumed")
        assert _named(notices, "market_resumed")[0]["last_bar_ts"] == fresh.ts[-1]
        assert len(_named(notices, "market_stalled")) == 1  # a condition is announced once
    assert [event for event, _ in _recorded(any_engine, "watched")] == [
        "market_stalled",
        "market_resumed",
    ]


def test_a_bot_whose_runner_died_is_announced_by_a_live_runner(any_engine, ada_btc_bars):
    bars = ada_btc_bars[:100]
    store_bars(any_engine, ADA_BTC, bars)
    hosted = bot_config("hosted", "sma_cross", start=int(bars.ts[0]))
    orphan = bot_config("orphan", "sma_cross", start=int(bars.ts[0]))
    register_bots(any_engine, [orphan])  # registered and run by a runner that has died since
    last_beat = now_ms() - 60_000
    with any_engine.begin() as connection:
        connection.execute(
            update(schema.bots)
            .where(schema.bots.c.bot_id == "orphan")
            .values(heartbeat_at=last_beat)
        )
    bus = InProcessBus()
    notices = _listen(bus)
    with LiveRunner(any_engine, bus, [hosted], health=HealthSettings(stale_after_ms=5_000)):
        wait_for(lambda: _named(notices, "heartbeat_stale"), 20, message="heartbeat_stale")
        stale = _named(notices, "heartbeat_stale")
        assert [notice["bot_id"] for notice in stale] == ["orphan"]  # never its own bots
        assert stale[0]["heartbeat_at"] == last_beat and stale[0]["age_ms"] >= 60_000
        with any_engine.begin() as connection:  # its runner comes back
            connection.execute(
                update(schema.bots)
                .where(schema.bots.c.bot_id == "orphan")
                .values(heartbeat_at=now_ms())
            )
        wait_for(lambda: _named(notices, "heartbeat_resumed"), 20, message="heartbeat_resumed")
    assert [event for event, _ in _recorded(any_engine, "orphan")] == [
        "heartbeat_stale",
        "heartbeat_resumed",
    ]
    assert not [
        event for event, _ in _recorded(any_engine, "hosted") if event.startswith("heartbeat")
    ]


def test_a_bot_catching_up_for_long_is_announced_behind_then_caught_up(any_engine, ada_btc_bars):
    # 3,000 bars decided one by one at a millisecond each: behind for seconds, surely across
    # several health checks (a fast catch-up could end between two and never be announced)
    bars = _shifted(ada_btc_bars[:3000], now_ms() // MINUTE_MS * MINUTE_MS)
    store_bars(any_engine, ADA_BTC, bars)
    config = bot_config("lagging", "runner_test_strategies:slow", start=int(bars.ts[0]))
    bus = InProcessBus()
    notices = _listen(bus)
    with LiveRunner(any_engine, bus, [config], health=HealthSettings(stale_after_ms=100)):
        wait_for(
            lambda: cursor_ts(any_engine, "lagging") == bars.ts[-1], 120, message="the catch-up"
        )
        wait_for(lambda: _named(notices, "bot_caught_up"), 20, message="bot_caught_up")
    behind = _named(notices, "bot_behind")
    assert len(behind) == 1 and behind[0]["bot_id"] == "lagging"
    assert behind[0]["newest_ts"] == bars.ts[-1]
    # bars_behind counts the stored bars after the cursor it reports
    position = int(np.searchsorted(bars.ts, behind[0]["cursor_ts"]))
    assert behind[0]["bars_behind"] == len(bars) - 1 - position > 0
    assert [event for event, _ in _recorded(any_engine, "lagging")] == [
        "bot_behind",
        "bot_caught_up",
    ]


def test_a_replay_announces_no_condition(any_engine, ada_btc_bars):
    bars = ada_btc_bars[:500]
    store_bars(any_engine, ADA_BTC, bars)
    bus = InProcessBus()
    notices = _listen(bus)
    replay(any_engine, bus, [bot_config("replayed", "sma_cross", start=int(bars.ts[0]))])
    assert [notice["event"] for notice in notices][0] == "runner_started"
    assert not [notice for notice in notices if notice["event"] in CONDITION_EVENTS]
    assert cursor_ts(any_engine, "replayed") == bars.ts[-1]
