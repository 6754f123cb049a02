"""The live monitor: its buttons against a live runner, its red flags against the conditions a
runner records, its chart against the bus (its notebook runs in ``tests/notebooks``)."""

from __future__ import annotations

import html
import time

import numpy as np
import pandas as pd
import pytest
from runner_support import (
    ADA_BTC,
    MINUTE_MS,
    LiveRunner,
    bot_config,
    cursor_ts,
    store_bars,
    wait_for,
)
from sqlalchemy import select, update

from candela.cli import main as candela
from candela.cli.live.monitor import RED, Monitor
from candela.cli.live.reconcile import reconcile
from candela.cli.live.records import load_records
from candela.core import schema
from candela.core.bus import InProcessBus, RedisBus
from candela.core.db import connect, now_ms
from runner.health import HealthSettings, HealthWatch
from runner.registry import register_bots


def _url(engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def test_the_buttons_stop_and_start_a_bot_as_the_command_line_does(
    any_engine, ada_btc_bars, monkeypatch, capsys
):
    monkeypatch.delenv("CANDELA_REDIS_URL", raising=False)
    url = _url(any_engine)
    bars = ada_btc_bars[:400]
    store_bars(any_engine, ADA_BTC, bars, 0, 300)
    bus = InProcessBus()
    statuses: list[str] = []
    bus.subscribe(["status:managed"], lambda _channel, payload: statuses.append(payload["event"]))
    with LiveRunner(any_engine, bus, [bot_config("managed", "sma_cross", start=int(bars.ts[0]))]):
        wait_for(lambda: cursor_ts(any_engine, "managed") == bars.ts[299], message="the catch-up")
        monitor = Monitor(url, bots=["managed"], refresh=0.05)
        try:
            assert monitor.choice.value == "managed"
            monitor.stop_button.click()
            wait_for(lambda: "stopped" in statuses, 10, message="the runner to stop the bot")
            # the button printed what the command prints, and recorded where it came from
            assert candela(["--database-url", url, "bots", "stop", "managed"]) == 0
            line = capsys.readouterr().out.strip()
            assert html.escape(line) in monitor.message.value
            assert monitor.rows[0].status == "stopped" and "stopped" in monitor.table.value
            store_bars(any_engine, ADA_BTC, bars, 300, 400)
            time.sleep(1.5)  # the bars wait for the bot: decided late, because it was stopped
            monitor.start_button.click()
            wait_for(
                lambda: cursor_ts(any_engine, "managed") == bars.ts[399],
                30,
                message="the restarted bot",
            )
            monitor.refresh()
            assert monitor.rows[0].status == "active" and monitor.rows[0].bars_behind == 0
            # its chart caught up from the database (no Redis here) to the last bar, fills included
            assert monitor.figure.data[0].x[-1] == pd.Timestamp(
                int(bars.ts[399]), unit="ms", tz="UTC"
            )
        finally:
            monitor.close()
    with any_engine.connect() as connection:
        details = connection.execute(
            select(schema.bot_events.c.event, schema.bot_events.c.detail)
            .where(
                schema.bot_events.c.bot_id == "managed",
                schema.bot_events.c.event.in_(["stop_requested", "start_requested"]),
            )
            .order_by(schema.bot_events.c.id)
        ).all()
    # the reconciliation tells those late decisions apart: the bot was stopped
    late = reconcile(load_records(any_engine, "managed"), on_time_ms=1000).service.late_runs
    assert [(run.cause, run.first_ts, run.last_ts) for run in late if run.cause != "slow"] == [
        ("stopped", bars.ts[300], bars.ts[399])
    ]
    assert [tuple(row) for row in details] == [
        ("stop_requested", "from the live monitor"),
        ("stop_requested", "from the command line"),
        ("start_requested", "from the live monitor"),
    ]


def test_the_banner_turns_red_for_a_stale_heartbeat_or_a_stalled_market(
    any_engine, ada_btc_bars, monkeypatch
):
    monkeypatch.delenv("CANDELA_REDIS_URL", raising=False)
    bars = ada_btc_bars[:200]
    store_bars(any_engine, ADA_BTC, bars)
    config = bot_config("watched", "sma_cross", start=int(bars.ts[0]))
    register_bots(any_engine, [config])

    def beat(at: int) -> None:
        with any_engine.begin() as connection:
            connection.execute(
                update(schema.bots).where(schema.bots.c.bot_id == "watched").values(heartbeat_at=at)
            )

    beat(now_ms() - 120_000)  # its runner died two minutes ago
    monitor = Monitor(_url(any_engine), stale_after=15)
    try:
        assert monitor.rows[0].flags == ["heartbeat stale"]
        assert "need attention" in monitor.banner.value and RED in monitor.banner.value
        assert "heartbeat stale (last 2 min" in monitor.banner.value

        beat(now_ms())
        monitor.refresh()
        assert monitor.rows[0].flags == [] and "healthy" in monitor.banner.value

        # a live runner's health check finds the market's bars stopped (the 2018 bars are old)
        watch = HealthWatch(any_engine, {ADA_BTC: ["watched"]}, settings=HealthSettings())
        assert [payload["event"] for _, payload in watch.check(["watched"])] == ["market_stalled"]
        monitor.refresh()
        assert monitor.rows[0].flags == ["market stalled"]
        assert (
            f"last bar {pd.Timestamp(int(bars.ts[-1]), unit='ms'):%Y-%m-%d %H:%M}"
            in monitor.banner.value
        )

        fresh = now_ms() // MINUTE_MS * MINUTE_MS
        store_bars(
            any_engine,
            ADA_BTC,
            bars.__class__(
                np.array([fresh]),
                bars.open[:1],
                bars.high[:1],
                bars.low[:1],
                bars.close[:1],
                bars.volume[:1],
                bars.timeframe_ms,
            ),
        )
        assert [payload["event"] for _, payload in watch.check(["watched"])] == ["market_resumed"]
        monitor.refresh()
        assert monitor.rows[0].flags == [] and "healthy" in monitor.banner.value
    finally:
        monitor.close()


@pytest.mark.postgres
@pytest.mark.redis
def test_the_chart_follows_the_bus_and_fills_a_gap_from_the_database(
    pg_url, redis_url, ada_btc_bars
):
    import asyncio

    from data_pipeline.publish import RedisPublisher, publish_bars
    from data_pipeline.store import store_bars as pipeline_store

    engine = connect(pg_url)
    bars = ada_btc_bars[:300]
    store_bars(engine, ADA_BTC, bars, 0, 200)
    publisher = RedisPublisher(redis_url)
    skipped = 260  # stored, never announced: a message the monitor (and the runner) missed

    def collect(index: int) -> None:  # what 'candela data collect' does with a closed bar
        part = slice(index, index + 1)
        columns = (
            bars.ts[part],
            bars.open[part],
            bars.high[part],
            bars.low[part],
            bars.close[part],
            bars.volume[part],
        )
        with engine.begin() as connection:
            pipeline_store(connection, *ADA_BTC, *columns)
        if index != skipped:
            publish_bars(publisher, *ADA_BTC, *columns)

    async def follow(monitor) -> None:
        task = asyncio.ensure_future(monitor.run(60))
        for index in range(200, 300):
            collect(index)
            await asyncio.sleep(0.03)
        for _ in range(300):
            if (
                monitor._chart.last_ts == bars.ts[299]
                and cursor_ts(engine, "followed") == bars.ts[299]
            ):
                break
            await asyncio.sleep(0.05)
        monitor.refresh()
        task.cancel()

    bus = RedisBus(redis_url)
    config = bot_config("followed", "sma_cross", start=int(bars.ts[0]))
    try:
        with LiveRunner(engine, bus, [config]):
            wait_for(lambda: cursor_ts(engine, "followed") == bars.ts[199], message="the catch-up")
            monitor = Monitor(pg_url, redis=redis_url, bots=["followed"], bars=150, refresh=0.2)
            try:
                asyncio.run(follow(monitor))
                # a fill announced late, of a bar the chart has moved past, stays out of it
                first = int(pd.Timestamp(monitor.figure.data[0].x[0]).value // 10**6)
                with engine.connect() as connection:
                    fills = (
                        connection.execute(
                            select(schema.trades)
                            .where(schema.trades.c.bot_id == "followed")
                            .order_by(schema.trades.c.bar_ts)
                        )
                        .mappings()
                        .all()
                    )
                old = [dict(fill) for fill in fills if fill["bar_ts"] < first]
                shown = len(monitor.figure.data[1].x) + len(monitor.figure.data[2].x)
                assert old and shown == len(fills) - len(old)
                received = monitor.counts["messages"]
                publisher.publish("trades:followed", old[-1])
                wait_for(
                    lambda: monitor.counts["messages"] > received or bool(monitor._queue),
                    10,
                    message="the late message",
                )
                monitor.refresh()
                assert len(monitor.figure.data[1].x) + len(monitor.figure.data[2].x) == shown
            finally:
                monitor.close()
    finally:
        bus.close()
        publisher.close()
    assert monitor.counts["bars_from_redis"] > 50  # most candles came over the bus as they closed
    assert monitor.counts["fills_from_redis"] + monitor.counts["fills_from_database"] > 0
    # no hole at the bar whose message was lost: the database filled it, values and all
    shown = pd.DataFrame(
        {
            "ts": pd.DatetimeIndex(monitor.figure.data[0].x).as_unit("ms").asi8,
            "close": monitor.figure.data[0].close,
        }
    )
    assert shown["ts"].tolist() == bars.ts[150:300].tolist()
    assert shown["close"].tolist() == bars.close[150:300].tolist()
    engine.dispose()
