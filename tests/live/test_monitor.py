"""The live monitor: its notebook executed against a running replay (PostgreSQL, Redis), its
buttons against a live runner, its red flags against the conditions a runner records."""

from __future__ import annotations

import html
import re
import subprocess
import sys
import time

import nbformat
import numpy as np
import pandas as pd
import pytest
from market_files import market_file
from runner_support import (
    ADA_BTC,
    MINUTE_MS,
    LiveRunner,
    bot_config,
    cursor_ts,
    read_csv_bars,
    replay,
    store_bars,
    wait_for,
)
from sqlalchemy import select, text, update

from candela.cli import main as candela
from candela.cli.live.monitor import RED, Monitor
from candela.core import schema
from candela.core.bus import InProcessBus, RedisBus
from candela.core.db import connect, now_ms
from runner.health import HealthSettings, HealthWatch
from runner.ledger import register_bots

ADA_BTC_5M = ("bittrex", "ADA/BTC", "5m")
PLOTLY = "application/vnd.plotly.v1+json"


def _url(engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _events(engine, bot_id: str) -> list[str]:
    with engine.connect() as connection:
        return (
            connection.execute(
                select(schema.bot_events.c.event)
                .where(schema.bot_events.c.bot_id == bot_id)
                .order_by(schema.bot_events.c.id)
            )
            .scalars()
            .all()
        )


def _outputs(notebook):
    for cell in notebook.cells:
        yield from cell.get("outputs", [])


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_the_monitor_notebook_follows_a_running_replay(
    pg_url, redis_url, ada_btc_bars, repo_root, tmp_path
):
    engine = connect(pg_url)
    bars = ada_btc_bars[:4000]
    store_bars(engine, ADA_BTC, bars)
    # a bot whose runner saw its market stall (2018 bars) and then went away: two red flags
    other = read_csv_bars(market_file("ohlcv/bittrex_ADA-BTC_5m.csv.gz"), 5 * MINUTE_MS, limit=300)
    store_bars(engine, ADA_BTC_5M, other)
    with LiveRunner(engine, InProcessBus(), [bot_config("stalled", "sma_cross", ADA_BTC_5M)]):
        wait_for(
            lambda: "market_stalled" in _events(engine, "stalled"), 30, message="market_stalled"
        )
    configs = [
        bot_config(f"replay-{name}", name, start=int(bars.ts[0]))
        for name in ("ema_cross", "rsi_reversion", "sma_cross")
    ]

    # the notebook, executed as a user's papermill run would be, following for real
    name = f"candela-monitor-{time.time_ns()}"  # tells its database connection apart
    output = tmp_path / "monitor.ipynb"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "papermill",
            str(repo_root / "notebooks" / "04_live_monitor.ipynb"),
            str(output),
            "-p",
            "database_url",
            f"{pg_url}?application_name={name}",
            "-p",
            "redis_url",
            redis_url,
            "-p",
            "refresh",
            "0.2",
            "-p",
            "stale_after",
            "3",
            "-p",
            "run_for",
            "240",
            "-p",
            "until_caught_up",
            "True",
            "--cwd",
            str(repo_root / "notebooks"),
            "--no-progress-bar",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # the monitor subscribes to Redis before it opens the database: once connected, it listens
        wait_for(
            lambda: process.poll() is None and _connected(engine, name), 180, 0.2, "the monitor"
        )
        bus = RedisBus(redis_url)
        try:
            reports = replay(engine, bus, configs)
            assert bus.flush(10)
        finally:
            bus.close()
        log, _ = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, log
    assert {report.status for report in reports.values()} == {"finished"}

    notebook = nbformat.read(str(output), as_version=4)
    assert not [out for out in _outputs(notebook) if out.get("output_type") == "error"]
    summary = "".join(
        out.get("text", "") for out in _outputs(notebook) if out.get("output_type") == "stream"
    )
    counts = {
        label: int(value.replace(",", ""))
        for value, label in re.findall(r"([\d,]+) (refreshes|messages from Redis)", summary)
    }
    sources = re.search(
        r"candles: ([\d,]+) from Redis, ([\d,]+) from the database; fills: ([\d,]+) from Redis, "
        r"([\d,]+) from the database; the chart was updated ([\d,]+) times",
        summary,
    )
    assert sources, summary
    _, candles_db, fills_redis, _, updates = (
        int(value.replace(",", "")) for value in sources.groups()
    )
    assert (
        counts["messages from Redis"] > 0 and fills_redis > 0
    )  # the live feed: decisions and fills
    assert candles_db > 0  # a replay announces no bar: the candles are caught up from the database
    assert updates >= 2  # the chart moved on while the bots replayed

    page = "".join(
        out["data"]["text/html"] for out in _outputs(notebook) if "text/html" in out.get("data", {})
    )
    assert "need attention" in page and RED in page
    stalled_row = page[page.index("<b>stalled</b>") :].split("</tr>")[0]
    assert "heartbeat stale" in stalled_row and "market stalled" in stalled_row
    for config in configs:
        assert f"<b>{config.bot_id}</b>" in page

    # the chart it stopped at: the first bot, its last bar, its fills in view, its equity
    (figure,) = [out["data"][PLOTLY] for out in _outputs(notebook) if PLOTLY in out.get("data", {})]
    candles, buys, sells, equity = figure["data"]
    chosen = configs[0].bot_id
    assert chosen in figure["layout"]["title"]["text"]
    times = pd.to_datetime(candles["x"], utc=True)
    assert times[-1] == pd.Timestamp(int(bars.ts[-1]), unit="ms", tz="UTC") and len(times) == 120
    first = int(times[0].value // 1_000_000)
    with engine.connect() as connection:
        in_view = (
            connection.execute(
                select(schema.trades.c.side).where(
                    schema.trades.c.bot_id == chosen, schema.trades.c.bar_ts >= first
                )
            )
            .scalars()
            .all()
        )
        final = connection.execute(
            select(schema.bot_performance.c.equity)
            .where(schema.bot_performance.c.bot_id == chosen)
            .order_by(schema.bot_performance.c.ts.desc())
            .limit(1)
        ).scalar_one()
    assert (len(buys.get("x", [])), len(sells.get("x", []))) == (
        in_view.count("buy"),
        in_view.count("sell"),
    )
    assert equity["y"][-1] == pytest.approx(final, rel=0, abs=0)
    engine.dispose()


def _connected(engine, application_name: str) -> bool:
    with engine.connect() as connection:
        return bool(
            connection.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
                {"name": application_name},
            ).scalar()
        )


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
