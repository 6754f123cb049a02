"""``candela data import``: files spaced unlike their timeframe are refused; holes go to the gap ledger.

Oracles: the real files themselves (their row times, read with pandas) and the timeframe grid.
"""

from __future__ import annotations

import gzip
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from candela.cli import main
from candela.core.db import connect
from candela.core.timeframes import SUPPORTED_TIMEFRAMES, timeframe_to_ms
from data_pipeline.gaps import list_gaps
from data_pipeline.importer import (
    SpacingError,
    check_spacing,
    import_candles,
    infer_market,
    read_candle_file,
)

MINUTE = 60_000


def run_cli(capsys, *argv):
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return code, out, err


def table_counts(url) -> tuple[int, int]:
    engine = connect(url)
    try:
        with engine.connect() as connection:
            return (
                connection.execute(sa.text("SELECT COUNT(*) FROM ohlcv")).scalar_one(),
                connection.execute(sa.text("SELECT COUNT(*) FROM gaps")).scalar_one(),
            )
    finally:
        engine.dispose()


def ledger(url):
    engine = connect(url)
    try:
        with engine.connect() as connection:
            return list_gaps(connection)
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- spacing


def assert_fits_only_its_own_timeframe(path):
    timeframe = infer_market(path)[2]
    ts = read_candle_file(path, timeframe).ts
    check_spacing(path, ts, timeframe)  # every real file must still import
    for other in SUPPORTED_TIMEFRAMES:
        if other == timeframe:
            continue
        with pytest.raises(SpacingError) as refused:
            check_spacing(path, ts, other)
        assert refused.value.spacing_ms == timeframe_to_ms(timeframe)
        assert refused.value.fitting_timeframe == timeframe


def test_every_sample_file_fits_its_own_timeframe_and_no_other(sample_dir):
    files = sorted((sample_dir / "ohlcv").glob("*.csv.gz"))
    assert len(files) >= 20
    for path in files:
        assert_fits_only_its_own_timeframe(path)


@pytest.mark.shared_data
@pytest.mark.slow
def test_every_file_of_the_wider_collection_fits_its_own_timeframe_and_no_other(shared_data):
    files = sorted(path for path in (shared_data / "ohlcv").glob("*.csv.gz") if infer_market(path))
    assert len(files) >= 90
    for path in files:
        assert_fits_only_its_own_timeframe(path)


@pytest.mark.parametrize("case", ["as_5m", "named_1m", "5m_as_1h"])
def test_a_file_spaced_unlike_its_timeframe_is_refused_and_nothing_written(
    database_url, sample_dir, tmp_path, case, capsys
):
    hourly = sample_dir / "ohlcv" / "binance_BTC-USDT_1h.csv.gz"
    market = ["--exchange", "binance", "--symbol", "BTC/USDT"]
    if case == "as_5m":
        path, arguments = hourly, [*market, "--timeframe", "5m"]
        words = "which does not fit --timeframe 5m: pass --timeframe 1h"
    elif case == "named_1m":
        path = tmp_path / "binance_BTC-USDT_1m.csv.gz"
        shutil.copy(hourly, path)
        arguments = []
        words = "which does not fit the timeframe 1m in the file's name: pass --timeframe 1h"
    else:
        path, arguments = (
            sample_dir / "ohlcv" / "binance_BTC-USDT_5m.csv.gz",
            [*market, "--timeframe", "1h"],
        )
        words = "which does not fit --timeframe 1h: pass --timeframe 5m"
    steps = len(pd.read_csv(path)) - 1
    at_spacing = int(
        (
            pd.read_csv(path)["open_time_ms"].diff() == (5 if case == "5m_as_1h" else 60) * MINUTE
        ).sum()
    )
    code, out, err = run_cli(
        capsys, "--database-url", database_url, "data", "import", path, *arguments
    )
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    spacing = "5m" if case == "5m_as_1h" else "1h"
    assert err == (
        f"error: {path}: rows are spaced {spacing} apart ({at_spacing} of {steps} steps between "
        f"rows), {words}\n"
    )
    assert table_counts(database_url) == (0, 0)


def test_spacing_that_is_no_timeframe_says_so(tmp_path):
    path = tmp_path / "odd.csv"
    times = 1_600_000_000_000 - 1_600_000_000_000 % (7 * MINUTE) + np.arange(50) * 7 * MINUTE
    frame = pd.DataFrame(
        {"open_time_ms": times, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 3.0}
    )
    frame.to_csv(path, index=False)
    with pytest.raises(
        SpacingError,
        match=r"rows are spaced 7m apart \(49 of 49 steps between rows\), which "
        r"does not fit timeframe 1m: no timeframe Candela stores is 7m long",
    ):
        check_spacing(path, read_candle_file(path, "1m").ts, "1m")


def test_gaps_duplicates_and_disorder_do_not_decide_the_spacing(tmp_path):
    """Half the bars missing in runs, plus duplicated and shuffled rows: still a 1m file."""
    rng = np.random.default_rng(3)
    grid = 1_600_000_020_000 // MINUTE * MINUTE + np.arange(4000) * MINUTE
    kept = grid[np.repeat(rng.random(400) < 0.5, 10)]  # runs of 10 bars present or missing
    times = np.concatenate([kept, kept[::7]])
    rng.shuffle(times)
    check_spacing(tmp_path / "x.csv", times, "1m")
    with pytest.raises(SpacingError):
        check_spacing(tmp_path / "x.csv", times, "3m")


# --------------------------------------------------------------------------- gaps at import


def status_missing(capsys, url, symbol):
    code, out, _ = run_cli(capsys, "--database-url", url, "data", "status")
    assert code == 0
    header, *rows = out.splitlines()
    columns = re.split(r"\s{2,}", header)
    [row] = [re.split(r"\s{2,}", line) for line in rows if f" {symbol} " in line]
    record = dict(zip(columns, row))
    return int(record["missing"].replace(",", "")), int(record["open gaps"].replace(",", ""))


def listed_gaps(capsys, url):
    code, out, _ = run_cli(capsys, "--database-url", url, "data", "gaps")
    assert code == 0
    header, *rows = out.splitlines()
    start = header.index("bars")
    return [(line[start:].split()[0], line[start:].split()[1]) for line in rows]


def test_gaps_of_an_imported_gappy_file_are_in_the_ledger_and_both_commands_agree(
    database_url, sample_dir, capsys
):
    path = sample_dir / "ohlcv" / "bittrex_ADA-BTC_1m.csv.gz"
    opens = pd.read_csv(path)["open_time_ms"].to_numpy()
    close = opens + MINUTE
    grid = np.arange(close[0], close[-1] + MINUTE, MINUTE)
    missing = np.setdiff1d(grid, close)
    runs = np.split(missing, np.flatnonzero(np.diff(missing) != MINUTE) + 1)
    expected = [(int(run[0]), int(run[-1]), len(run)) for run in runs]

    code, out, err = run_cli(capsys, "--database-url", database_url, "data", "import", path)
    assert code == 0, err
    assert (
        f"; {len(expected):,} gap(s), {len(missing):,} missing bar(s), recorded in the gap ledger"
        in out
    )

    entries = ledger(database_url)
    assert [(g.first_missing_ts, g.last_missing_ts, g.missing_bars) for g in entries] == expected
    assert {g.status for g in entries} == {"open"}
    assert status_missing(capsys, database_url, "ADA/BTC") == (len(missing), len(expected))
    listed = listed_gaps(capsys, database_url)
    assert len(listed) == len(expected) and {status for _, status in listed} == {"open"}
    assert sum(int(bars.replace(",", "")) for bars, _ in listed) == len(missing)

    code, out, _ = run_cli(capsys, "--database-url", database_url, "data", "import", path)
    assert code == 0 and "gap(s)" not in out  # importing again finds nothing new
    assert len(ledger(database_url)) == len(expected)


def write_rows(path, header, rows):
    path.write_bytes(gzip.compress(("\n".join([header, *rows]) + "\n").encode()))
    return path


def test_a_later_import_that_fills_holes_updates_the_ledger(
    database_url, sample_dir, tmp_path, capsys
):
    lines = (
        gzip.decompress((sample_dir / "ohlcv" / "binance_BTC-USDT_1m.csv.gz").read_bytes())
        .decode()
        .splitlines()
    )
    header, rows = lines[0], lines[1:101]
    first = write_rows(tmp_path / "first.csv.gz", header, rows[:10] + rows[20:40] + rows[50:])
    second = write_rows(tmp_path / "second.csv.gz", header, rows[10:20] + rows[40:45])
    close = [int(row.split(",")[0]) + MINUTE for row in rows]
    engine = connect(database_url)
    try:
        report = import_candles(engine, first, "binance", "BTC/USDT", "1m")
        assert report.new_gaps == ((close[10], close[19]), (close[40], close[49]))
        report = import_candles(engine, second, "binance", "BTC/USDT", "1m")
        assert report.new_gaps == ()
    finally:
        engine.dispose()
    entries = {(g.first_missing_ts, g.last_missing_ts): g for g in ledger(database_url)}
    assert sorted(entries) == [(close[10], close[19]), (close[45], close[49])]
    assert entries[(close[10], close[19])].status == "refetched"
    assert "second.csv.gz" in entries[(close[10], close[19])].detail
    assert entries[(close[45], close[49])].status == "open"
    assert entries[(close[45], close[49])].missing_bars == 5
    assert status_missing(capsys, database_url, "BTC/USDT") == (5, 1)


def test_a_hole_between_an_import_and_stored_bars_is_recorded(database_url, sample_dir, tmp_path):
    lines = (
        gzip.decompress((sample_dir / "ohlcv" / "binance_BTC-USDT_1m.csv.gz").read_bytes())
        .decode()
        .splitlines()
    )
    header, rows = lines[0], lines[1:61]
    close = [int(row.split(",")[0]) + MINUTE for row in rows]
    engine = connect(database_url)
    try:
        import_candles(
            engine,
            write_rows(tmp_path / "late.csv.gz", header, rows[40:]),
            "binance",
            "BTC/USDT",
            "1m",
        )
        report = import_candles(
            engine,
            write_rows(tmp_path / "early.csv.gz", header, rows[:25]),
            "binance",
            "BTC/USDT",
            "1m",
        )
    finally:
        engine.dispose()
    assert report.new_gaps == ((close[25], close[39]),)
    [gap] = ledger(database_url)
    assert (gap.first_missing_ts, gap.missing_bars, gap.status) == (close[25], 15, "open")
