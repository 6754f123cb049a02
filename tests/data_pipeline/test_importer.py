"""``candela data import`` and ``import_candles`` on SQLite and PostgreSQL, with real files."""

from __future__ import annotations

import gzip
import socket

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from candela.cli import main
from candela.core.db import connect
from data_pipeline.importer import ImportFailedError, import_candles, infer_market, read_candle_file

MINUTE = 60_000
REAL_FILE = "binance_BTC-USDT_1m.csv.gz"  # 1500 real rows, two segments


@pytest.fixture
def real_file(sample_dir):
    return sample_dir / "ohlcv" / REAL_FILE


def stored_frame(url, market=("binance", "BTC/USDT", "1m")) -> pd.DataFrame:
    engine = connect(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT ts, open, high, low, close, volume FROM ohlcv WHERE exchange = :e "
                    "AND symbol = :s AND timeframe = :t ORDER BY ts"
                ),
                dict(zip("est", market)),
            ).all()
    finally:
        engine.dispose()
    return pd.DataFrame(rows, columns=["ts", "open", "high", "low", "close", "volume"])


def count_rows(url) -> int:
    engine = connect(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text("SELECT COUNT(*) FROM ohlcv")).scalar_one()
    finally:
        engine.dispose()


def run_cli(capsys, *argv):
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return code, out, err


def expected_from_csv(path) -> pd.DataFrame:
    """Oracle: pandas reads the file; close time = open time + 1 minute."""
    frame = pd.read_csv(path)
    frame.insert(0, "ts", frame.pop("open_time_ms") + MINUTE)
    return frame


# --------------------------------------------------------------------------- happy path


def test_import_then_reimport_says_nothing_new(database_url, real_file, capsys):
    code, out, err = run_cli(
        capsys,
        "--database-url",
        database_url,
        "data",
        "import",
        real_file,
        "--exchange",
        "binance",
        "--symbol",
        "BTC/USDT",
        "--timeframe",
        "1m",
    )
    assert code == 0, err
    assert "1,500 new, 0 already stored" in out
    pd.testing.assert_frame_equal(stored_frame(database_url), expected_from_csv(real_file))

    code, out, err = run_cli(
        capsys,
        "--database-url",
        database_url,
        "data",
        "import",
        real_file,
        "--exchange",
        "binance",
        "--symbol",
        "BTC/USDT",
        "--timeframe",
        "1m",
    )
    assert code == 0, err
    assert "0 new, 1,500 already stored" in out
    assert count_rows(database_url) == 1500


def test_market_is_inferred_from_the_file_name(database_url, real_file, capsys):
    assert infer_market(real_file) == ("binance", "BTC/USDT", "1m")
    assert infer_market("binance_BTC-USDT_1h_lean.csv.gz") == ("binance", "BTC/USDT", "1h")
    assert infer_market("prices.csv") is None
    code, out, _ = run_cli(capsys, "--database-url", database_url, "data", "import", real_file)
    assert code == 0 and "binance BTC/USDT 1m: 1,500 new" in out


def test_open_times_become_close_times_for_every_timeframe(tmp_path):
    path = tmp_path / "bars.csv"
    path.write_text("open_time_ms,open,high,low,close,volume\n1529280000000,1,2,0.5,1.5,3\n")
    for timeframe, length in (("1m", 60_000), ("4h", 14_400_000), ("1d", 86_400_000)):
        candles = read_candle_file(path, timeframe)
        assert candles.ts.tolist() == [1529280000000 + length]
        assert candles.line_numbers.tolist() == [2]


def test_columns_in_another_order_and_plain_csv(database_url, real_file, tmp_path):
    frame = pd.read_csv(real_file)[["volume", "close", "open_time_ms", "low", "high", "open"]]
    path = tmp_path / "shuffled.csv"
    frame.to_csv(path, index=False)
    engine = connect(database_url)
    report = import_candles(engine, path, "binance", "BTC/USDT", "1m")
    engine.dispose()
    assert report.inserted == 1500 and report.rejected == {}
    pd.testing.assert_frame_equal(stored_frame(database_url), expected_from_csv(real_file))


# --------------------------------------------------------------------------- rejected rows


def test_rejected_rows_are_counted_with_reasons_and_lines(
    database_url, real_file, tmp_path, capsys
):
    lines = gzip.decompress(real_file.read_bytes()).decode().splitlines()
    header, rows = lines[0], lines[1:41]
    base = int(rows[-1].split(",")[0])
    bad = {
        # line number in the new file -> (row text, expected reason)
        42: (f"{base + 1 * MINUTE},nan,1,1,1,1", "nan"),
        43: (f"{base + 2 * MINUTE},9000,9100,8900,9050,-2", "negative_volume"),
        44: (f"{base + 3 * MINUTE},9000,8000,7900,9050,2", "high_below_open_close"),
        45: (f"{base + 4 * MINUTE},0,9100,8900,9050,2", "non_positive_price"),
        46: (f"{base + 5 * MINUTE + 7},9000,9100,8900,9050,2", "misaligned_ts"),
        47: (rows[5], "duplicate_ts"),
        48: (f"{base + 6 * MINUTE},9000,9100,9060,9050,2", "low_above_open_close"),
    }
    good_after = f"{base + 9 * MINUTE},9000,9100,8900,9050,2"
    path = tmp_path / "with_bad_rows.csv"
    path.write_text(
        "\n".join([header, *rows, *(text for text, _ in bad.values()), good_after]) + "\n"
    )

    code, out, err = run_cli(
        capsys,
        "--database-url",
        database_url,
        "data",
        "import",
        path,
        "--exchange",
        "binance",
        "--symbol",
        "BTC/USDT",
        "--timeframe",
        "1m",
    )
    assert code == 0, err
    assert "41 new, 0 already stored, 7 rejected (48 rows" in out
    for line, (_, reason) in list(bad.items())[:5]:
        assert f"line {line} ({reason})" in out
    for reason in {reason for _, reason in bad.values()}:
        assert any(row.split() == [reason, "1"] for row in out.splitlines()), reason
    stored = stored_frame(database_url)
    assert len(stored) == 41 and stored["ts"].is_monotonic_increasing
    assert stored["ts"].iloc[-1] == base + 10 * MINUTE  # the good row after the bad ones

    engine = connect(database_url)
    report = import_candles(engine, path, "binance", "BTC/USDT", "1m")
    engine.dispose()
    assert report.inserted == 0 and report.unchanged == 41
    assert report.rejected == {reason: 1 for _, reason in bad.values()}
    assert report.rejected_examples == [(line, reason) for line, (_, reason) in bad.items()][:5]


def test_conflicting_values_are_kept_and_reported(database_url, real_file, tmp_path, capsys):
    run_cli(capsys, "--database-url", database_url, "data", "import", real_file)
    frame = pd.read_csv(real_file)
    frame.loc[10, "volume"] += 1.0
    path = tmp_path / "binance_BTC-USDT_1m.csv"
    frame.to_csv(path, index=False)
    code, out, err = run_cli(capsys, "--database-url", database_url, "data", "import", path)
    assert code == 0
    assert "0 new, 1,499 already stored, 1 conflicting" in out
    assert f"{int(frame.loc[10, 'open_time_ms']) + MINUTE}" in err and "NOT overwritten" in err
    pd.testing.assert_frame_equal(stored_frame(database_url), expected_from_csv(real_file))


# --------------------------------------------------------------------------- atomicity


def refuse_inserts_at(url, ts):
    """Install a real database trigger that makes inserting the bar at ``ts`` fail."""
    engine = connect(url)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                sa.text(
                    "CREATE FUNCTION refuse_bar() RETURNS trigger AS $$ BEGIN "
                    f"IF NEW.ts = {ts} THEN RAISE EXCEPTION 'bar % refused by test trigger', NEW.ts; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            connection.execute(
                sa.text(
                    "CREATE TRIGGER refuse_bar BEFORE INSERT ON ohlcv FOR EACH ROW EXECUTE FUNCTION refuse_bar()"
                )
            )
        else:
            connection.execute(
                sa.text(
                    f"CREATE TRIGGER refuse_bar BEFORE INSERT ON ohlcv WHEN NEW.ts = {ts} "
                    "BEGIN SELECT RAISE(ABORT, 'bar refused by test trigger'); END"
                )
            )
    engine.dispose()


def test_failure_halfway_through_the_write_leaves_nothing(database_url, real_file, capsys):
    expected = expected_from_csv(real_file)
    refuse_inserts_at(database_url, int(expected["ts"].iloc[1200]))
    engine = connect(database_url)
    with pytest.raises(ImportFailedError, match="nothing was written"):
        # chunks of 100: twelve chunks are written before the failing one
        import_candles(engine, real_file, "binance", "BTC/USDT", "1m", chunk_rows=100)
    engine.dispose()
    assert count_rows(database_url) == 0

    code, out, err = run_cli(capsys, "--database-url", database_url, "data", "import", real_file)
    assert code == 2 and out == ""
    assert (
        err.count("\n") == 1
        and err.startswith("error: importing")
        and "refused by test trigger" in err
    )
    assert count_rows(database_url) == 0


def test_postgres_writes_with_one_set_based_insert_per_chunk(postgres_url, real_file):
    """The PostgreSQL path COPYs into a staging table and inserts with one statement per chunk."""
    from candela.core.db import upgrade

    engine = connect(postgres_url, require_schema=False)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE insert_log (query text, rows_seen bigint)"))
        connection.execute(
            sa.text(
                "CREATE FUNCTION log_insert() RETURNS trigger AS $$ BEGIN "
                "INSERT INTO insert_log SELECT current_query(), COUNT(*) FROM new_rows; RETURN NULL; END "
                "$$ LANGUAGE plpgsql"
            )
        )
        connection.execute(
            sa.text(
                "CREATE TRIGGER log_insert AFTER INSERT ON ohlcv REFERENCING NEW TABLE AS new_rows "
                "FOR EACH STATEMENT EXECUTE FUNCTION log_insert()"
            )
        )
    report = import_candles(engine, real_file, "binance", "BTC/USDT", "1m", chunk_rows=1000)
    with engine.connect() as connection:
        log = connection.execute(sa.text("SELECT query, rows_seen FROM insert_log")).all()
    engine.dispose()
    assert report.inserted == 1500
    assert [rows for _, rows in log] == [1000, 500]
    assert all(
        "FROM candela_staging_ohlcv_" in query and "ON CONFLICT DO NOTHING" in query
        for query, _ in log
    )


# --------------------------------------------------------------------------- bad input


def write(path, text: str | bytes):
    """Write ``text`` (lines get their final newline) or raw bytes."""
    if isinstance(text, str):
        text = (text + "\n" if text else "").encode()
    path.write_bytes(text)
    return path


@pytest.fixture
def bad_files(tmp_path, real_file):
    raw = gzip.decompress(real_file.read_bytes())
    text = raw.decode()
    header, *rows = text.splitlines()
    return {
        "malformed": (
            write(
                tmp_path / "malformed.csv",
                "\n".join([header, *rows[:9], rows[9].replace(",", ",x", 1), *rows[10:20]]),
            ),
            "line 11",
        ),
        "truncated_csv": (
            write(tmp_path / "truncated.csv", raw[: len(raw) // 2].rstrip(b"\n")[:-3]),
            "truncated",
        ),
        "truncated_gzip": (
            write(tmp_path / "truncated.csv.gz", real_file.read_bytes()[:-300]),
            "truncated or corrupt gzip",
        ),
        "missing_column": (
            write(
                tmp_path / "missing.csv",
                "\n".join(line.rsplit(",", 1)[0] for line in [header, *rows[:5]]),
            ),
            "missing volume",
        ),
        "extra_column": (
            write(
                tmp_path / "extra.csv",
                "\n".join([header + ",trades", *(row + ",7" for row in rows[:5])]),
            ),
            "unexpected 'trades'",
        ),
        "empty": (write(tmp_path / "empty.csv", ""), "empty"),
        "seconds": (
            write(
                tmp_path / "seconds.csv",
                "\n".join(
                    [
                        header,
                        *(
                            str(int(row.split(",")[0]) // 1000) + row[row.index(",") :]
                            for row in rows[:5]
                        ),
                    ]
                ),
            ),
            "look like seconds",
        ),
        "no_header": (write(tmp_path / "no_header.csv", "\n".join(rows[:5])), "no header line"),
        "header_only": (write(tmp_path / "header.csv", header), "no candle rows"),
        "binary": (write(tmp_path / "binary.csv", b"\x00\xff\xfe garbage"), "not UTF-8"),
        "missing_file": (tmp_path / "nope.csv", "does not exist"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "malformed",
        "truncated_csv",
        "truncated_gzip",
        "missing_column",
        "extra_column",
        "empty",
        "seconds",
        "no_header",
        "header_only",
        "binary",
        "missing_file",
    ],
)
def test_bad_files_give_one_error_line_and_write_nothing(database_url, bad_files, case, capsys):
    path, words = bad_files[case]
    code, out, err = run_cli(
        capsys,
        "--database-url",
        database_url,
        "data",
        "import",
        path,
        "--exchange",
        "binance",
        "--symbol",
        "BTC/USDT",
        "--timeframe",
        "1m",
    )
    assert code == 2
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert words in err
    assert count_rows(database_url) == 0


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--timeframe", "7m"], "unknown timeframe '7m'"),
        (["--symbol", "BTC-USDT"], "did you mean 'BTC/USDT'"),
        (["--symbol", "BTCUSDT"], "BASE/QUOTE"),
        (["--exchange", "Binance!"], "exchange 'Binance!'"),
    ],
)
def test_bad_market_options(database_url, real_file, options, words, capsys):
    arguments = {"--exchange": "binance", "--symbol": "BTC/USDT", "--timeframe": "1m"}
    arguments.update(dict(zip(options[::2], options[1::2])))
    flat = [item for pair in arguments.items() for item in pair]
    code, out, err = run_cli(
        capsys, "--database-url", database_url, "data", "import", real_file, *flat
    )
    assert code == 2 and out == "" and err.count("\n") == 1 and words in err
    assert count_rows(database_url) == 0


def test_unknown_market_name_asks_for_options(database_url, tmp_path, real_file, capsys):
    path = write(tmp_path / "prices.csv.gz", real_file.read_bytes())
    code, _, err = run_cli(capsys, "--database-url", database_url, "data", "import", path)
    assert code == 2 and "pass --exchange --symbol --timeframe" in err and err.count("\n") == 1


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("url", "words"),
    [
        (lambda: f"postgresql://postgres@127.0.0.1:{closed_port()}/candela", "cannot connect"),
        (lambda: "postgressql://postgres@127.0.0.1:5432/candela", "unsupported database backend"),
        (lambda: "not a url at all", "cannot parse database URL"),
    ],
)
def test_unreachable_or_misspelled_database_url(real_file, url, words, capsys):
    code, out, err = run_cli(capsys, "--database-url", url(), "data", "import", real_file)
    assert code == 2 and out == "" and err.count("\n") == 1 and words in err


def test_misspelled_postgres_database_name(postgres_admin_url, real_file, capsys):
    url = postgres_admin_url.rsplit("/", 1)[0] + "/candela_no_such_database"
    code, _, err = run_cli(capsys, "--database-url", url, "data", "import", real_file)
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err


def test_database_without_schema_is_refused(empty_database_url, real_file, capsys):
    code, _, err = run_cli(
        capsys, "--database-url", empty_database_url, "data", "import", real_file
    )
    assert code == 2 and err.count("\n") == 1 and "candela db upgrade" in err


def test_large_float_precision_round_trips(database_url, tmp_path):
    """Decimal text with 17 significant digits and tiny altcoin prices survive bit for bit."""
    rng = np.random.default_rng(7)
    price = 1e-8 + rng.random(200) * 1e-6
    ts = (np.arange(200) + 27_000_000) * MINUTE
    frame = pd.DataFrame(
        {
            "open_time_ms": ts,
            "open": price,
            "high": price * 1.01,
            "low": price * 0.99,
            "close": price,
            "volume": rng.random(200) * 1e7,
        }
    )
    path = tmp_path / "tiny.csv"
    frame.to_csv(path, index=False, float_format="%.17g")
    engine = connect(database_url)
    import_candles(engine, path, "bittrex", "XVG/BTC", "1m")
    engine.dispose()
    stored = stored_frame(database_url, ("bittrex", "XVG/BTC", "1m"))
    assert np.array_equal(
        stored[["open", "high", "low", "close", "volume"]].to_numpy(),
        pd.read_csv(path)[["open", "high", "low", "close", "volume"]].to_numpy(),
    )


@pytest.mark.slow
def test_demo_step_imports_the_sample_and_then_nothing_new(engine, tmp_path, capsys, sample_dir):
    from candela.cli.demo import DemoContext, foundation

    manifest = foundation.sample_files(sample_dir)
    total = sum(entry["rows"] for entry in manifest)
    context = DemoContext(engine=engine, out_dir=tmp_path)
    foundation.run(context)
    first = capsys.readouterr().out
    assert (
        f"{len(manifest)} files: {total:,} new, 0 already stored, 0 conflicting, 0 rejected"
        in first
    )
    inventory_lines = first.split("\n\n")[-1].strip().splitlines()
    assert inventory_lines[0].split()[:2] == ["market", "timeframe"]
    assert len(inventory_lines) == 1 + len(manifest)
    assert any(
        line.startswith("bittrex ADA/BTC   1m") and line.endswith("1,436 (237,753 bars)")
        for line in inventory_lines
    )
    foundation.run(context)
    assert f"{len(manifest)} files: 0 new, {total:,} already stored" in capsys.readouterr().out
