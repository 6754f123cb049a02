"""Backfill through the real ccxt async client against the loopback exchange (Binance and OKX).

Oracle: the real candle files the mock serves (shipped with the repository, ``market_files``), converted from open to
close times by the test; the database must hold exactly those rows in the requested window.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from sqlalchemy import func, select

from candela.core.bus import InProcessBus
from candela.core.schema import gaps, ohlcv
from data_pipeline.backfill import BackfillError, backfill
from data_pipeline.exchanges import Endpoints, create_exchange
from data_pipeline.gaps import list_gaps
from data_pipeline.publish import MemoryPublisher
from data_pipeline.retry import RetryPolicy

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)
TF_MS = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000}
SINCE = 1_524_873_600_000  # 2018-04-28T00:00Z
UNTIL = 1_529_366_400_000  # 2018-06-19T00:00Z


def run_backfill(
    mock,
    db,
    exchange_id="binance",
    symbols=("BTC/USDT",),
    timeframes=("1m",),
    since=SINCE,
    until=UNTIL,
    policy=FAST,
    **kwargs,
):
    async def main():
        exchange = create_exchange(
            exchange_id,
            endpoints=Endpoints(mock.http_url),
            rate_limit_ms=1,
            timeout_ms=kwargs.pop("timeout_ms", 3000),
        )
        try:
            return await backfill(
                exchange,
                db,
                list(symbols),
                list(timeframes),
                since,
                until,
                policy=policy,
                progress=False,
                **kwargs,
            )
        finally:
            await exchange.close()

    return asyncio.run(main())


def stored(db, exchange="binance", symbol="BTC/USDT", timeframe="1m"):
    with db.connect() as connection:
        rows = connection.execute(
            select(
                ohlcv.c.ts, ohlcv.c.open, ohlcv.c.high, ohlcv.c.low, ohlcv.c.close, ohlcv.c.volume
            )
            .where(
                ohlcv.c.exchange == exchange,
                ohlcv.c.symbol == symbol,
                ohlcv.c.timeframe == timeframe,
            )
            .order_by(ohlcv.c.ts)
        ).all()
    return np.array(rows, dtype=np.float64).reshape(-1, 6)


def oracle(rows, timeframe, since=SINCE, until=UNTIL, now=None):
    """The exchange's candles with close times, in the window, closed at ``now``."""
    tf = TF_MS[timeframe]
    table = np.array([[row[0] + tf, *map(float, row[1:6])] for row in rows])
    keep = (table[:, 0] - tf >= since) & (table[:, 0] <= until)
    if now is not None:
        keep &= table[:, 0] <= now
    return table[keep]


def klines_requests(mock):
    return [q for p, q in mock.requests if p.endswith("/klines")]


@pytest.mark.slow
def test_backfill_stores_exactly_the_exchange_candles_and_reruns_are_free(mock, db, shared_candles):
    report = run_backfill(mock, db, symbols=("BTC/USDT", "ETH/USDT"), timeframes=("1m", "1h"))
    for symbol in ("BTC/USDT", "ETH/USDT"):
        for timeframe in ("1m", "1h"):
            want = oracle(shared_candles(symbol.replace("/", "-"), timeframe), timeframe)
            np.testing.assert_array_equal(stored(db, symbol=symbol, timeframe=timeframe), want)
    assert report.inserted == sum(m.inserted for m in report.markets) > 3000
    assert report.rejected == 0
    # the exchange's own holes were found, asked for again and confirmed empty; nothing filled in
    with db.connect() as connection:
        ledger = list_gaps(connection, symbol="BTC/USDT", timeframe="1m")
    between = [g for g in ledger if g.first_missing_ts == 1_524_910_500_000]
    assert between and between[0].status == "confirmed_empty"
    assert between[0].last_missing_ts == 1_529_297_280_000
    assert all(g.status == "confirmed_empty" for g in ledger)

    mock.reset()
    again = run_backfill(mock, db, symbols=("BTC/USDT", "ETH/USDT"), timeframes=("1m", "1h"))
    assert klines_requests(mock) == []  # a second run fetches nothing already stored
    assert again.inserted == 0 and again.requests == 0


def test_backfill_resumes_after_the_last_stored_bar(mock, db, shared_candles):
    rows = shared_candles("BTC-USDT", "1m")
    middle = rows[1100][0]  # an open time in the second segment
    run_backfill(mock, db, since=rows[600][0], until=middle)
    mock.reset()
    run_backfill(mock, db, since=rows[600][0], until=UNTIL)
    starts = [int(q["startTime"]) for q in klines_requests(mock)]
    assert starts[0] == middle  # the bar opening at `middle` closes after the first window's end
    np.testing.assert_array_equal(stored(db), oracle(rows, "1m", since=rows[600][0]))


def test_the_bar_still_open_is_never_stored(mock, db, shared_candles):
    rows = shared_candles("BTC-USDT", "1h")
    mock.now_ms = rows[700][0] + 20 * 60_000  # 20 minutes into the hour opening at rows[700]
    report = run_backfill(mock, db, timeframes=("1h",), since=rows[600][0], until=None)
    got = stored(db, timeframe="1h")
    assert got[-1, 0] == rows[700][0]  # the last stored bar closed when the open one began
    assert got[:, 0].max() <= mock.now_ms
    np.testing.assert_array_equal(got, oracle(rows, "1h", since=rows[600][0], now=mock.now_ms))
    assert report.markets[0].window[1] == rows[700][0]


def test_open_bar_in_a_page_is_dropped_not_stored(mock, db, shared_candles):
    """Even if the exchange's clock and its page disagree, a bar closing after 'now' is dropped."""
    rows = shared_candles("BTC-USDT", "1m")
    mock.now_ms = rows[700][0] + 30_000
    report = run_backfill(mock, db, since=rows[690][0], until=None)
    assert stored(db)[:, 0].max() <= mock.now_ms
    assert report.markets[0].inserted == 10


def test_okx_backfill_pages_newest_first_windows(mock, db, shared_candles):
    report = run_backfill(mock, db, exchange_id="okx", timeframes=("1h",))
    want = oracle(shared_candles("BTC-USDT", "1h"), "1h")
    np.testing.assert_array_equal(stored(db, exchange="okx", timeframe="1h"), want)
    paths = [p for p, _ in mock.requests]
    assert paths.count("/api/v5/public/instruments") == 1
    assert all(int(q["limit"]) <= 100 for p, q in mock.requests if p.endswith("history-candles"))
    with db.connect() as connection:
        ledger = list_gaps(connection, exchange="okx")
    # the outage between the two recorded segments, and the hours after the data ends (long closed)
    assert [
        (g.first_missing_ts, g.status) for g in ledger if g.first_missing_ts > SINCE + 3_600_000
    ] == [(1_524_913_200_000, "confirmed_empty"), (1_529_359_200_000, "confirmed_empty")]
    assert report.rejected == 0
    mock.reset()
    run_backfill(mock, db, exchange_id="okx", timeframes=("1h",))
    assert not [p for p, _ in mock.requests if "candles" in p]


def test_okx_1m_window(mock, db, shared_candles):
    rows = shared_candles("BTC-USDT", "1m")
    since, until = rows[510][0], rows[900][0]
    run_backfill(mock, db, exchange_id="okx", since=since, until=until)
    np.testing.assert_array_equal(stored(db, exchange="okx"), oracle(rows, "1m", since, until))


def test_a_bad_candle_is_rejected_then_refetched(mock, db, shared_candles):
    rows = shared_candles("BTC-USDT", "1m")
    bad = rows[620][0]
    mock.corrupt_candle("binance", "BTCUSDT", "1m", bad, times=1)
    report = run_backfill(mock, db, since=rows[600][0], until=rows[650][0])
    [(reason, count)] = report.markets[0].rejected.items()  # high and low swapped
    assert count == 1 and reason in (
        "high_below_open_close",
        "low_above_open_close",
        "high_below_low",
    )
    np.testing.assert_array_equal(stored(db), oracle(rows, "1m", rows[600][0], rows[650][0]))
    assert report.markets[0].gaps == [(bad + 60_000, bad + 60_000, "refetched")]


def test_a_persistently_bad_candle_stays_an_open_gap(mock, db, shared_candles):
    rows = shared_candles("BTC-USDT", "1m")
    bad = rows[620][0]
    mock.corrupt_candle("binance", "BTCUSDT", "1m", bad)
    run_backfill(mock, db, since=rows[600][0], until=rows[650][0])
    got = stored(db)
    assert bad + 60_000 not in got[:, 0]
    want = oracle(rows, "1m", rows[600][0], rows[650][0])
    np.testing.assert_array_equal(got, want[want[:, 0] != bad + 60_000])
    assert (got[:, 2] >= got[:, 3]).all()
    with db.connect() as connection:
        [gap] = list_gaps(connection)
    assert (gap.first_missing_ts, gap.missing_bars, gap.status) == (bad + 60_000, 1, "open")
    assert "rejected" in gap.detail
    mock.reset()  # fixed at the exchange: the next run asks again and fills it
    run_backfill(mock, db, since=rows[600][0], until=rows[650][0])
    np.testing.assert_array_equal(stored(db), want)
    with db.connect() as connection:
        [gap] = list_gaps(connection)
    assert gap.status == "refetched"


def test_a_bad_candle_received_twice_is_counted_once(mock, db, shared_candles):
    rows = shared_candles("BTC-USDT", "1m")
    bad = rows[620][0]
    mock.corrupt_candle("binance", "BTCUSDT", "1m", bad)
    report = run_backfill(mock, db, since=rows[600][0], until=rows[650][0])
    served = [
        q for q in klines_requests(mock) if int(q["startTime"]) <= bad <= int(q.get("endTime", bad))
    ]
    assert len(served) == 2  # its page, then the gap pass asking for it again
    [(reason, count)] = report.markets[0].rejected.items()
    assert count == 1 and reason in (
        "high_below_open_close",
        "low_above_open_close",
        "high_below_low",
    )
    assert report.rejected == 1
    assert report.markets[0].gaps == [
        (bad + 60_000, bad + 60_000, "open")
    ]  # still asked again next run


def test_publishes_only_bars_newer_than_the_previous_newest(mock, db, shared_candles):
    rows = shared_candles("BTC-USDT", "1m")
    publisher = MemoryPublisher()
    run_backfill(mock, db, since=rows[600][0], until=rows[700][0], publisher=publisher)
    assert publisher.messages == []  # loading history into an empty market is not news
    run_backfill(mock, db, since=rows[600][0], until=rows[705][0], publisher=publisher)
    assert [channel for channel, _ in publisher.messages] == ["market:binance:BTC/USDT:1m"] * 5
    payloads = [payload for _, payload in publisher.messages]
    assert [p["ts"] for p in payloads] == [rows[i][0] + 60_000 for i in range(700, 705)]
    assert payloads[0]["close"] == float(rows[700][4]) and payloads[0]["symbol"] == "BTC/USDT"


def test_a_candela_bus_is_a_publisher(mock, db, shared_candles):
    rows = shared_candles("BTC-USDT", "1m")
    bus, received = InProcessBus(), []
    bus.subscribe(
        ["market:binance:*"], lambda channel, payload: received.append((channel, payload["ts"]))
    )
    run_backfill(mock, db, since=rows[600][0], until=rows[700][0], publisher=bus)
    run_backfill(mock, db, since=rows[600][0], until=rows[702][0], publisher=bus)
    assert received == [("market:binance:BTC/USDT:1m", rows[i][0] + 60_000) for i in (700, 701)]


def test_concurrent_markets_respect_the_rate_limit(mock, db, shared_candles):
    rows = shared_candles("BTC-USDT", "1m")

    async def main():
        exchange = create_exchange("binance", endpoints=Endpoints(mock.http_url), rate_limit_ms=100)
        try:
            await exchange.load_markets()
            mock.reset()
            return await backfill(
                exchange,
                db,
                ["BTC/USDT", "ETH/USDT"],
                ["1m", "1h"],
                rows[600][0],
                rows[900][0],
                policy=FAST,
                progress=False,
                limit=100,
            )
        finally:
            await exchange.close()

    asyncio.run(main())
    times = [
        t for (path, _), t in zip(mock.requests, mock.request_times) if path.endswith("/klines")
    ]
    assert len(times) >= 6
    # Binance klines cost 0.4 units of 100 ms: 40 ms apart, though four markets ask at once. The
    # server sees them with the network's jitter (a loaded machine delays one request, and the
    # next then seems closer), so the rule is checked over the whole run: n requests span at least
    # n - 1 intervals, less what the first one's delay can take off.
    mean_spacing = (times[-1] - times[0]) / (len(times) - 1)
    assert mean_spacing >= 0.036, np.diff(times)


def test_unknown_symbol_or_timeframe_is_a_clear_error(mock, db):
    with pytest.raises(ValueError, match="binance has no spot market 'DOGE/USDT'"):
        run_backfill(mock, db, symbols=("DOGE/USDT",))
    with pytest.raises(ValueError, match="unified BASE/QUOTE"):
        run_backfill(mock, db, symbols=("BTC-USDT",))
    with pytest.raises(ValueError, match="is before --since"):
        run_backfill(mock, db, since=UNTIL, until=SINCE)
    with db.connect() as connection:
        assert connection.execute(select(func.count()).select_from(ohlcv)).scalar() == 0
        assert connection.execute(select(func.count()).select_from(gaps)).scalar() == 0


def test_failure_names_exchange_symbol_and_window(mock, db, shared_candles):
    rows = shared_candles("BTC-USDT", "1m")
    mock.inject("/klines", "http_503", times=1000)
    with pytest.raises(BackfillError) as caught:
        run_backfill(mock, db, since=rows[600][0], until=rows[650][0])
    message = str(caught.value)
    assert "binance BTC/USDT 1m window 2018-06-18T" in message
    assert "gave up after 4 attempts" in message and "ExchangeNotAvailable" in message
    assert caught.value.report.markets[0].error == message
