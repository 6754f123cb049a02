"""Decision latency of the paper-trading runner: bar publication -> signal publication.

For 1, 10 and 100 bots in one runner process (the shipped strategies in turn, default
parameters, all on Bittrex ADA/BTC 1m from the bundled sample), a stand-in for the data pipeline
commits one closed bar to PostgreSQL and publishes it on ``market:...`` (Redis). The runner
wakes the market's bots: one read of the bar from the database, then each bot decides on its
history window and fills with ``step``; all their signals/trades/states/equity snapshots
commit in one transaction (durable: ``synchronous_commit`` stays on), then every message goes
out in one Redis round trip (see :mod:`runner.market_group`). The latency of one (bot, bar) is
the time from just before the bar's publication to the bot's signal's arrival at a Redis
subscriber in this process. The next bar is published once every bot has answered.
Target: p99 < 50 ms with 100 bots.

Run: ``.venv/bin/python -m bench.runner_latency`` (needs PostgreSQL and Redis; see
``CANDELA_BENCH_POSTGRES_URL`` and ``CANDELA_REDIS_URL``, defaulting to the local servers).
Creates and drops its own database. Not a test: prints figures, asserts nothing.
``CANDELA_BENCH_WORKERS`` sets the runner's worker threads (default 10) and
``CANDELA_BENCH_STRATEGY`` runs every bot on one strategy instead of cycling through all.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import os
import threading
import time
import uuid

import numpy as np

ADMIN_URL = os.environ.get(
    "CANDELA_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("CANDELA_REDIS_URL", "redis://127.0.0.1:6379/0")
HISTORY = 1000  # bars stored before the bots start (warm-up)
BARS = {1: 200, 10: 100, 100: 40}  # bars measured per bot count
WARM_UP_BARS = 3  # published first, not measured
WORKERS = int(os.environ.get("CANDELA_BENCH_WORKERS", "10"))


def _sample_bars():
    from candela.core.paths import SAMPLE_DIR

    with gzip.open(SAMPLE_DIR / "ohlcv" / "bittrex_ADA-BTC_1m.csv.gz", "rt") as handle:
        data = np.loadtxt(
            handle,
            delimiter=",",
            skiprows=1,
            max_rows=HISTORY + max(BARS.values()) + WARM_UP_BARS + 10,
        )
    data[:, 0] += 60_000  # open time -> close time
    return data


def _store(engine, market, rows) -> None:
    from candela.core import schema
    from candela.core.db import insert_ignoring_duplicates

    exchange, symbol, timeframe = market
    with engine.begin() as connection:
        insert_ignoring_duplicates(
            connection,
            schema.ohlcv,
            [
                dict(
                    exchange=exchange,
                    symbol=symbol,
                    timeframe=timeframe,
                    ts=int(row[0]),
                    open=float(row[1]),
                    high=float(row[2]),
                    low=float(row[3]),
                    close=float(row[4]),
                    volume=float(row[5]),
                )
                for row in rows
            ],
        )


def measure(
    n_bots: int, n_bars: int, admin_url: str = ADMIN_URL, redis_url: str = REDIS_URL
) -> np.ndarray:
    """Latencies in milliseconds, one per (bot, bar), for ``n_bots`` bots over ``n_bars`` bars."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from candela.core.bus import RedisBus, market_channel
    from candela.core.db import connect, create_database_engine, upgrade
    from runner.config import parse_bot_config
    from runner.process import Runner, RunnerSettings
    from strategies.registry import names

    name = f"candela_bench_{uuid.uuid4().hex[:10]}"
    admin = create_database_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    engine = create_database_engine(url)
    upgrade(engine)
    engine.dispose()
    engine = connect(url, pool_size=WORKERS + 5)
    tag = uuid.uuid4().hex[:8]
    market = (f"bench{tag}", "ADA/BTC", "1m")
    data = _sample_bars()
    _store(engine, market, data[:HISTORY])
    strategies = names()
    configs = [
        parse_bot_config(
            dict(
                id=f"bench-{tag}-{index}",
                strategy=os.environ.get("CANDELA_BENCH_STRATEGY")
                or strategies[index % len(strategies)],
                exchange=market[0],
                symbol=market[1],
                timeframe=market[2],
                start=int(data[HISTORY, 0]),
            ),
            source="bench",
        )
        for index in range(n_bots)
    ]

    bus = RedisBus(redis_url)
    pipeline = RedisBus(redis_url)
    arrivals: dict[int, list[float]] = {}
    lock = threading.Lock()
    answered = threading.Condition(lock)

    def on_signal(_channel, payload):
        now = time.perf_counter()
        with answered:
            arrivals.setdefault(int(payload["ts"]), []).append(now)
            answered.notify_all()

    listener = RedisBus(redis_url)
    listener.subscribe([f"signals:bench-{tag}-*"], on_signal)
    runner = Runner(
        engine,
        bus,
        configs,
        settings=RunnerSettings(poll_interval=5.0, heartbeat_interval=5.0, workers=WORKERS),
    )
    gc.freeze()  # as `candela run` does before it starts the runner
    thread = threading.Thread(target=lambda: asyncio.run(runner.run()), daemon=True)
    thread.start()
    time.sleep(
        1.0 + 0.02 * n_bots
    )  # bots recover (no bars to catch up: they start at the next bar)
    channel = market_channel(*market)
    latencies = []
    try:
        for index, row in enumerate(data[HISTORY : HISTORY + n_bars + WARM_UP_BARS]):
            ts = int(row[0])
            _store(engine, market, [row])  # the pipeline commits the closed bar...
            published = time.perf_counter()
            pipeline.publish(channel, {"ts": ts})  # ...then publishes it
            with answered:
                if not answered.wait_for(lambda: len(arrivals.get(ts, ())) >= n_bots, timeout=60):
                    raise RuntimeError(
                        f"only {len(arrivals.get(ts, ()))} of {n_bots} bots answered bar {ts}"
                    )
                if index >= WARM_UP_BARS:  # the first bars pay one-off costs (caches, connections)
                    latencies.extend((arrival - published) * 1000 for arrival in arrivals[ts])
            time.sleep(0.02)
    finally:
        runner.request_stop()
        thread.join(60)
        for client in (listener, pipeline, bus):
            client.close(timeout=1)
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return np.array(latencies)


def main() -> None:
    """Print p50/p99/max latency for 1, 10 and 100 bots."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    print(
        "runner decision latency: bar published (Redis) -> signal received (Redis), PostgreSQL ledger"
    )
    print(
        f"{'bots':>5} {'bars':>5} {'samples':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  target p99 < 50 ms"
    )
    for n_bots, n_bars in BARS.items():
        latencies = measure(n_bots, n_bars)
        p50, p99 = np.percentile(latencies, [50, 99])
        verdict = "" if n_bots != 100 else ("  met" if p99 < 50 else "  NOT met")
        print(
            f"{n_bots:>5} {n_bars:>5} {len(latencies):>8} {p50:>8.1f} {p99:>8.1f} {latencies.max():>8.1f}{verdict}"
        )


if __name__ == "__main__":
    main()
