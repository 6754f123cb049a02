"""Benchmark: import and load 1,000,000 one-minute candles on SQLite and PostgreSQL (issue 2).

For each backend it times

* ``store_bars``: the bulk write (binary COPY + one INSERT ... SELECT on PostgreSQL,
  executemany on SQLite) of the 1M bars, in one transaction;
* ``import CSV``: the whole ``candela data import`` path on a CSV.gz of the same bars
  (read, parse, validate, write) into a fresh market;
* ``load (fresh)``: :func:`research.data.load_bars` into numpy arrays right after the import
  (best of 3; on PostgreSQL the first reads of new rows also set their hint bits);
* ``vacuum/analyze``: ``VACUUM ANALYZE`` (PostgreSQL) / ``ANALYZE`` (SQLite), the state
  autovacuum leaves a table in after a bulk load;
* ``load_bars``: the same load afterwards (best of 3), the steady-state figure;
* ``pandas.read_sql``: a plain ``pandas.read_sql`` of the same rows (best of 3), the baseline.

The target is a PostgreSQL load of 1M candles into arrays in under one second. SQLite uses a
temporary file; PostgreSQL a scratch database this script creates and drops
(``CANDELA_BENCH_POSTGRES_URL``, default ``postgresql://postgres@127.0.0.1:5432/postgres``, is the
maintenance database it connects to). Run with ``python -m bench.load_bars``.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from bench.synthetic import synthetic_bars
from bench.timing import best_of
from candela.core.db import create_database_engine, upgrade
from data_pipeline.importer import import_candles
from data_pipeline.store import store_bars
from research.data import load_bars

N_BARS = 1_000_000
REPEATS = 3
MARKET = ("benchmark", "SYN/USD", "1m")
POSTGRES_ADMIN_URL = os.environ.get(
    "CANDELA_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def write_csv(bars, path: Path) -> None:
    """Write the bars in the shared data's format (open times) as CSV.gz."""
    frame = pd.DataFrame(
        {
            "open_time_ms": bars.ts - bars.timeframe_ms,
            "open": bars.open,
            "high": bars.high,
            "low": bars.low,
            "close": bars.close,
            "volume": bars.volume,
        }
    )
    with gzip.open(path, "wt", compresslevel=1) as handle:
        frame.to_csv(handle, index=False, float_format="%.17g")


def measure(url: str, bars, csv_path: Path) -> dict[str, float]:
    """Time the four steps on the database at ``url`` (already migrated)."""
    engine = create_database_engine(url)
    figures: dict[str, float] = {}
    try:
        started = time.perf_counter()
        with engine.begin() as connection:
            result = store_bars(
                connection,
                *MARKET,
                bars.ts,
                bars.open,
                bars.high,
                bars.low,
                bars.close,
                bars.volume,
            )
        figures["store_bars"] = time.perf_counter() - started
        assert result.inserted == len(bars), result

        started = time.perf_counter()
        report = import_candles(engine, csv_path, "benchmark", "CSV/USD", "1m")
        figures["import CSV"] = time.perf_counter() - started
        assert report.inserted == len(bars), report.summary()

        figures["load (fresh)"], loaded = best_of(lambda: load_bars(engine, *MARKET), REPEATS)
        assert np.array_equal(loaded.ts, bars.ts) and np.array_equal(loaded.close, bars.close)

        started = time.perf_counter()
        settle(engine)
        figures["vacuum/analyze"] = time.perf_counter() - started

        figures["load_bars"], loaded = best_of(lambda: load_bars(engine, *MARKET), REPEATS)
        assert np.array_equal(loaded.ts, bars.ts) and np.array_equal(loaded.close, bars.close)

        query = sa.text(
            "SELECT ts, open, high, low, close, volume FROM ohlcv WHERE exchange = :e "
            "AND symbol = :s AND timeframe = :t ORDER BY ts"
        )
        params = dict(zip("est", MARKET))

        def read_sql():
            with engine.connect() as connection:
                return pd.read_sql(query, connection, params=params)

        figures["pandas.read_sql"], frame = best_of(read_sql, REPEATS)
        assert len(frame) == len(bars)
    finally:
        engine.dispose()
    return figures


def settle(engine) -> None:
    """Bring the table to the state autovacuum leaves it in: ``VACUUM ANALYZE`` on PostgreSQL
    (sets hint bits and the visibility map, gathers statistics), ``ANALYZE`` on SQLite."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text("VACUUM ANALYZE ohlcv"))
    else:
        with engine.begin() as connection:
            connection.execute(sa.text("ANALYZE"))


def sqlite_figures(bars, csv_path: Path, folder: Path) -> dict[str, float]:
    url = f"sqlite:///{folder / 'bench.db'}"
    engine = create_database_engine(url)
    upgrade(engine)
    engine.dispose()
    return measure(url, bars, csv_path)


def postgres_figures(bars, csv_path: Path) -> dict[str, float] | None:
    name = f"candela_bench_{uuid.uuid4().hex[:10]}"
    admin = create_database_engine(POSTGRES_ADMIN_URL).execution_options(
        isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        print(f"PostgreSQL skipped: cannot reach {POSTGRES_ADMIN_URL} ({exc.orig})")
        admin.dispose()
        return None
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        engine = create_database_engine(url)
        upgrade(engine)
        engine.dispose()
        return measure(url, bars, csv_path)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def report(backend: str, figures: dict[str, float], rows: int) -> None:
    baseline = figures["pandas.read_sql"]
    print(f"\n{backend}: {rows:,} one-minute candles")
    print(f"  {'step':<16} {'seconds':>8} {'rows/s':>12}")
    for step, seconds in figures.items():
        print(f"  {step:<16} {seconds:>8.3f} {rows / seconds:>12,.0f}")
    print(f"  load_bars is {baseline / figures['load_bars']:.1f}x faster than pandas.read_sql")


def main() -> None:
    bars = synthetic_bars(N_BARS)
    print(f"synthetic 1m bars: {len(bars):,} (bench.synthetic, seeded)")
    with tempfile.TemporaryDirectory(prefix="candela-bench-") as temporary:
        folder = Path(temporary)
        csv_path = folder / "benchmark_SYN-USD_1m.csv.gz"
        write_csv(bars, csv_path)
        print(f"CSV.gz for the import step: {csv_path.stat().st_size / 1e6:.1f} MB")
        report("SQLite (temporary file)", sqlite_figures(bars, csv_path, folder), len(bars))
        figures = postgres_figures(bars, csv_path)
        if figures is not None:
            report("PostgreSQL (scratch database)", figures, len(bars))
            verdict = "meets" if figures["load_bars"] < 1.0 else "MISSES"
            print(
                f"\nPostgreSQL load of {len(bars):,} candles into arrays: "
                f"{figures['load_bars']:.3f} s ({verdict} the < 1 s target)"
            )


if __name__ == "__main__":
    main()
