"""Fault tests: no crash, outage or failing strategy loses or duplicates a trade.

(a) the runner process is killed with SIGKILL at 20+ random points of a replay and restarted
    each time: the final ledger equals an uninterrupted run's. It commits 7 bars per bot per
    transaction, and each kill lands a random 0-15 ms after a commit was seen: inside the next
    batch (being decided, or being committed), so the kills prove what a crash inside a batch
    does: its uncommitted bars are neither kept nor published, and are processed again;
(b) Redis (our own server on a spare port) stops mid-run: bars are still processed through the
    database poll, and publishing resumes when Redis returns;
(c) PostgreSQL becomes unreachable (a TCP proxy in front of it is cut): the runner retries with
    backoff, writes nothing partial, then catches up;
(d) one bot's strategy raises: only that bot restarts (then fails), the others trade unaffected.

Real PostgreSQL, Redis and market data throughout; the misbehaving strategies are injected
through bot configs (``runner_test_strategies:NAME``), nothing is patched.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from runner_fixtures import _migrated_engine
from runner_support import (
    ADA_BTC,
    FAST_SETTINGS,
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
from sqlalchemy import func, select
from tcp_proxy import TcpProxy

import research
from candela.core import schema
from candela.core.bus import InProcessBus, RedisBus, market_channel
from candela.core.db import connect
from strategies.registry import get_strategy

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
KILL_BOTS = {
    "kill-sma": {
        "strategy": "sma_cross",
        "params": {"fast": 5, "slow": 20},
        "stops": {"stop_loss": 0.01, "trailing_stop": 0.015},
    },
    "kill-donchian": {"strategy": "donchian_breakout", "params": {"allow_short": True}},
}


def _write_configs(folder: Path, bots: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    exchange, symbol, timeframe = ADA_BTC
    for bot_id, fields in bots.items():
        data = dict(
            exchange=exchange,
            symbol=symbol,
            timeframe=timeframe,
            costs={"fee_rate": 0.0025, "slippage_bps": 5},
            **fields,
        )
        (folder / f"{bot_id}.json").write_text(json.dumps(data))


def _ledger(engine, bot_id):
    return (
        table_rows(engine, schema.trades, bot_id, TRADE_COLUMNS),
        table_rows(
            engine,
            schema.signals,
            bot_id,
            ("ts", "action", "target", "raw_target", "price", "executed"),
        ),
        table_rows(engine, schema.bot_performance, bot_id, ("ts", "equity", "cash", "position")),
        table_rows(
            engine, schema.bot_state, bot_id, ("cash", "position", "cursor_ts", "state_json")
        ),
    )


@pytest.mark.slow
@pytest.mark.postgres
def test_kill_9_at_random_points_loses_and_duplicates_nothing(
    pg_url, sqlite_url, ada_btc_bars, tmp_path
):
    bars = ada_btc_bars[:1000]
    folder = tmp_path / "bots"
    _write_configs(folder, KILL_BOTS)
    engine = connect(pg_url)
    store_bars(engine, ADA_BTC, bars)

    # the uninterrupted reference run (in-process, its own database)
    reference = _migrated_engine(sqlite_url)
    store_bars(reference, ADA_BTC, bars)
    from runner.config import load_bot_configs

    replay(reference, InProcessBus(), load_bot_configs(folder))

    env = dict(os.environ, CANDELA_DATABASE_URL=pg_url, PYTHONPATH=str(HERE))
    env.pop("CANDELA_REDIS_URL", None)
    command = [
        sys.executable,
        "-m",
        "candela.cli",
        "run",
        "--bots",
        str(folder),
        "--replay",
        "--poll",
        "0.05",
        "--batch-bars",
        "7",
    ]
    total = len(bars) * len(KILL_BOTS)
    rng = random.Random(20261121)
    # kill points in the first three quarters: a replay that got faster (some 30,000 bot-bars/s
    # here) finished the last 50 bars within the kill's random delay, leaving the final run no
    # work; a quarter of the run is left for it whatever the speed
    thresholds = sorted(rng.sample(range(20, total * 3 // 4), 21))

    def recorded() -> int:
        with engine.connect() as connection:
            return int(
                connection.execute(select(func.count()).select_from(schema.signals)).scalar_one()
            )

    killed_mid_run = 0
    for threshold in thresholds:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            while process.poll() is None and recorded() < threshold:
                time.sleep(0.003)
            time.sleep(rng.uniform(0, 0.015))  # somewhere inside the next batch
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                killed_mid_run += 1
            process.wait(timeout=30)
        if process.returncode not in (-signal.SIGKILL, 0):
            pytest.fail(
                f"runner exited with {process.returncode}: {process.stderr.read().decode()[-2000:]}"
            )
        process.stderr.close()
    assert killed_mid_run >= 20
    assert recorded() < total, "the kills should leave work for the final run"
    final = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-2000:]

    for bot_id in KILL_BOTS:
        trades, signals, performance, state = _ledger(engine, bot_id)
        assert len(signals) == len(bars)  # every bar once: none lost, none duplicated
        assert len(performance) == len(bars)
        assert (trades, signals, performance, state) == _ledger(reference, bot_id)
    reference.dispose()
    engine.dispose()


@pytest.fixture
def own_redis(free_tcp_port):
    """Our own redis-server on a spare port (never the shared one); yields start/stop control."""
    executable = shutil.which("redis-server")
    if executable is None:
        message = "redis-server not installed (the Redis outage test starts its own server)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (required when CI=true)", pytrace=False)
        pytest.skip(message)
    port = free_tcp_port

    class Server:
        url = f"redis://127.0.0.1:{port}/0"
        process = None

        def start(self):
            self.process = subprocess.Popen(
                [
                    executable,
                    "--port",
                    str(port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--bind",
                    "127.0.0.1",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            import redis

            client = redis.Redis.from_url(self.url)
            wait_for(lambda: _pings(client), 10, message="redis-server to start")
            client.close()

        def stop(self):
            if self.process is not None:
                self.process.kill()
                self.process.wait(10)
                self.process = None

    server = Server()
    server.start()
    yield server
    server.stop()


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.slow
@pytest.mark.postgres
def test_redis_outage_bars_still_processed_and_publishing_resumes(
    pg_engine, own_redis, ada_btc_bars, caplog
):
    bars = ada_btc_bars[:700]
    config = bot_config("redis-outage", "sma_cross", start=int(bars.ts[0]))
    channel = market_channel(*ADA_BTC)
    bus = RedisBus(own_redis.url)
    pipeline = RedisBus(own_redis.url)  # the "data pipeline": commits bars, then publishes
    signals: list[dict] = []
    lock = threading.Lock()

    def on_signal(_channel, payload):
        with lock:
            signals.append(payload)

    listener = RedisBus(own_redis.url)
    listener.subscribe([f"signals:{config.bot_id}"], on_signal)

    def feed(start, stop):
        store_bars(pg_engine, ADA_BTC, bars, start, stop)
        pipeline.publish(channel, {"ts": int(bars.ts[stop - 1])})

    settings = FAST_SETTINGS.__class__(**{**FAST_SETTINGS.__dict__, "poll_interval": 0.3})
    try:
        with LiveRunner(pg_engine, bus, [config], settings=settings):
            feed(0, 200)
            wait_for(
                lambda: cursor_ts(pg_engine, config.bot_id) == bars.ts[199], message="first bars"
            )
            wait_for(lambda: len(signals) == 200, 10, message="signals published")

            own_redis.stop()
            feed(200, 450)  # the market message is lost: the database poll must find these bars
            wait_for(
                lambda: cursor_ts(pg_engine, config.bot_id) == bars.ts[449],
                message="bars during the outage",
            )
            assert not bus.connected or bus.flush(0.01) is False  # messages are queued, not lost

            own_redis.start()

            # Redis pub/sub keeps nothing for absent subscribers: our listener must be back
            # before it can see what the runner publishes (the runner needs no such wait: its
            # database poll finds the bars whatever happens to the market: messages)
            def listener_resubscribed() -> bool:
                pipeline.publish(f"signals:{config.bot_id}", {"ts": -1, "probe": True})
                pipeline.flush(1.0)
                time.sleep(0.05)
                with lock:
                    return any(s.get("probe") for s in signals)

            wait_for(
                listener_resubscribed, 20, interval=0.1, message="the test listener to re-subscribe"
            )
            feed(450, 700)
            wait_for(
                lambda: cursor_ts(pg_engine, config.bot_id) == bars.ts[699],
                message="bars after the outage",
            )
            assert bus.flush(20)
            wait_for(
                lambda: any(s["ts"] == bars.ts[699] for s in signals),
                20,
                message="publishing resumed",
            )
            assert bus.connected
    finally:
        for client in (listener, pipeline, bus):
            client.close(timeout=0.5)
    assert {s["ts"] for s in signals} >= set(bars.ts[450:700].tolist())
    # each bus said once that Redis was gone and once that it was back, however many retries
    said = [record.getMessage() for record in caplog.records if record.name == "candela.core.bus"]
    gone = [m for m in said if m.startswith(f"Redis unreachable at {own_redis.url}")]
    back = [m for m in said if m == f"Redis at {own_redis.url} is back: publishing resumed"]
    assert 1 <= len(gone) == len(back) <= 2  # the publishing buses: the runner's, the pipeline's
    lost = sorted(m.split(" lost")[0] for m in said if " lost (" in m)
    restored = sorted(m.removesuffix(" restored") for m in said if m.endswith(" restored"))
    # the runner's subscription and the listener's
    assert (
        lost
        == restored
        == [
            f"Redis subscription to {channel}"
            for channel in sorted([f"signals:{config.bot_id}", channel])
        ]
    )
    assert count_rows(pg_engine, schema.signals, config.bot_id) == 700
    result = research.backtest(get_strategy("sma_cross"), bars, config.params, config.costs)
    np.testing.assert_array_equal(runner_fills(pg_engine, config.bot_id), backtest_fills(result))


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_outage_retries_writes_nothing_partial_and_catches_up(
    pg_url, ada_btc_bars, caplog
):
    from sqlalchemy.engine import make_url

    bars = ada_btc_bars[:900]
    direct = connect(pg_url)
    target = make_url(pg_url)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    proxied = connect(target.set(port=proxy.port).render_as_string(hide_password=False))
    config = bot_config(
        "pg-outage", "ema_cross", params={"fast": 5, "slow": 15}, start=int(bars.ts[0])
    )
    bus = InProcessBus()
    notices: list[dict] = []
    bus.subscribe(["system:events"], lambda _c, payload: notices.append(payload))
    channel = market_channel(*ADA_BTC)

    def feed(start, stop):
        store_bars(direct, ADA_BTC, bars, start, stop)
        bus.publish(channel, {"ts": int(bars.ts[stop - 1])})

    def consistent() -> None:
        """Every recorded bar has its signal, equity snapshot and matching cursor: nothing partial."""
        with direct.connect() as connection:
            signal_ts = (
                connection.execute(
                    select(schema.signals.c.ts)
                    .where(schema.signals.c.bot_id == config.bot_id)
                    .order_by(schema.signals.c.ts)
                )
                .scalars()
                .all()
            )
            equity_ts = (
                connection.execute(
                    select(schema.bot_performance.c.ts)
                    .where(schema.bot_performance.c.bot_id == config.bot_id)
                    .order_by(schema.bot_performance.c.ts)
                )
                .scalars()
                .all()
            )
            trade_bars = set(
                connection.execute(
                    select(schema.trades.c.bar_ts).where(schema.trades.c.bot_id == config.bot_id)
                )
                .scalars()
                .all()
            )
        assert signal_ts == equity_ts
        assert trade_bars <= set(signal_ts)
        assert signal_ts == sorted(bars.ts[: len(signal_ts)].tolist())
        if signal_ts:
            assert cursor_ts(direct, config.bot_id) == signal_ts[-1]

    try:
        with LiveRunner(proxied, bus, [config]):
            feed(0, 300)
            wait_for(lambda: cursor_ts(direct, config.bot_id) == bars.ts[299], message="first bars")
            feed(300, 600)
            time.sleep(0.05)  # let it get going, then pull the plug mid-stream
            proxy.cut()
            time.sleep(1.5)
            consistent()
            stalled_at = cursor_ts(direct, config.bot_id)
            time.sleep(0.5)
            assert cursor_ts(direct, config.bot_id) == stalled_at  # nothing written while cut
            feed(600, 900)
            proxy.restore()
            wait_for(
                lambda: cursor_ts(direct, config.bot_id) == bars.ts[899],
                message="catch-up after the outage",
            )
            consistent()
    finally:
        proxy.close()
        proxied.dispose()
    # the outage is said once, and its end once, however many bots and polls met it
    outage = [notice["event"] for notice in notices if notice["event"].startswith("database_")]
    assert outage == ["database_unavailable", "database_recovered"]
    said = [record.getMessage() for record in caplog.records if record.name == "runner.outage"]
    assert len(said) == 2
    assert said[0].startswith("database unreachable (")
    assert "every bot waits at its last committed bar" in said[0]
    assert re.fullmatch(r"database reachable again after \d+\.\d s", said[1])
    assert count_rows(direct, schema.signals, config.bot_id) == 900
    result = research.backtest(get_strategy("ema_cross"), bars, config.params, config.costs)
    np.testing.assert_array_equal(runner_fills(direct, config.bot_id), backtest_fills(result))
    direct.dispose()


def test_a_failing_strategy_restarts_then_fails_alone(any_engine, ada_btc_bars):
    import runner_test_strategies

    runner_test_strategies._seen.clear()  # FLAKY counts its failures per process

    bars = ada_btc_bars[:1200]
    store_bars(any_engine, ADA_BTC, bars)
    fail_at = int(bars.ts[700])
    configs = [
        bot_config("healthy-sma", "sma_cross"),
        bot_config("healthy-rsi", "rsi_reversion", params={"allow_short": True}),
        bot_config("broken", "runner_test_strategies:BROKEN", params={"fail_at_ts": fail_at}),
        bot_config(
            "flaky", "runner_test_strategies:FLAKY", params={"fail_at_ts": fail_at, "failures": 2}
        ),
    ]
    bus = InProcessBus()
    statuses: list[tuple[str, str]] = []
    bus.subscribe(
        ["status:*"],
        lambda channel, payload: statuses.append((payload["bot_id"], payload["event"])),
    )
    reports = replay(any_engine, bus, configs)

    assert reports["broken"].status == "failed"
    assert reports["flaky"].status == "finished" and reports["flaky"].restarts == 2
    with any_engine.connect() as connection:
        events = {
            bot: [
                row.event
                for row in connection.execute(
                    select(schema.bot_events.c.event)
                    .where(schema.bot_events.c.bot_id == bot)
                    .order_by(schema.bot_events.c.id)
                )
            ]
            for bot in ("broken", "flaky", "healthy-sma")
        }
        broken = connection.execute(
            select(schema.bots).where(schema.bots.c.bot_id == "broken")
        ).one()
    assert events["broken"] == ["started"] + ["crashed", "restarted"] * 3 + ["crashed", "failed"]
    assert events["flaky"] == ["started"] + ["crashed", "restarted"] * 2 + ["finished"]
    assert events["healthy-sma"] == ["started", "finished"]
    assert (
        broken.status == "failed"
        and broken.restarts == 3
        and "deliberate failure" in broken.last_error
    )
    assert ("broken", "failed") in statuses and ("broken", "crashed") in statuses
    # the failing bot kept every bar before the failure, and none after
    assert cursor_ts(any_engine, "broken") == bars.ts[699]
    # everyone else trades exactly as the backtest (flaky trades like sma_cross once it recovers)
    sma = research.backtest(get_strategy("sma_cross"), bars, None, configs[0].costs)
    rsi = research.backtest(
        get_strategy("rsi_reversion"), bars, configs[1].params, configs[1].costs
    )
    np.testing.assert_array_equal(runner_fills(any_engine, "healthy-sma"), backtest_fills(sma))
    np.testing.assert_array_equal(runner_fills(any_engine, "healthy-rsi"), backtest_fills(rsi))
    np.testing.assert_array_equal(runner_fills(any_engine, "flaky"), backtest_fills(sma))
    expected_broken = backtest_fills(sma)
    np.testing.assert_array_equal(
        runner_fills(any_engine, "broken"),
        expected_broken[expected_broken[:, 0] < fail_at - 60_000],
    )
