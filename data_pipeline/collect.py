"""Live collection: exchange trades -> closed candles -> database -> ``market:*`` channels.

:class:`TradeCollector` follows ``ccxt.pro`` ``watch_trades`` for several symbols of one
exchange (Binance: the ``aggTrade`` stream, whose ids are the ones REST ``aggTrades?fromId=``
pages on). Per batch of trades it

1. drops trades it has seen (by trade id; ids only grow on an exchange's market);
2. keeps trades that follow a hole in the ids waiting briefly (``reorder_wait``: the stream may
   deliver the missing ones out of order), then fetches the missing ids over REST
   (``fetch_trades(..., params={'fromId': ...})``): after a dropped WebSocket connection no trade
   is lost or counted twice;
3. feeds the trades, in id order, to a :class:`~data_pipeline.aggregate.CandleAggregator` for
   every requested timeframe (vectorized, no Python loop per trade);
4. stores the candles that closed (:func:`~data_pipeline.store.store_bars`), the trades'
   progress (``collector_state``) and optionally the raw trades (``raw_trades``), in **one**
   transaction, and only after the commit publishes the candles on
   ``market:{exchange}:{symbol}:{timeframe}``.

A candle also closes by the wall clock: every ``tick`` seconds, the open candle whose interval
ended more than ``grace_ms`` ago is closed. Intervals without trades become flat zero-volume
candles at the previous close (Binance's rule; ``empty="omit"`` for exchanges that skip them)
when the next trade arrives: its consecutive id proves nothing was missed, whereas a silent
stream proves nothing, so the wall clock alone never invents a candle.

The interval the collector starts in is only partly observed, so its candle is not stored (the
backfill fills that edge from the exchange's own candles). The collector is crash-safe at the
level of trades: ``collector_state`` says which trade ids are in committed candles' progress;
candles are written idempotently. A restarted collector first rebuilds the candles its
predecessor left open (:mod:`data_pipeline.resume`: the open interval's trades fetched again,
coarser candles from the stored finer ones), then fetches the trades it missed: a killed and
restarted collector loses no candle.

:func:`poll_candles` is the fallback where WebSockets are unavailable: it backfills the newest
candles over REST every ``interval`` seconds and publishes the new ones.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import ccxt
import numpy as np
from sqlalchemy import Engine, and_, func, select, update

from candela.core.db import insert_ignoring_duplicates, now_ms
from candela.core.schema import collector_state, ohlcv, raw_trades
from candela.core.timeframes import timeframe_to_ms
from data_pipeline.aggregate import CandleAggregator
from data_pipeline.backfill import backfill, check_markets, exchange_now
from data_pipeline.publish import Publisher, publish_bars
from data_pipeline.resume import resume_open_candles
from data_pipeline.retry import RetryPolicy, call_with_retry
from data_pipeline.store import store_bars

log = logging.getLogger(__name__)

EMPTY_RULE = {"binance": "flat"}
"""What each exchange does with an interval without trades (default ``"flat"``)."""

CONSECUTIVE_TRADE_IDS = {"binance"}
"""Exchanges whose trade ids on a market are consecutive integers, so a hole in the ids is a
missed trade. Elsewhere trades are only deduplicated by id."""

WATCH_PARAMS = {"binance": {"name": "aggTrade"}}
"""Per-exchange ``watch_trades`` params so stream ids match the REST ``fromId`` ids."""


class TradeCollector:
    """Collect trades of ``symbols`` on one exchange into closed candles of ``timeframes``.

    Parameters
    ----------
    exchange : ccxt.pro.Exchange
        From :func:`data_pipeline.exchanges.create_exchange` with ``streaming=True``.
    engine : sqlalchemy.Engine
        A migrated database.
    symbols, timeframes : list of str
        Markets to follow, e.g. ``["BTC/USDT"]`` and ``["1m", "5m", "1h"]``.
    publisher : Publisher, optional
        Receives every stored closed candle, after the commit.
    store_trades : bool
        Also write every trade to ``raw_trades``.
    clock : callable, optional
        Wall clock in ms UTC (default: the system clock); closes candles when trades are quiet.
    grace_ms : int
        How long after an interval's end the wall clock waits for late trades before closing it.
    tick : float
        Seconds between wall-clock checks.
    policy : RetryPolicy, optional
        Retries for the REST requests that fill missed trades.
    reorder_wait : float
        Seconds trades after a hole in the ids wait for the stream to deliver the missing ones
        before they are fetched over REST.
    max_catchup_trades : int
        Trades fetched over REST for one gap at most; a longer outage restarts the candles after
        it (run ``candela data backfill`` for the hole) instead of stalling the live feed.
    """

    def __init__(
        self,
        exchange,
        engine: Engine,
        symbols: list[str],
        timeframes: list[str],
        *,
        publisher: Publisher | None = None,
        store_trades: bool = False,
        clock: Callable[[], int] = now_ms,
        grace_ms: int = 2_000,
        tick: float = 1.0,
        policy: RetryPolicy | None = None,
        max_catchup_trades: int = 100_000,
        reorder_wait: float = 1.0,
    ):
        self.exchange, self.engine = exchange, engine
        self.symbols, self.timeframes = list(symbols), list(timeframes)
        self.timeframes_ms = {tf: timeframe_to_ms(tf) for tf in self.timeframes}
        self.publisher, self.store_trades = publisher, store_trades
        self.clock, self.grace_ms, self.tick = clock, grace_ms, tick
        self.policy = policy or RetryPolicy()
        self.max_catchup_trades = max_catchup_trades
        self.empty = EMPTY_RULE.get(exchange.id, "flat")
        self.aggregators = {
            s: CandleAggregator(self.timeframes_ms, empty=self.empty) for s in self.symbols
        }
        self.last_trade_ids: dict[str, int | None] = dict.fromkeys(self.symbols)
        self.latest_trade_ts: dict[str, int | None] = dict.fromkeys(self.symbols)
        self.stats = {
            "trades": 0,
            "duplicates": 0,
            "refetched": 0,
            "candles": 0,
            "published": 0,
            "reconnects": 0,
            "resumed": 0,
        }
        self.reorder_wait = reorder_wait
        self.pending = {s: _trade_arrays([]) for s in self.symbols}
        self.pending_since: dict[str, float | None] = dict.fromkeys(self.symbols)
        self._locks = {s: asyncio.Lock() for s in self.symbols}

    # ------------------------------------------------------------------ running

    async def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Collect until ``should_stop()`` returns true (checked at least every ``tick``)."""
        # candles are built here from trades: any timeframe will do, the symbols must exist
        await check_markets(self.exchange, self.symbols, [], self.policy)
        self._load_state()
        if self.exchange.id in CONSECUTIVE_TRADE_IDS:
            for symbol in self.symbols:  # finish the candles a previous run left open
                self.stats["resumed"] += await resume_open_candles(self, symbol)
        await asyncio.gather(
            *(self._follow(symbol, should_stop) for symbol in self.symbols),
            self._clock_loop(should_stop),
        )

    def _load_state(self) -> None:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(collector_state).where(collector_state.c.exchange == self.exchange.id)
            ).all()
        for row in rows:
            if row.symbol in self.last_trade_ids and row.last_trade_id is not None:
                self.last_trade_ids[row.symbol] = int(row.last_trade_id)
                if row.last_trade_ts is not None:
                    self.latest_trade_ts[row.symbol] = int(row.last_trade_ts)

    async def _follow(self, symbol: str, should_stop: Callable[[], bool]) -> None:
        watch: asyncio.Future | None = None
        failures = 0
        try:
            while not should_stop():
                if watch is None:
                    params = dict(WATCH_PARAMS.get(self.exchange.id, {}))  # ccxt writes into it
                    watch = asyncio.ensure_future(self.exchange.watch_trades(symbol, params=params))
                done, _ = await asyncio.wait({watch}, timeout=self.tick)
                if not done:
                    continue
                try:
                    trades = watch.result()
                except ccxt.NetworkError as error:
                    failures += 1
                    self.stats["reconnects"] += 1
                    wait = self.policy.delay(min(failures, 10), error)
                    log.warning(
                        "%s %s: stream failed (%s); reconnecting in %.2f s, missed trades "
                        "will be fetched over REST",
                        self.exchange.id,
                        symbol,
                        error,
                        wait,
                    )
                    await asyncio.sleep(wait)
                    continue
                finally:
                    if watch.done():
                        watch = None
                failures = 0
                await self.ingest(symbol, trades)
        finally:
            if watch is not None:
                watch.cancel()

    async def _clock_loop(self, should_stop: Callable[[], bool]) -> None:
        while not should_stop():
            await asyncio.sleep(self.tick)
            await self.close_by_clock()

    async def close_by_clock(self) -> None:
        """Close, store and publish every candle whose interval ended ``grace_ms`` ago."""
        cutoff = self.clock() - self.grace_ms
        for symbol in self.symbols:
            async with self._locks[symbol]:
                if self.pending[symbol]["id"].size:
                    await self._advance(symbol, self.pending[symbol])
                closed = self.aggregators[symbol].close_until(cutoff, fill_empty=False)
                self._commit(symbol, closed, None)

    # ------------------------------------------------------------------ one batch

    async def ingest(self, symbol: str, trades: list[dict]) -> None:
        """Process one batch of unified ccxt trades of ``symbol`` (steps 1-4 of the module doc)."""
        async with self._locks[symbol]:
            batch = _merge(self.pending[symbol], _trade_arrays(trades))
            await self._advance(symbol, self._drop_seen(symbol, batch))

    async def _advance(self, symbol: str, batch: dict, force: bool = False) -> None:
        """Process the trades of ``batch`` that continue the last processed id.

        Trades after a hole in the ids wait in :attr:`pending` for up to ``reorder_wait``
        seconds (the stream may deliver the missing ones out of order); then the hole is
        fetched over REST. Exchanges without consecutive ids skip the hole check.
        """
        consecutive = self.exchange.id in CONSECUTIVE_TRADE_IDS
        while batch["id"].size:
            last = self.last_trade_ids[symbol]
            ids = batch["id"]
            if last is None or not consecutive:
                prefix = ids.size
            else:
                expected = last + 1 + np.arange(ids.size, dtype=np.int64)
                mismatch = np.flatnonzero(ids != expected)
                prefix = int(mismatch[0]) if mismatch.size else ids.size
            if prefix:
                self._process(symbol, {key: value[:prefix] for key, value in batch.items()})
                batch = {key: value[prefix:] for key, value in batch.items()}
                self.pending_since[symbol] = None
                continue
            waited = time.monotonic() - (self.pending_since[symbol] or time.monotonic())
            if not force and waited < self.reorder_wait:
                if self.pending_since[symbol] is None:
                    self.pending_since[symbol] = time.monotonic()
                break
            first = int(ids[0])
            missed = await self.fetch_missed(symbol, last + 1, first - 1)
            if missed is None or missed["id"].size == 0:
                # too many to fetch, or the exchange has none of them: continue after the hole
                if missed is None:
                    self.aggregators[symbol] = CandleAggregator(
                        self.timeframes_ms, empty=self.empty
                    )
                self.last_trade_ids[symbol] = first - 1
                continue
            batch = _merge(missed, batch)
            batch = {key: value[batch["id"] > last] for key, value in batch.items()}
        self.pending[symbol] = batch
        if not batch["id"].size:
            self.pending_since[symbol] = None

    def _process(self, symbol: str, batch: dict) -> None:
        closed = self.aggregators[symbol].add(
            batch["ts"], batch["price"], batch["amount"], buyer_maker=batch["buyer_maker"]
        )
        self.stats["trades"] += int(batch["id"].size)
        self.latest_trade_ts[symbol] = max(
            self.latest_trade_ts[symbol] or 0, int(batch["ts"].max())
        )
        self._commit(symbol, closed, batch)

    def _drop_seen(self, symbol: str, batch: dict) -> dict:
        order = np.argsort(batch["id"], kind="stable")
        ids = batch["id"][order]
        keep = np.ones(ids.size, dtype=bool)
        keep[1:] = ids[1:] != ids[:-1]
        last = self.last_trade_ids[symbol]
        if last is not None:
            keep &= ids > last
        self.stats["duplicates"] += int(ids.size - np.count_nonzero(keep))
        return {key: value[order][keep] for key, value in batch.items()}

    async def fetch_missed(self, symbol: str, first_id: int, last_id: int) -> dict | None:
        """Trades with ``first_id <= id <= last_id`` over REST (``fromId`` pages), as id-sorted
        arrays; ``None`` if more than ``max_catchup_trades`` are asked for."""
        wanted = last_id - first_id + 1
        if wanted > self.max_catchup_trades:
            log.warning(
                "%s %s: %d trades missed (ids %d..%d), more than max_catchup_trades; candles "
                "restart after the hole: run 'candela data backfill' for it",
                self.exchange.id,
                symbol,
                wanted,
                first_id,
                last_id,
            )
            return None
        pages, next_id = [], first_id
        while next_id <= last_id:
            start = next_id
            page = await call_with_retry(
                lambda: self.exchange.fetch_trades(symbol, limit=1000, params={"fromId": start}),
                policy=self.policy,
                exchange=self.exchange,
                describe=f"{self.exchange.id} {symbol} trades from id {start}",
            )
            arrays = _trade_arrays(page)
            if arrays["id"].size == 0:
                break
            pages.append(arrays)
            next_id = int(arrays["id"].max()) + 1  # ccxt sorts same-ms ids as strings: use max
        if not pages:
            log.warning(
                "%s %s: exchange returned none of the missed trade ids %d..%d",
                self.exchange.id,
                symbol,
                first_id,
                last_id,
            )
            return _trade_arrays([])
        merged = {key: np.concatenate([p[key] for p in pages]) for key in pages[0]}
        inside = (merged["id"] >= first_id) & (merged["id"] <= last_id)
        merged = {key: value[inside] for key, value in merged.items()}
        self.stats["refetched"] += int(merged["id"].size)
        log.info(
            "%s %s: fetched %d missed trade(s) (ids %d..%d) over REST",
            self.exchange.id,
            symbol,
            merged["id"].size,
            first_id,
            last_id,
        )
        return merged

    def _commit(self, symbol: str, closed: dict, batch: dict | None) -> None:
        has_candles = any(candles.size for candles in closed.values())
        if not has_candles and batch is None:
            return
        exchange = self.exchange.id
        with self.engine.begin() as connection:
            for timeframe, candles in closed.items():
                if candles.size:
                    store_bars(
                        connection,
                        exchange,
                        symbol,
                        timeframe,
                        candles.ts,
                        candles.open,
                        candles.high,
                        candles.low,
                        candles.close,
                        candles.volume,
                    )
            if batch is not None:
                if self.store_trades:
                    insert_ignoring_duplicates(
                        connection,
                        raw_trades,
                        [
                            {
                                "exchange": exchange,
                                "symbol": symbol,
                                "trade_id": int(i),
                                "ts": int(t),
                                "price": float(p),
                                "amount": float(a),
                                "side": "sell" if m else "buy",
                            }
                            for i, t, p, a, m in zip(
                                batch["id"],
                                batch["ts"],
                                batch["price"],
                                batch["amount"],
                                batch["buyer_maker"],
                            )
                        ],
                    )
                position = int(np.argmax(batch["id"]))
                _save_state(
                    connection,
                    exchange,
                    symbol,
                    int(batch["id"][position]),
                    int(batch["ts"][position]),
                )
        if batch is not None:
            self.last_trade_ids[symbol] = int(batch["id"].max())
        for timeframe, candles in closed.items():
            if candles.size:
                self.stats["candles"] += candles.size
                if self.publisher is not None:
                    self.stats["published"] += publish_bars(
                        self.publisher,
                        exchange,
                        symbol,
                        timeframe,
                        candles.ts,
                        candles.open,
                        candles.high,
                        candles.low,
                        candles.close,
                        candles.volume,
                    )


def _trade_arrays(trades: list[dict]) -> dict:
    """Unified ccxt trades as id-sorted arrays (trades without an integer id are dropped)."""
    rows = [
        (
            int(t["id"]),
            int(t["timestamp"]),
            float(t["price"]),
            float(t["amount"]),
            t.get("side") == "sell",
        )
        for t in trades
        if t.get("id") is not None
        and str(t["id"]).isdigit()
        and t.get("timestamp") is not None
        and t.get("price") is not None
        and t.get("amount") is not None
    ]
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    return {
        "id": ids[order],
        "ts": np.array([r[1] for r in rows], dtype=np.int64)[order],
        "price": np.array([r[2] for r in rows], dtype=np.float64)[order],
        "amount": np.array([r[3] for r in rows], dtype=np.float64)[order],
        "buyer_maker": np.array([r[4] for r in rows], dtype=bool)[order],
    }


def _merge(first: dict, second: dict) -> dict:
    merged = {key: np.concatenate((first[key], second[key])) for key in first}
    order = np.argsort(merged["id"], kind="stable")
    return {key: value[order] for key, value in merged.items()}


def _save_state(connection, exchange: str, symbol: str, trade_id: int, trade_ts: int) -> None:
    key = and_(collector_state.c.exchange == exchange, collector_state.c.symbol == symbol)
    values = {"last_trade_id": trade_id, "last_trade_ts": trade_ts, "updated_at": now_ms()}
    if connection.execute(update(collector_state).where(key).values(**values)).rowcount == 0:
        connection.execute(
            collector_state.insert().values(exchange=exchange, symbol=symbol, **values)
        )


async def poll_candles(
    exchange,
    engine: Engine,
    symbols: list[str],
    timeframes: list[str],
    *,
    publisher: Publisher | None = None,
    interval: float = 10.0,
    lookback_bars: int = 10,
    should_stop: Callable[[], bool] = lambda: False,
    policy: RetryPolicy | None = None,
    max_rounds: int | None = None,
) -> int:
    """REST fallback: every ``interval`` s, backfill the newest candles and publish the new ones.

    Each round backfills from the newest stored bar (or ``lookback_bars`` back when the market
    is empty) to the exchange's clock, so only closed bars are stored; bars newer than the
    previous newest are published after their commit. Stops when ``should_stop()`` is true or
    after ``max_rounds`` rounds; returns the number of rounds run.
    """
    policy = policy or RetryPolicy()
    rounds = 0
    while not should_stop():
        now = await exchange_now(exchange, policy)
        for timeframe in timeframes:
            tf = timeframe_to_ms(timeframe)
            for symbol in symbols:
                with engine.connect() as connection:
                    newest = connection.execute(
                        select(func.max(ohlcv.c.ts)).where(
                            ohlcv.c.exchange == exchange.id,
                            ohlcv.c.symbol == symbol,
                            ohlcv.c.timeframe == timeframe,
                        )
                    ).scalar()
                since = int(newest) if newest is not None else now - lookback_bars * tf
                await backfill(
                    exchange,
                    engine,
                    [symbol],
                    [timeframe],
                    since,
                    publisher=publisher,
                    policy=policy,
                    progress=False,
                )
        rounds += 1
        if should_stop() or (max_rounds is not None and rounds >= max_rounds):
            break
        await asyncio.sleep(interval)
    return rounds
