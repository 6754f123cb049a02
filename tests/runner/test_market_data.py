"""Bar access of the runner: the history window buffer and the shared per-market feed."""

from __future__ import annotations

import time

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from runner_support import ADA_BTC, store_bars

from runner.market_data import BarWindow, MarketFeed, bars_after


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 12), n=st.integers(0, 60))
def test_bar_window_always_equals_the_last_bars(size, n):
    rows = [(1000 + i, float(i), i + 0.5, i - 0.5, float(i), 1.0) for i in range(n)]
    window = BarWindow(size)
    for k, row in enumerate(rows):
        window.append(row)
        expected = np.array(rows[max(0, k + 1 - size) : k + 1])
        got = np.column_stack(window.arrays())
        np.testing.assert_array_equal(got, expected)
        assert window.arrays()[0].dtype == np.int64


def test_market_feed_serves_every_bar_once_in_order_with_small_reads(any_engine, ada_btc_bars):
    bars = ada_btc_bars[:500]
    store_bars(any_engine, ADA_BTC, bars, 0, 300)
    feed = MarketFeed(ADA_BTC, keep=250)
    seen: list[int] = []
    with any_engine.connect() as connection:
        cursor = int(bars.ts[0]) - 1
        woken = time.monotonic()
        while True:  # limit 37 < available bars: the feed must keep reading, never stop early
            rows = feed.bars_after(connection, cursor, fresh_since=woken, limit=37)
            if rows is None:
                rows = bars_after(connection, ADA_BTC, cursor, limit=37)
            if not rows:
                break
            seen.extend(int(row[0]) for row in rows)
            cursor = seen[-1]
        assert seen == bars.ts[:300].tolist()
        connection.rollback()
        store_bars(any_engine, ADA_BTC, bars, 300, 500)
        # already read after this wake-up: nothing new until the next wake-up
        assert feed.bars_after(connection, cursor, fresh_since=woken, limit=1000) == []
        rows = feed.bars_after(connection, cursor, fresh_since=time.monotonic(), limit=1000)
        assert [int(row[0]) for row in rows] == bars.ts[300:500].tolist()
        reads = feed.reads
        # a second bot woken at the same time is served from memory
        again = feed.bars_after(connection, cursor, fresh_since=woken, limit=1000)
        assert again == rows and feed.reads == reads
        # a cursor older than what the feed keeps is not covered: the bot reads the database
        assert feed.bars_after(connection, int(bars.ts[10]), fresh_since=woken) is None


def test_bots_notified_by_one_message_share_one_read_that_started_after_it(
    any_engine, ada_btc_bars
):
    """The pipeline commits, then publishes: any read that STARTED after the message arrived
    holds the bar, so bots woken by that message are served from memory, however late they run;
    a read that started before the message does not count."""
    bars = ada_btc_bars[:50]
    store_bars(any_engine, ADA_BTC, bars, 0, 40)
    feed = MarketFeed(ADA_BTC)
    with any_engine.connect() as connection:
        cursor = int(bars.ts[39])
        assert feed.bars_after(connection, cursor, fresh_since=time.monotonic()) == []
        connection.rollback()
        before_message = feed.reads
        store_bars(any_engine, ADA_BTC, bars, 40, 41)  # the pipeline commits bar 40 ...
        message_arrived = time.monotonic()  # ... then its message arrives
        for _bot in range(100):  # bots start their catch-up later, one after another
            rows = feed.bars_after(connection, cursor, fresh_since=message_arrived)
            assert [int(row[0]) for row in rows] == [int(bars.ts[40])]
        assert feed.reads == before_message + 1
        connection.rollback()
        store_bars(any_engine, ADA_BTC, bars, 41, 42)
        # a bot whose message arrived before that read is served what the read saw; the next
        # message (after the new commit) makes the feed read again
        assert feed.bars_after(connection, int(bars.ts[40]), fresh_since=message_arrived) == []
        rows = feed.bars_after(connection, int(bars.ts[40]), fresh_since=time.monotonic())
        assert [int(row[0]) for row in rows] == [int(bars.ts[41])]
        assert feed.reads == before_message + 2
