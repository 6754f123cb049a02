"""Replay throughput of the paper-trading runner, before and after, in one run.

Five bots, one per shipped strategy (default parameters, fee 0.25 %), on one market: the first
``CANDELA_BENCH_REPLAY_BARS`` (default 5,000) real Bittrex ADA/BTC 1m bars of the bundled sample,
stored in a fresh database. The timed part is ``Runner.run()`` in replay mode, exactly what
``candela run --replay`` runs, startup included: every bar is decided (per bar on its window
before the block path of ``runner.block``, then per block), filled with ``step``, its records
committed, exactly once per (bot, bar), and its messages published after the commit. The bus is Redis when ``CANDELA_REDIS_URL`` (default
the local server) answers, else the in-process bus; the ledger is PostgreSQL
(``CANDELA_BENCH_POSTGRES_URL``, a database created and dropped per run, ``synchronous_commit``
on: every commit is durable) and SQLite (a temporary file).

**Before** is the code at ``CANDELA_BENCH_BASELINE`` (default :data:`BASELINE`, the commit this
work started from), extracted with ``git archive`` into a cache folder next to the system's
temporary files; **after** is this tree. Each measurement runs in its own process with the
same interpreter (the extracted tree first on ``PYTHONPATH``), after a short warm-up replay
on another market that loads the compiled kernels, and is repeated (``CANDELA_BENCH_REPEATS``,
default 3), before and after interleaved (B A B A ...): the table gives min / median / max of
the throughput and the ratio of the medians.
``bars/s`` counts market bars (each processed by all five bots); ``bot-bars/s`` is five times
that. ``CPU µs/bot-bar`` is the measuring process's CPU time (all its threads, not the database
server's) per decision: steadier than the wall clock on a shared machine. Every run checks
that each bot recorded one decision per bar.

Run: ``.venv/bin/python -m bench.replay_speed``. Not a test: prints figures, asserts nothing.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

BASELINE = "54d946d"
"""The commit before block replay (main when this work started; before it, ``a7aeb2a`` was
the one before batched replay commits)."""

ADMIN_URL = os.environ.get(
    "CANDELA_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("CANDELA_REDIS_URL", "redis://127.0.0.1:6379/0")
BARS = int(os.environ.get("CANDELA_BENCH_REPLAY_BARS", "5000"))
REPEATS = int(os.environ.get("CANDELA_BENCH_REPEATS", "3"))
WARM_UP_BARS = 300
MARKET_FILE = "bittrex_ADA-BTC_1m.csv.gz"
REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ one measurement (subprocess)


def _sample_rows(count: int):
    import gzip

    import numpy as np

    from candela.core.paths import SAMPLE_DIR

    with gzip.open(SAMPLE_DIR / "ohlcv" / MARKET_FILE, "rt") as handle:
        data = np.loadtxt(handle, delimiter=",", skiprows=1, max_rows=count)
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


def _bus():
    import redis

    from candela.core.bus import InProcessBus, RedisBus

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except Exception:  # noqa: BLE001 - no Redis: the in-process bus
        return InProcessBus(), "in-process"
    finally:
        client.close()
    return RedisBus(REDIS_URL), "redis"


def _replay(engine, bus, market, tag: str) -> tuple[float, float, int]:
    """Replay every stored bar of ``market`` with five bots; return (seconds, CPU seconds of
    this process, decisions)."""
    import asyncio

    from sqlalchemy import func, select

    from candela.core import schema
    from runner.config import parse_bot_config
    from runner.process import Replay, Runner
    from strategies.registry import names

    configs = [
        parse_bot_config(
            dict(
                id=f"{tag}-{name}",
                strategy=name,
                exchange=market[0],
                symbol=market[1],
                timeframe=market[2],
                costs={"fee_rate": 0.0025, "slippage_bps": 5},
            ),
            source="bench",
        )
        for name in names()[:5]
    ]
    runner = Runner(engine, bus, configs, replay=Replay())
    started, cpu = time.perf_counter(), time.process_time()
    reports = asyncio.run(runner.run())
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert all(report.status == "finished" for report in reports.values()), reports
    with engine.connect() as connection:
        decisions = connection.execute(
            select(func.count())
            .select_from(schema.signals)
            .where(schema.signals.c.bot_id.like(f"{tag}-%"))
        ).scalar_one()
    return seconds, cpu, int(decisions)


def measure(database: str, bars: int) -> dict:
    """One timed replay of ``bars`` bars by five bots on ``database`` (``postgresql`` or
    ``sqlite``)."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from candela.core.db import connect, create_database_engine, upgrade

    drop = None
    folder = tempfile.TemporaryDirectory(prefix="candela-replay-bench-")
    if database == "postgresql":
        name = f"candela_bench_{uuid.uuid4().hex[:10]}"
        admin = create_database_engine(ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)

        def drop():
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    else:
        url = f"sqlite:///{Path(folder.name) / 'bench.db'}"
    engine = create_database_engine(url)
    upgrade(engine)
    engine.dispose()
    engine = connect(url, pool_size=15)
    bus, bus_name = _bus()
    try:
        rows = _sample_rows(bars)
        _store(engine, ("warmup", "ADA/BTC", "1m"), rows[:WARM_UP_BARS])
        _replay(engine, bus, ("warmup", "ADA/BTC", "1m"), "warm")  # loads kernels, warms caches
        _store(engine, ("bittrex", "ADA/BTC", "1m"), rows)
        seconds, cpu, decisions = _replay(engine, bus, ("bittrex", "ADA/BTC", "1m"), "bench")
        bus.flush(60)
    finally:
        bus.close()
        engine.dispose()
        if drop is not None:
            drop()
        folder.cleanup()
    return dict(
        database=database,
        bus=bus_name,
        bars=len(rows),
        bots=5,
        seconds=seconds,
        cpu_seconds=cpu,
        decisions=decisions,
        complete=decisions == 5 * len(rows),
    )


# ------------------------------------------------------------------ the comparison (main)


def baseline_tree(revision: str) -> Path | None:
    """The tree of ``revision`` extracted into a cache folder (reused), or ``None`` without git."""
    try:
        full = subprocess.run(
            ["git", "rev-parse", "--verify", f"{revision}^{{commit}}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    target = Path(tempfile.gettempdir()) / f"candela-bench-{full[:12]}"
    if not (target / ".complete").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", full], cwd=REPO, capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
        (target / ".complete").touch()
    return target


def _run(tree: Path, database: str) -> dict:
    environment = dict(os.environ, PYTHONPATH=str(tree))
    command = [sys.executable, str(Path(__file__).resolve()), "--measure", database, str(BARS)]
    completed = subprocess.run(command, cwd=tree, env=environment, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(
            f"measurement in {tree} failed (exit status {completed.returncode}):\n"
            f"{completed.stdout[-1000:]}{completed.stderr[-3000:]}"
        )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    """Print replay throughput before and after for PostgreSQL and SQLite."""
    revision = os.environ.get("CANDELA_BENCH_BASELINE", BASELINE)
    before = baseline_tree(revision)
    print(
        f"runner replay throughput: 5 bots (the shipped strategies) on {BARS} real ADA/BTC 1m "
        f"bars, {REPEATS} runs each; before = {revision}"
        + ("" if before else " (unavailable: no git history, only 'after' is measured)")
    )
    print(
        f"{'database':<11} {'code':<7} {'bus':<11} {'bars/s min / median / max':>28} "
        f"{'bot-bars/s':>11} {'ratio':>7} {'CPU µs/bot-bar':>15}"
    )
    for database in ("postgresql", "sqlite"):
        medians = {}
        trees = [(label, tree) for label, tree in (("before", before), ("after", REPO)) if tree]
        measured = {label: [] for label, _ in trees}
        for _ in range(REPEATS):  # interleaved: a slow minute of the machine hits both
            for label, tree in trees:
                measured[label].append(_run(tree, database))
        for label, _ in trees:
            runs = measured[label]
            if not all(run["complete"] for run in runs):
                print(f"{database:<11} {label:<7} INCOMPLETE: {runs}")
                continue
            rates = sorted(run["bars"] / run["seconds"] for run in runs)
            medians[label] = statistics.median(rates)
            ratio = f"{medians[label] / medians['before']:.1f}x" if "before" in medians else ""
            cpu = statistics.median(run["cpu_seconds"] / run["decisions"] * 1e6 for run in runs)
            print(
                f"{database:<11} {label:<7} {runs[0]['bus']:<11} "
                f"{rates[0]:>8.0f} / {medians[label]:>7.0f} / {rates[-1]:>7.0f}  "
                f"{5 * medians[label]:>11.0f} {ratio:>7} {cpu:>15.0f}",
                flush=True,
            )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--measure":
        sys.path.insert(0, os.getcwd())  # the tree being measured, before this file's folder
        print(json.dumps(measure(sys.argv[2], int(sys.argv[3]))))
    else:
        main()
