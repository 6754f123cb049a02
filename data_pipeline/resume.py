"""A restarted collector finishes the candles its predecessor left open: nothing is lost.

A collector commits closed candles together with the id of the last trade it processed
(``collector_state``); the trades of the candles still open are in no table. Without help, a
restarted collector would see only the trades after that id, so the interval it restarts in
would be partly observed and skipped (a missing bar after every restart).
:func:`resume_open_candles` rebuilds, for each timeframe, the open interval from what is known:

* the finest timeframe's open interval (the one holding the last processed trade, ``T``) from
  its trades, fetched again over REST: from the first trade at or after the interval's start
  through the last processed id (at most one interval of trades);
* a coarser timeframe's open interval from the finest candles already stored inside it (rolled
  up with :func:`~data_pipeline.aggregate.resample_candles`, Binance's rule), then those same
  trades. If a finer candle is missing there (or the timeframe is no multiple of the finest),
  that one interval is skipped as before, and said so;
* an interval whose candle is stored already (closed by the wall clock) is simply continued
  after.

Each aggregator also learns the stored candle just before its open interval, so that intervals
without trades become flat candles from the right close. The trades after the last processed
id are then fetched by the collector's usual gap fill (``fromId``). Only for exchanges whose
trade ids are consecutive (:data:`~data_pipeline.collect.CONSECUTIVE_TRADE_IDS`): elsewhere a
trade id says nothing about what was missed.
"""

from __future__ import annotations

import logging

import numpy as np
from sqlalchemy import select

from candela.core.schema import ohlcv
from data_pipeline.aggregate import resample_candles
from data_pipeline.retry import call_with_retry

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000


def _stored(
    engine, exchange: str, symbol: str, timeframe: str, first_ts: int, last_ts: int
) -> np.ndarray:
    """Stored candles with ``first_ts <= ts <= last_ts`` as rows ``(ts, o, h, l, c, v)``."""
    columns = (ohlcv.c.ts, ohlcv.c.open, ohlcv.c.high, ohlcv.c.low, ohlcv.c.close, ohlcv.c.volume)
    with engine.connect() as connection:
        rows = connection.execute(
            select(*columns)
            .where(
                ohlcv.c.exchange == exchange,
                ohlcv.c.symbol == symbol,
                ohlcv.c.timeframe == timeframe,
                ohlcv.c.ts >= first_ts,
                ohlcv.c.ts <= last_ts,
            )
            .order_by(ohlcv.c.ts)
        ).all()
    return np.array(rows, dtype=np.float64).reshape(-1, 6)


def _at(rows: np.ndarray, ts: int) -> tuple[int, float] | None:
    """``(ts, close)`` of the row closing at ``ts``, if stored."""
    match = rows[rows[:, 0] == ts]
    return (ts, float(match[0, 4])) if len(match) else None


async def resume_open_candles(collector, symbol: str) -> int:
    """Rebuild the open candles of ``symbol`` in ``collector.aggregators[symbol]``; return the
    number of trades fetched again (see the module docstring)."""
    last_id = collector.last_trade_ids[symbol]
    last_ts = collector.latest_trade_ts[symbol]
    if last_id is None or last_ts is None:
        return 0
    exchange_id = collector.exchange.id
    frames = sorted(collector.timeframes_ms.items(), key=lambda item: item[1])
    finest, step = frames[0]
    aggregator = collector.aggregators[symbol]
    widest = frames[-1][1]
    begin = last_ts // widest * widest  # the widest open interval's start: all rows needed follow
    stored = {
        name: _stored(collector.engine, exchange_id, symbol, name, begin, last_ts // tf * tf + tf)
        for name, tf in frames
    }
    fine = stored[finest]
    # trades from `since` on are in no stored candle (unless the finest was closed by the clock)
    since = last_ts // step * step
    if _at(fine, since + step) is not None:
        since += step
    for name, tf in frames:
        start = last_ts // tf * tf
        closed = _at(stored[name], start + tf)
        if closed is not None:  # closed by the wall clock: continue after it
            aggregator.resume(name, open_from_ms=start + tf, previous=closed)
            continue
        previous = _at(stored[name], start)
        if name == finest or since == start:
            aggregator.resume(name, open_from_ms=start, previous=previous)
            continue
        inside = fine[(fine[:, 0] > start) & (fine[:, 0] <= since)]
        if tf % step or len(inside) != (since - start) // step:
            log.warning(
                "%s %s %s: the candle open when the collector stopped lacks stored %s "
                "candles; it is skipped (run 'candela data backfill' for it)",
                exchange_id,
                symbol,
                name,
                finest,
            )
            aggregator.resume(name, open_from_ms=start + tf)
            continue
        partial = resample_candles(*inside.T, step, tf, complete_only=False)
        aggregator.resume(name, open_from_ms=start, previous=previous, partial=partial)
    if since > last_ts:
        return 0
    first_id = await _first_trade_id(collector, symbol, since, last_ts)
    if first_id is None or first_id > last_id:
        return 0
    trades = await collector.fetch_missed(symbol, first_id, last_id)
    if trades is None or trades["id"].size == 0:
        log.warning(
            "%s %s: could not fetch the trades of the open candles again; they are skipped",
            exchange_id,
            symbol,
        )
        for name, tf in frames:
            aggregator.resume(name, open_from_ms=last_ts // tf * tf + tf)
        return 0
    closed = aggregator.add(
        trades["ts"], trades["price"], trades["amount"], buyer_maker=trades["buyer_maker"]
    )
    assert not any(candles.size for candles in closed.values()), "resumed trades closed a candle"
    log.info(
        "%s %s: resumed the open candles with %d trade(s) fetched again",
        exchange_id,
        symbol,
        trades["id"].size,
    )
    return int(trades["id"].size)


async def _first_trade_id(collector, symbol: str, since: int, until: int) -> int | None:
    """Id of the first trade at or after ``since`` (and at or before ``until``)."""
    start = since
    while start <= until:

        def first(window=start):
            end = min(window + HOUR_MS - 1, until)
            return collector.exchange.fetch_trades(
                symbol, since=window, limit=1, params={"until": end}
            )

        page = await call_with_retry(
            first,
            policy=collector.policy,
            exchange=collector.exchange,
            describe=f"{collector.exchange.id} {symbol} first trade from {start}",
        )
        ids = [int(trade["id"]) for trade in page if str(trade.get("id", "")).isdigit()]
        if ids:
            return min(ids)
        start += HOUR_MS
    return None
