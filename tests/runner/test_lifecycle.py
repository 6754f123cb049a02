"""Lifecycle: startup is recovery, heartbeats, ``candela bots`` from another "terminal", replay CLI."""

from __future__ import annotations

import time

import numpy as np
from runner_support import (
    ADA_BTC,
    TRADE_COLUMNS,
    LiveRunner,
    backtest_fills,
    bot_config,
    count_rows,
    cursor_ts,
    replay,
    runner_fills,
    store_bars,
    table_rows,
    wait_for,
)
from sqlalchemy import select

import research
from candela.cli import main as candela
from candela.core import schema
from candela.core.bus import InProcessBus, market_channel
from strategies.registry import get_strategy


def test_bots_commands_stop_and_start_a_running_bot(any_engine, ada_btc_bars, capsys):
    url = any_engine.url.render_as_string(hide_password=False)
    bars = ada_btc_bars[:400]
    store_bars(any_engine, ADA_BTC, bars, 0, 300)
    config = bot_config("managed", "sma_cross", start=int(bars.ts[0]))
    bus = InProcessBus()
    events: list[str] = []
    bus.subscribe(["status:managed"], lambda _c, payload: events.append(payload["event"]))

    with LiveRunner(any_engine, bus, [config]):
        # startup is recovery: the stored bars are caught up without any market message
        wait_for(
            lambda: cursor_ts(any_engine, "managed") == bars.ts[299], message="startup catch-up"
        )
        wait_for(lambda: "heartbeat" in events, 10, message="a heartbeat")
        with any_engine.connect() as connection:
            assert connection.execute(select(schema.bots.c.heartbeat_at)).scalar() is not None

        assert candela(["--database-url", url, "bots", "stop", "managed"]) == 0
        wait_for(lambda: "stopped" in events, 10, message="the bot to stop")
        store_bars(any_engine, ADA_BTC, bars, 300, 400)
        bus.publish(market_channel(*ADA_BTC), {"ts": int(bars.ts[399])})
        time.sleep(0.4)
        assert cursor_ts(any_engine, "managed") == bars.ts[299]  # stopped bots do not trade
        capsys.readouterr()
        assert candela(["--database-url", url, "bots", "status", "managed"]) == 0
        assert "managed: stopped" in capsys.readouterr().out

        assert candela(["--database-url", url, "bots", "start", "managed"]) == 0
        wait_for(
            lambda: cursor_ts(any_engine, "managed") == bars.ts[399], message="the restarted bot"
        )
        capsys.readouterr()
        assert candela(["--database-url", url, "bots", "list"]) == 0
        listing = capsys.readouterr().out
        line = next(line for line in listing.splitlines() if line.startswith("managed "))
        assert line.split()[1] == "running"  # its runner hosts it and beats
    assert events.count("started") == 2 and events[-1] == "stopped"
    assert candela(["--database-url", url, "bots", "stop", "nobody"]) == 2
    result = research.backtest(get_strategy("sma_cross"), bars, None, config.costs)
    np.testing.assert_array_equal(runner_fills(any_engine, "managed"), backtest_fills(result))


def test_a_restarted_runner_continues_exactly_where_it_stopped(
    any_engine, sqlite_url, ada_btc_bars
):
    from runner_fixtures import _migrated_engine

    bars = ada_btc_bars[:1500]
    store_bars(any_engine, ADA_BTC, bars)
    configs = [
        bot_config(
            "resumed",
            "donchian_breakout",
            params={"allow_short": True},
            stops={"trailing_stop": 0.01},
        )
    ]
    for stop in (200, 201, 777, 1499):  # four runs, each one recovering the previous one's state
        replay(any_engine, InProcessBus(), configs, to_ts=int(bars.ts[stop]))
        assert cursor_ts(any_engine, "resumed") == bars.ts[stop]
    reference = _migrated_engine(sqlite_url.replace(".db", "-reference.db"))
    store_bars(reference, ADA_BTC, bars)
    replay(reference, InProcessBus(), configs)
    assert table_rows(any_engine, schema.trades, "resumed", TRADE_COLUMNS) == table_rows(
        reference, schema.trades, "resumed", TRADE_COLUMNS
    )
    assert table_rows(any_engine, schema.bot_state, "resumed", ("state_json",)) == table_rows(
        reference, schema.bot_state, "resumed", ("state_json",)
    )
    assert count_rows(any_engine, schema.signals, "resumed") == len(bars)
    reference.dispose()


def test_replay_command_feeds_only_the_requested_window(sqlite_url, ada_btc_bars, tmp_path, capsys):
    import json

    from runner_fixtures import _migrated_engine

    engine = _migrated_engine(sqlite_url)
    bars = ada_btc_bars[:600]
    store_bars(engine, ADA_BTC, bars)
    folder = tmp_path / "bots"
    folder.mkdir()
    exchange, symbol, timeframe = ADA_BTC
    (folder / "window.json").write_text(
        json.dumps(
            {
                "strategy": "sma_cross",
                "exchange": exchange,
                "symbol": symbol,
                "timeframe": timeframe,
            }
        )
    )
    start, end = int(bars.ts[100]), int(bars.ts[499])
    assert (
        candela(
            [
                "--database-url",
                sqlite_url,
                "run",
                "--bots",
                str(folder),
                "--replay",
                "--from",
                str(start),
                "--to",
                str(end),
            ]
        )
        == 0
    )
    assert "window" in capsys.readouterr().out
    signal_ts = [row[0] for row in table_rows(engine, schema.signals, "window", ("ts",))]
    assert signal_ts == bars.ts[100:500].tolist()
    # the history window came from the bars before --from: the decisions equal the full history's
    result = research.backtest(get_strategy("sma_cross"), bars[:500], None)
    target = np.nan_to_num(result.target)
    with engine.connect() as connection:
        raw = (
            connection.execute(
                select(schema.signals.c.raw_target)
                .where(schema.signals.c.bot_id == "window")
                .order_by(schema.signals.c.ts)
            )
            .scalars()
            .all()
        )
    np.testing.assert_array_equal(np.array(raw), target[100:500])
    assert (
        candela(
            ["--database-url", sqlite_url, "run", "--bots", str(folder), "--from", "2018-01-01"]
        )
        == 2
    )
    assert "add --replay" in capsys.readouterr().err
    engine.dispose()
