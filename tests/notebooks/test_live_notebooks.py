"""The live-operations notebooks executed with papermill: the monitor against a running replay
(PostgreSQL, Redis), and the reconciliation report rendered to HTML without code."""

from __future__ import annotations

import dataclasses
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
    FAST_SETTINGS,
    MINUTE_MS,
    LiveRunner,
    bot_config,
    read_csv_bars,
    replay,
    runner_fills,
    store_bars,
    wait_for,
)
from sqlalchemy import select, text

from candela.cli import main as candela
from candela.cli.live.monitor import RED
from candela.core import schema
from candela.core.bus import InProcessBus, RedisBus
from candela.core.db import connect
from research.formatting import fmt_time

ADA_BTC_5M = ("bittrex", "ADA/BTC", "5m")
PLOTLY = "application/vnd.plotly.v1+json"


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
            str(repo_root / "notebooks" / "06_live_monitor.ipynb"),
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
            # one bar per commit and short reads, at the pace of live bars: a fill reaches the
            # monitor over Redis before its refresh could read it from the database (a replay's
            # default 2,000-bar commits are published long after the rows can be read)
            paced = dataclasses.replace(FAST_SETTINGS, batch_bars=1, chunk=50)
            reports = replay(engine, bus, configs, settings=paced)
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


@pytest.mark.slow
def test_the_report_is_an_html_page_without_code(sqlite_url, ada_btc_bars, tmp_path, capsys):
    import nbformat

    from candela.core.db import connect, upgrade
    from data_pipeline.store import store_bars as pipeline_store

    engine = connect(sqlite_url, require_schema=False)
    upgrade(engine)
    bars = ada_btc_bars[:900]
    store_bars(engine, ADA_BTC, bars)
    config = bot_config(
        "reported", "sma_cross", params={"fast": 5, "slow": 20}, start=int(bars.ts[100])
    )
    replay(engine, InProcessBus(), [config])
    fill_bar = int(
        bars.ts.searchsorted(int(runner_fills(engine, "reported")[2, 0]) + bars.timeframe_ms)
    )
    opens = bars.open.copy()
    opens[fill_bar] *= 1.01  # the open a paper fill used is corrected afterwards
    with engine.begin() as connection:
        pipeline_store(
            connection,
            *ADA_BTC,
            bars.ts,
            opens,
            np.maximum(bars.high, opens),
            bars.low,
            bars.close,
            bars.volume,
            revise=True,
        )
    engine.dispose()
    out = tmp_path / "out"
    capsys.readouterr()
    assert (
        candela(
            [
                "--database-url",
                sqlite_url,
                "bots",
                "reconcile",
                "reported",
                "--report",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.rstrip().endswith(f"report: {out / 'reconcile_reported.html'}")
    assert sorted(path.name for path in out.iterdir()) == [
        "reconcile_reported.html",
        "reconcile_reported.ipynb",
    ]
    page = (out / "reconcile_reported.html").read_text()
    assert "load_records(" not in page and "from candela" not in page  # outputs only, no code
    assert '<script src="http' not in page and "plotly" in page  # plotly.js is in the page itself
    notebook = nbformat.read(str(out / "reconcile_reported.ipynb"), as_version=4)
    html = "".join(
        output.get("data", {}).get("text/html", "")
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )
    assert f"bar {fmt_time(int(bars.ts[fill_bar]))} revised" in html
    figures = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if "application/vnd.plotly.v1+json" in output.get("data", {})
    ]
    assert len(figures) == 1  # the fills chart; a replay has no live decision to time
