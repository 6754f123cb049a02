"""``candela data backfill | collect | status | gaps`` end to end against the loopback exchange."""

from __future__ import annotations

import contextlib
import re
import socket

import numpy as np
import pytest
from mock_exchange import agg_trade_event
from sqlalchemy import func, select

from candela.cli import main
from candela.core.schema import gaps, ohlcv


def cli(db, mock, *arguments):
    url = db.url.render_as_string(hide_password=False)
    return main(["--database-url", url, "data", *arguments])


def mock_options(mock, ws=False):
    options = ["--rest-url", mock.http_url, "--rate-limit-ms", "1"]
    return options + (["--ws-url", mock.ws_url] if ws else [])


def test_backfill_status_and_gaps_commands(db, mock, shared_candles, capsys):
    status = cli(
        db,
        mock,
        "backfill",
        "--exchange",
        "binance",
        "--symbols",
        "BTC/USDT,ETH/USDT",
        "--timeframes",
        "1m,1h",
        "--since",
        "2018-06-18",
        "--until",
        "2018-06-19T00:00",
        "--no-progress",
        *mock_options(mock),
    )
    out = capsys.readouterr().out
    assert status == 0
    with db.connect() as connection:
        counts = dict(
            connection.execute(
                select(ohlcv.c.symbol + " " + ohlcv.c.timeframe, func.count()).group_by(
                    ohlcv.c.symbol, ohlcv.c.timeframe
                )
            ).all()
        )
        ledger_rows = connection.execute(select(func.count()).select_from(gaps)).scalar()
    expected_1m = sum(
        1
        for row in shared_candles("BTC-USDT", "1m")
        if 1_529_280_000_000 <= row[0] < 1_529_366_400_000
    )
    assert counts["BTC/USDT 1m"] == expected_1m
    assert "binance BTC/USDT 1m [2018-06-18T00:01Z .. 2018-06-19T00:00Z]" in out
    assert f"{expected_1m} new bars" in out

    cli(db, mock, "status")
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["exchange", "symbol", "tf", "bars"]
    btc_1m = next(
        line
        for line in table
        if line.startswith("binance") and "BTC/USDT" in line and " 1m " in line
    )
    assert btc_1m.split()[3] == str(expected_1m)

    cli(db, mock, "gaps", "--status", "confirmed_empty")
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == ledger_rows + 1 and ledger_rows > 0
    assert all("confirmed_empty" in line for line in listed[1:])

    mock.reset()
    assert (
        cli(
            db,
            mock,
            "backfill",
            "--exchange",
            "binance",
            "--symbols",
            "BTC/USDT,ETH/USDT",
            "--timeframes",
            "1m,1h",
            "--since",
            "2018-06-18",
            "--until",
            "2018-06-19T00:00",
            "--no-progress",
            *mock_options(mock),
        )
        == 0
    )
    assert "0 requests, 0 new bars" in capsys.readouterr().out
    assert not [p for p in mock.paths() if p.endswith("/klines")]


def test_backfill_failure_is_one_line_naming_the_market_and_window(db, mock, capsys):
    mock.inject("/klines", "http_429", times=100)
    status = cli(
        db,
        mock,
        "backfill",
        "--exchange",
        "binance",
        "--symbols",
        "BTC/USDT",
        "--timeframes",
        "1m",
        "--since",
        "2018-06-18T05:00",
        "--until",
        "2018-06-18T06:00",
        "--retries",
        "1",
        "--no-progress",
        *mock_options(mock),
    )
    error = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(error) == 1
    assert error[0].startswith(
        "error: binance BTC/USDT 1m window 2018-06-18T05:00Z .. 2018-06-18T06:00Z: "
        "gave up after 2 attempts; last error DDoSProtection"
    )


def test_bad_arguments_say_how_to_fix_them(db, mock, capsys):
    assert (
        cli(
            db,
            mock,
            "backfill",
            "--exchange",
            "binance",
            "--symbols",
            "BTC/USDT",
            "--timeframes",
            "1m",
            "--since",
            "yesterday",
            *mock_options(mock),
        )
        == 2
    )
    assert "use e.g. 2024-01-01" in capsys.readouterr().err
    assert (
        cli(
            db,
            mock,
            "backfill",
            "--exchange",
            "binance",
            "--symbols",
            "BTCUSDT",
            "--timeframes",
            "1m",
            "--since",
            "2024-01-01",
            *mock_options(mock),
        )
        == 2
    )
    assert "unified BASE/QUOTE" in capsys.readouterr().err
    assert (
        cli(
            db,
            mock,
            "backfill",
            "--exchange",
            "binance",
            "--symbols",
            "BTC/USDT",
            "--timeframes",
            "7m",
            "--since",
            "2024-01-01",
            *mock_options(mock),
        )
        == 2
    )
    assert "unknown timeframe '7m'" in capsys.readouterr().err


def test_collect_command_streams_trades_into_candles(db, mock, capsys):
    """The command runs on the real wall clock, so the recorded trades are shifted by whole minutes
    to start 10 minutes from now (the clock then closes nothing during the run and candles close
    by trade time); everything else about them is as recorded."""
    import time

    recorded = mock.trades["ETHUSDT"][:4000]
    shift = (time.time_ns() // 1_000_000 - recorded[0]["ts"]) // 60_000 * 60_000 + 10 * 60_000
    trades = [{**t, "ts": t["ts"] + shift} for t in recorded]
    mock.ws_plan["ETHUSDT"] = [[agg_trade_event("ETHUSDT", t) for t in trades]]
    original, mock.trades["ETHUSDT"] = mock.trades["ETHUSDT"], trades  # REST serves the same trades
    try:
        status = cli(
            db,
            mock,
            "collect",
            "--exchange",
            "binance",
            "--symbols",
            "ETH/USDT",
            "--timeframes",
            "1m",
            "--duration",
            "5",
            "--store-trades",
            *mock_options(mock, ws=True),
        )
    finally:
        mock.trades["ETHUSDT"] = original
    assert status == 0
    assert re.match(r"collected \d+ trades, stored \d+ candles", capsys.readouterr().out)
    with db.connect() as connection:
        stored = connection.execute(
            select(ohlcv.c.ts, ohlcv.c.volume)
            .where(ohlcv.c.symbol == "ETH/USDT")
            .order_by(ohlcv.c.ts)
        ).all()
    ts = np.array([t["ts"] for t in trades])
    amount = np.array([float(t["amount"]) for t in trades])
    assert len(stored) >= 2
    for close_ts, volume in stored:
        assert volume == pytest.approx(
            amount[(ts >= close_ts - 60_000) & (ts < close_ts)].sum(), rel=1e-12
        )


# --------------------------------------------------------------------------- unreachable exchange


@contextlib.contextmanager
def unreachable_url(kind):
    """A REST base URL that fails as ``kind`` says, on this machine, without the internet."""
    if kind == "refused":  # a loopback port nobody listens on
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    elif kind == "dns":  # RFC 6761: names under .invalid never resolve
        yield "http://candela-test.invalid"
    else:  # a loopback port that accepts connections and never answers
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)
            yield f"http://127.0.0.1:{silent.getsockname()[1]}"


COMMANDS = {
    "backfill": ["backfill", "--since", "2024-01-01", "--no-progress"],
    "collect": ["collect", "--duration", "5"],
    "collect --poll": ["collect", "--poll", "--duration", "5"],
}
CAUSES = {
    "refused": "connection refused",
    "dns": "host name not found",
    "timeout": "no answer within 0.5 s",
}


@pytest.mark.parametrize("kind", sorted(CAUSES))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_unreachable_exchange_is_one_line_with_exit_2(
    sqlite_database_url, command, kind, capsys
):
    with unreachable_url(kind) as url:
        status = main(
            [
                "--database-url",
                sqlite_database_url,
                "data",
                *COMMANDS[command],
                "--exchange",
                "binance",
                "--symbols",
                "BTC/USDT",
                "--timeframes",
                "1m",
                "--rest-url",
                url,
                "--retries",
                "0",
                "--timeout",
                "0.5",
            ]
        )
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert err.count("\n") == 1, err
    what = "server time" if command == "collect --poll" else "markets"
    assert err.startswith(f"error: binance {what}: gave up after 1 attempt; last error ")
    assert err.endswith(f" ({CAUSES[kind]}): check the network connection and --rest-url {url}\n")


@pytest.fixture
def sqlite_database_url(sqlite_url):
    from candela.core.db import create_database_engine, upgrade

    engine = create_database_engine(sqlite_url)
    upgrade(engine)
    engine.dispose()
    return sqlite_url


# --------------------------------------------------------------------------- other bad input


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        (
            [
                "collect",
                "--exchange",
                "binance",
                "--symbols",
                "DOGE/USDT",
                "--timeframes",
                "1m",
                "--duration",
                "5",
                "@ws",
            ],
            "binance has no spot market 'DOGE/USDT'",
        ),
        (
            [
                "collect",
                "--poll",
                "--exchange",
                "binance",
                "--symbols",
                "DOGE/USDT",
                "--timeframes",
                "1m",
                "--duration",
                "5",
                "@rest",
            ],
            "binance has no spot market 'DOGE/USDT'",
        ),
        (
            [
                "backfill",
                "--exchange",
                "binanse",
                "--symbols",
                "BTC/USDT",
                "--timeframes",
                "1m",
                "--since",
                "2024-01-01",
                "@rest",
            ],
            "ccxt has no exchange 'binanse'",
        ),
        (
            [
                "backfill",
                "--exchange",
                "binance",
                "--symbols",
                "BTC/USDT",
                "--timeframes",
                "1m",
                "--since",
                "2024-01-01",
                "--retries",
                "x",
                "@rest",
            ],
            "argument --retries: invalid int value: 'x'",
        ),
        (
            [
                "backfill",
                "--exchange",
                "binance",
                "--symbols",
                "BTC/USDT",
                "--timeframes",
                "1m",
                "--since",
                "2024-01-01",
                "--rest-url",
                "localhost:9",
            ],
            "--rest-url 'localhost:9' must start with http://",
        ),
        (
            [
                "backfill",
                "--exchange",
                "binance",
                "--symbols",
                "BTC/USDT",
                "--timeframes",
                "1m",
                "--since",
                "2024-01-01",
                "--timeout",
                "0",
                "@rest",
            ],
            "--timeout must be more than 0 seconds",
        ),
        (
            [
                "collect",
                "--poll",
                "--exchange",
                "binance",
                "--symbols",
                "BTC/USDT",
                "--timeframes",
                "1m",
                "--poll-interval",
                "-1",
                "@rest",
            ],
            "--poll-interval must be more than 0 seconds",
        ),
        (["gaps", "--timeframe", "7m"], "unknown timeframe '7m'"),
        (["gaps", "--symbol", "BTCUSDT"], "unified BASE/QUOTE"),
        (["gaps", "--status", "closed"], "argument --status: invalid choice: 'closed'"),
        (["status", "--exchange", "Bin ance"], "exchange 'Bin ance' is not a ccxt exchange id"),
        ([], "the following arguments are required: SUBCOMMAND (see 'candela data --help')"),
    ],
)
def test_bad_input_to_data_commands_is_one_line_with_exit_2(db, mock, arguments, words, capsys):
    endpoints = {"@rest": mock_options(mock), "@ws": mock_options(mock, ws=True)}
    flat = [item for argument in arguments for item in endpoints.get(argument, [argument])]
    try:
        status = cli(db, mock, *flat)
    except SystemExit as exit:  # argparse's own errors
        status = exit.code
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert words in err
