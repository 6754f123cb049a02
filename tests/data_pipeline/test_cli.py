"""``candela data backfill | collect | status | gaps`` end to end against the loopback exchange."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sqlalchemy import func, select

from candela.cli import main
from candela.core.schema import gaps, ohlcv
from mock_exchange import agg_trade_event


def cli(db, mock, *arguments):
    url = db.url.render_as_string(hide_password=False)
    return main(["--database-url", url, "data", *arguments])


def mock_options(mock, ws=False):
    options = ["--rest-url", mock.http_url, "--rate-limit-ms", "1"]
    return options + (["--ws-url", mock.ws_url] if ws else [])


def test_backfill_status_and_gaps_commands(db, mock, shared_candles, capsys):
    status = cli(db, mock, "backfill", "--exchange", "binance", "--symbols", "BTC/USDT,ETH/USDT",
                 "--timeframes", "1m,1h", "--since", "2018-06-18", "--until", "2018-06-19T00:00",
                 "--no-progress", *mock_options(mock))
    out = capsys.readouterr().out
    assert status == 0
    with db.connect() as connection:
        counts = dict(connection.execute(select(ohlcv.c.symbol + " " + ohlcv.c.timeframe, func.count())
                                         .group_by(ohlcv.c.symbol, ohlcv.c.timeframe)).all())
        ledger_rows = connection.execute(select(func.count()).select_from(gaps)).scalar()
    expected_1m = sum(1 for row in shared_candles("BTC-USDT", "1m") if 1_529_280_000_000 <= row[0] < 1_529_366_400_000)
    assert counts["BTC/USDT 1m"] == expected_1m
    assert f"binance BTC/USDT 1m [2018-06-18T00:01Z .. 2018-06-19T00:00Z]" in out
    assert f"{expected_1m} new bars" in out

    cli(db, mock, "status")
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["exchange", "symbol", "tf", "bars"]
    btc_1m = next(line for line in table if line.startswith("binance") and "BTC/USDT" in line and " 1m " in line)
    assert btc_1m.split()[3] == str(expected_1m)

    cli(db, mock, "gaps", "--status", "confirmed_empty")
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == ledger_rows + 1 and ledger_rows > 0
    assert all("confirmed_empty" in line for line in listed[1:])

    mock.reset()
    assert cli(db, mock, "backfill", "--exchange", "binance", "--symbols", "BTC/USDT,ETH/USDT",
               "--timeframes", "1m,1h", "--since", "2018-06-18", "--until", "2018-06-19T00:00",
               "--no-progress", *mock_options(mock)) == 0
    assert "0 requests, 0 new bars" in capsys.readouterr().out
    assert not [p for p in mock.paths() if p.endswith("/klines")]


def test_backfill_failure_is_one_line_naming_the_market_and_window(db, mock, capsys):
    mock.inject("/klines", "http_429", times=100)
    status = cli(db, mock, "backfill", "--exchange", "binance", "--symbols", "BTC/USDT", "--timeframes", "1m",
                 "--since", "2018-06-18T05:00", "--until", "2018-06-18T06:00", "--retries", "1",
                 "--no-progress", *mock_options(mock))
    error = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(error) == 1
    assert error[0].startswith("error: binance BTC/USDT 1m window 2018-06-18T05:00Z .. 2018-06-18T06:00Z: "
                               "gave up after 2 attempts; last error DDoSProtection")


def test_bad_arguments_say_how_to_fix_them(db, mock, capsys):
    assert cli(db, mock, "backfill", "--exchange", "binance", "--symbols", "BTC/USDT", "--timeframes", "1m",
               "--since", "yesterday", *mock_options(mock)) == 2
    assert "use e.g. 2024-01-01" in capsys.readouterr().err
    assert cli(db, mock, "backfill", "--exchange", "binance", "--symbols", "BTCUSDT", "--timeframes", "1m",
               "--since", "2024-01-01", *mock_options(mock)) == 2
    assert "unified BASE/QUOTE" in capsys.readouterr().err
    assert cli(db, mock, "backfill", "--exchange", "binance", "--symbols", "BTC/USDT", "--timeframes", "7m",
               "--since", "2024-01-01", *mock_options(mock)) == 2
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
        status = cli(db, mock, "collect", "--exchange", "binance", "--symbols", "ETH/USDT", "--timeframes",
                     "1m", "--duration", "5", "--store-trades", *mock_options(mock, ws=True))
    finally:
        mock.trades["ETHUSDT"] = original
    assert status == 0
    assert re.match(r"collected \d+ trades, stored \d+ candles", capsys.readouterr().out)
    with db.connect() as connection:
        stored = connection.execute(select(ohlcv.c.ts, ohlcv.c.volume).where(ohlcv.c.symbol == "ETH/USDT")
                                    .order_by(ohlcv.c.ts)).all()
    ts = np.array([t["ts"] for t in trades])
    amount = np.array([float(t["amount"]) for t in trades])
    assert len(stored) >= 2
    for close_ts, volume in stored:
        assert volume == pytest.approx(amount[(ts >= close_ts - 60_000) & (ts < close_ts)].sum(), rel=1e-12)
