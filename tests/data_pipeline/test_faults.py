"""Every fault the loopback exchange can inject, through the real ccxt client and the backfill.

For each fault the pipeline must either retry and end with exactly the exchange's candles, or
stop with an error naming exchange, symbol and window; either way the database holds only
valid, unique bars.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from mock_exchange import FAULTS
from test_backfill import oracle, stored

from data_pipeline.backfill import BackfillError, backfill
from data_pipeline.exchanges import Endpoints, create_exchange
from data_pipeline.retry import RetryPolicy
from data_pipeline.validation import validate_candles

pytestmark = pytest.mark.slow

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)
ALL_FAULTS = sorted(name for name in FAULTS if not name.startswith("okx_"))


def run(mock, db, exchange_id, since, until, timeframe="1m"):
    async def main():
        exchange = create_exchange(
            exchange_id, endpoints=Endpoints(mock.http_url), rate_limit_ms=1, timeout_ms=1000
        )
        try:
            return await backfill(
                exchange,
                db,
                ["BTC/USDT"],
                [timeframe],
                since,
                until,
                policy=FAST,
                progress=False,
                limit=100,
            )
        finally:
            await exchange.close()

    return asyncio.run(main())


def assert_only_valid_unique_bars(table, tf_ms):
    check = validate_candles(table[:, 0].astype(np.int64), *table[:, 1:].T, tf_ms)
    assert check.rejected == []


@pytest.mark.parametrize("fault", ALL_FAULTS)
def test_binance_transient_fault_is_retried(mock, db, shared_candles, fault):
    rows = shared_candles("BTC-USDT", "1m")
    since, until = rows[600][0], rows[900][0]
    mock.reset()
    mock.inject("/klines", fault, times=2)
    report = run(mock, db, "binance", since, until)
    np.testing.assert_array_equal(stored(db), oracle(rows, "1m", since, until))
    klines = [p for p in mock.paths() if p.endswith("/klines")]
    assert len(klines) == report.requests + 2  # two failed answers, each asked again
    assert report.rejected == 0


@pytest.mark.parametrize("fault", ["http_429", "malformed_json", "html_body", "http_502"])
def test_binance_persistent_fault_stops_with_a_clear_error(mock, db, shared_candles, fault):
    rows = shared_candles("BTC-USDT", "1m")
    since, until = rows[600][0], rows[900][0]
    # the first page works, then the exchange keeps failing
    run(mock, db, "binance", since, rows[650][0])
    mock.inject("/klines", fault, times=50)
    with pytest.raises(
        BackfillError,
        match=r"binance BTC/USDT 1m window 2018-06-18T\d\d:\d\dZ \.\. "
        r"2018-06-18T\d\d:\d\dZ: gave up after 4 attempts",
    ):
        run(mock, db, "binance", since, until)
    table = stored(db)
    np.testing.assert_array_equal(table, oracle(rows, "1m", since, rows[650][0]))
    assert_only_valid_unique_bars(table, 60_000)


@pytest.mark.parametrize(
    "fault", ["okx_429", "http_503", "html_body", "empty_body", "wrong_shape", "slow"]
)
def test_okx_transient_fault_is_retried(mock, db, shared_candles, fault):
    rows = shared_candles("BTC-USDT", "1h")
    since, until = rows[10][0], rows[400][0]
    mock.inject("/history-candles", fault, times=2)
    run(mock, db, "okx", since, until, timeframe="1h")
    np.testing.assert_array_equal(
        stored(db, exchange="okx", timeframe="1h"), oracle(rows, "1h", since, until)
    )


@pytest.mark.parametrize("fault", ["malformed_json", "html_body", "empty_body", "wrong_shape"])
def test_malformed_market_list_is_retried_not_taken_as_no_markets(mock, db, shared_candles, fault):
    rows = shared_candles("BTC-USDT", "1m")
    mock.inject("/exchangeInfo", fault, times=1)
    run(mock, db, "binance", rows[600][0], rows[620][0])
    assert mock.paths().count("/api/v3/exchangeInfo") == 2
    assert len(stored(db)) == 20


def test_candles_violating_ohlc_rules_never_reach_the_database(mock, db, shared_candles):
    rows = shared_candles("BTC-USDT", "1m")
    since, until = rows[600][0], rows[900][0]
    bad = [rows[i][0] for i in (610, 611, 700, 899)]
    for open_ms in bad:
        mock.corrupt_candle("binance", "BTCUSDT", "1m", open_ms)
    report = run(mock, db, "binance", since, until)
    table = stored(db)
    assert_only_valid_unique_bars(table, 60_000)
    want = oracle(rows, "1m", since, until)
    want = want[~np.isin(want[:, 0], np.array(bad) + 60_000)]
    np.testing.assert_array_equal(table, want)
    # each bad candle arrives twice (its page, then the gap pass) and is counted once
    assert sum(report.markets[0].rejected.values()) == 4
    assert sorted(status for _, _, status in report.markets[0].gaps) == ["open"] * 3
