"""Backfill throughput against the loopback exchange, rate limiting off (bars/s).

Run with ``.venv/bin/python -m bench.backfill_speed``. The loopback exchange
(``tests/data_pipeline/mock_exchange.py``) serves real Binance BTC/USDT 1m candles (the 999-bar
2018-06-18 segment of the wider market-data collection, ``CANDELA_SHARED_DATA``) tiled end to end 200 times with shifted timestamps:
199,800 bars. The real ccxt async client pages through them 1000 at a time, every row is
validated and stored, and the gap ledger is checked, on SQLite and on PostgreSQL (when
reachable). A second run over the same window shows the cost of a no-op resume.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

TILES = 200
MINUTE = 60_000


def _mock():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "data_pipeline"))
    from mock_exchange import MockExchange, read_candle_file

    from candela.core.paths import shared_data_dir

    rows = read_candle_file(shared_data_dir() / "ohlcv" / "binance_BTC-USDT_1m.csv.gz")
    segment = [row for row in rows if row[0] >= 1_529_297_280_000]  # one contiguous 999-bar run
    span = len(segment) * MINUTE
    tiled = [[row[0] + tile * span, *row[1:]] for tile in range(TILES) for row in segment]
    mock = MockExchange()
    mock.add_binance_candles("BTCUSDT", "1m", tiled, "BTC", "USDT")
    return mock, tiled[0][0], tiled[-1][0] + MINUTE


async def _backfill(mock, engine, since, until):
    from data_pipeline.backfill import backfill
    from data_pipeline.exchanges import Endpoints, create_exchange

    exchange = create_exchange("binance", endpoints=Endpoints(mock.http_url))
    exchange.enableRateLimit = False  # the benchmark measures the pipeline, not the exchange's pace
    try:
        started = time.perf_counter()
        report = await backfill(
            exchange, engine, ["BTC/USDT"], ["1m"], since, until, progress=False
        )
        return report, time.perf_counter() - started
    finally:
        await exchange.close()


def _postgres_url():
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from candela.core.db import create_database_engine

    admin_url = os.environ.get(
        "CANDELA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    admin = create_database_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
    name = f"candela_bench_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - benchmark: report and skip
        print(f"PostgreSQL not reachable ({exc.__class__.__name__}); skipping it")
        return None, None

    def drop():
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(admin_url).set(database=name).render_as_string(hide_password=False), drop


def main() -> None:
    from candela.core.db import connect, create_database_engine, upgrade

    mock, since, until = _mock()
    with mock, tempfile.TemporaryDirectory() as folder:
        print(f"{TILES * 999:,} real 1m candles (tiled) served by the loopback exchange")
        targets = [
            ("sqlite", f"sqlite:///{folder}/bench.db", None),
            ("postgresql", *_postgres_url()),
        ]
        for backend, url, drop in targets:
            if url is None:
                continue
            try:
                migrate = create_database_engine(url)
                upgrade(migrate)
                migrate.dispose()
                engine = connect(url)
                mock.reset()
                report, seconds = asyncio.run(_backfill(mock, engine, since, until))
                requests = sum(1 for p in mock.paths() if p.endswith("/klines"))
                print(
                    f"{backend:>10}: {report.inserted:,} bars in {seconds:.2f} s = "
                    f"{report.inserted / seconds:,.0f} bars/s ({requests} kline requests)"
                )
                mock.reset()
                again, seconds = asyncio.run(_backfill(mock, engine, since, until))
                print(
                    f"{backend:>10}: second run {again.inserted} new bars, {again.requests} requests, "
                    f"{seconds:.2f} s"
                )
                engine.dispose()
            finally:
                if drop is not None:
                    drop()


if __name__ == "__main__":
    main()
