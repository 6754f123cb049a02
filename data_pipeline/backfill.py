"""Backfill historical candles from an exchange into ``ohlcv``, through ccxt's async API.

For every market (symbol x timeframe), concurrently over one exchange instance whose rate limiter
spaces all requests:

1. **Window.** Bars whose open time is ``>= since`` and whose close time is ``<= until`` and
   ``<= the exchange's clock`` (``fetch_time``): the bar that is still open is never stored.
2. **What is missing.** Grid close times in the window minus the stored ones, minus ranges the
   gap ledger already settled (:data:`data_pipeline.gaps.SETTLED`). A second run over the same
   window therefore fetches nothing and writes nothing; a later run resumes after the last
   stored bar.
3. **Fetch** each missing range by forward pagination on ``since``/``limit``. ccxt's open times
   are converted to close times here, once (``ts = open + timeframe``). Every page is checked:
   rows must be complete, inside the requested window, aligned and strictly increasing, and pass
   :func:`data_pipeline.validation.validate_candles`; rejected rows are counted and logged with
   their reason, never stored. A candle is counted once however often it arrives (its page,
   then the gap pass that asks for it again): the count is of distinct rows as received. Each page's accepted bars are stored in their own transaction
   (:func:`data_pipeline.store.store_bars`).
4. **Gaps.** Holes left after step 3 (with a stored bar after them) are gaps: each is asked for
   again and written to the ledger as ``refetched``, ``partially_refetched``,
   ``confirmed_empty`` or, if rows arrived but were rejected, ``open``. A hole at the newest end
   that closed less than :data:`SETTLE_MS` ago is not a gap yet (the exchange may not have
   published those bars); the next run asks again.

Requests failing with a retryable error are retried with backoff (:mod:`data_pipeline.retry`);
when retries run out, that market stops with an error naming exchange, symbol and time window,
the other markets finish, and :class:`BackfillError` reports every failed market.

Publishing: after each page commits, bars newer than the market's newest bar **before the run**
are published on ``market:{exchange}:{symbol}:{timeframe}``. History loaded into an empty market
and gap fills are not published: they are not news to a live consumer, which reads history from
the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import Engine, func, select
from tqdm.auto import tqdm

from candela.core.db import now_ms
from candela.core.markets import validate_symbol
from candela.core.schema import ohlcv
from candela.core.timeframes import timeframe_to_ms
from data_pipeline import gaps as ledger
from data_pipeline.exchanges import page_limit
from data_pipeline.publish import Publisher, publish_bars
from data_pipeline.retry import FetchError, RetryPolicy, call_with_retry
from data_pipeline.store import store_bars
from data_pipeline.validation import validate_candles

log = logging.getLogger(__name__)

UNTIL_PARAMETER = {"binance": True}
"""Exchanges whose ccxt ``until`` bounds a forward page from above (Binance ``endTime``). Elsewhere
(OKX: ``until`` replaces the window's newest end, and pages come newest first) it is not sent."""

SETTLE_MS = 5 * 60_000
"""A hole at the newest end whose last bar closed less than this before the exchange's clock is
not a gap yet: the exchange may still be publishing those bars."""

WINDOWED_PAGES = {"okx"}
"""Exchanges whose candle page is the window ``[since, since + limit * timeframe)`` rather than
"the first ``limit`` rows from ``since``": an empty page there does not mean "no more data"."""


class BackfillError(RuntimeError):
    """One or more markets failed; :attr:`report` holds what every market did.

    :attr:`unreachable` is true when every failed market failed on the network (see
    :attr:`data_pipeline.retry.FetchError.unreachable`).
    """

    def __init__(self, message: str, report: BackfillReport):
        super().__init__(message)
        self.report = report
        self.unreachable = all(m.unreachable for m in report.markets if m.error)


@dataclass
class MarketReport:
    """What the backfill did for one market."""

    exchange: str
    symbol: str
    timeframe: str
    window: tuple[int, int] | None = None
    requests: int = 0
    rows_received: int = 0
    inserted: int = 0
    unchanged: int = 0
    conflicting: int = 0
    still_open: int = 0
    rejected: Counter = field(default_factory=Counter)
    """Distinct rejected candles per reason (a candle received twice is counted once)."""
    gaps: list[tuple[int, int, str]] = field(default_factory=list)
    published: int = 0
    error: str | None = None
    unreachable: bool = False


@dataclass
class BackfillReport:
    """What the backfill did, per market."""

    markets: list[MarketReport]

    @property
    def inserted(self) -> int:
        return sum(m.inserted for m in self.markets)

    @property
    def requests(self) -> int:
        return sum(m.requests for m in self.markets)

    @property
    def rejected(self) -> int:
        return sum(sum(m.rejected.values()) for m in self.markets)


def iso(ms: int) -> str:
    """``ms`` as a compact ISO-8601 UTC string for messages."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%MZ")


async def exchange_now(exchange, policy: RetryPolicy) -> int:
    """The exchange's clock (``fetch_time``) in ms, or the local clock if it has none."""
    if not exchange.has.get("fetchTime"):
        return now_ms()
    value = await call_with_retry(
        exchange.fetch_time, policy=policy, exchange=exchange, describe=f"{exchange.id} server time"
    )
    return int(value) if value else now_ms()


async def check_markets(
    exchange, symbols: list[str], timeframes: list[str], policy: RetryPolicy
) -> None:
    """Load markets and raise ``ValueError`` naming any symbol or timeframe the exchange lacks."""
    for symbol in symbols:
        validate_symbol(symbol)
    for timeframe in timeframes:
        timeframe_to_ms(timeframe)
    await call_with_retry(
        exchange.load_markets, policy=policy, exchange=exchange, describe=f"{exchange.id} markets"
    )
    for symbol in symbols:
        if symbol not in exchange.markets:
            near = [s for s in exchange.symbols if s.split("/")[0] == symbol.split("/")[0]][:5]
            hint = f"; it lists e.g. {', '.join(near)}" if near else ""
            raise ValueError(f"{exchange.id} has no spot market {symbol!r}{hint}")
    for timeframe in timeframes:
        if exchange.timeframes and timeframe not in exchange.timeframes:
            raise ValueError(
                f"{exchange.id} has no {timeframe!r} candles: use one of {', '.join(exchange.timeframes)}"
            )


async def backfill(
    exchange,
    engine: Engine,
    symbols: list[str],
    timeframes: list[str],
    since_ms: int,
    until_ms: int | None = None,
    *,
    publisher: Publisher | None = None,
    policy: RetryPolicy | None = None,
    progress: bool = True,
    limit: int | None = None,
) -> BackfillReport:
    """Backfill every ``symbol`` x ``timeframe`` from ``since_ms`` to ``until_ms`` (or now).

    Parameters
    ----------
    exchange : ccxt.async_support.Exchange
        See :func:`data_pipeline.exchanges.create_exchange`; not closed here.
    engine : sqlalchemy.Engine
        A migrated database (:func:`candela.core.db.connect`).
    symbols, timeframes : list of str
        Unified symbols (``"BTC/USDT"``) and timeframes (``"1m"``).
    since_ms : int
        Earliest bar **open** time wanted (ms UTC).
    until_ms : int, optional
        Latest bar **close** time wanted (ms UTC); default: the exchange's clock.
    publisher : Publisher, optional
        Where newly stored bars newer than the previous newest bar are announced.
    policy : RetryPolicy, optional
        Retries per request.
    progress : bool
        Show one tqdm progress bar per market.
    limit : int, optional
        Candles per page (default: :func:`data_pipeline.exchanges.page_limit`).

    Returns
    -------
    BackfillReport

    Raises
    ------
    ValueError
        Unknown symbol or timeframe, or ``until_ms < since_ms``.
    BackfillError
        When a market's requests kept failing; the message names exchange, symbol and window.
    """
    policy = policy or RetryPolicy()
    if until_ms is not None and until_ms < since_ms:
        raise ValueError(f"--until ({iso(until_ms)}) is before --since ({iso(since_ms)})")
    await check_markets(exchange, symbols, timeframes, policy)
    now = await exchange_now(exchange, policy)
    jobs = []
    for position, (symbol, timeframe) in enumerate((s, t) for s in symbols for t in timeframes):
        job = _MarketBackfill(
            exchange,
            engine,
            symbol,
            timeframe,
            since_ms,
            until_ms,
            now,
            publisher,
            policy,
            limit or page_limit(exchange.id),
            progress,
            position,
        )
        jobs.append(job)
    await asyncio.gather(*(job.run() for job in jobs))
    report = BackfillReport([job.report for job in jobs])
    failed = [m.error for m in report.markets if m.error]
    if failed:
        raise BackfillError("; ".join(failed), report)
    return report


class _MarketBackfill:
    def __init__(
        self,
        exchange,
        engine,
        symbol,
        timeframe,
        since_ms,
        until_ms,
        now,
        publisher,
        policy,
        limit,
        progress,
        position,
    ):
        self.exchange, self.engine, self.symbol, self.timeframe = (
            exchange,
            engine,
            symbol,
            timeframe,
        )
        self.tf = timeframe_to_ms(timeframe)
        self.since_ms, self.until_ms, self.now = since_ms, until_ms, now
        self.publisher, self.policy, self.limit = publisher, policy, limit
        self.report = MarketReport(exchange.id, symbol, timeframe)
        self.progress, self.position = progress, position
        self.bar = None
        self.previous_newest: int | None = None
        self.rejected_seen: set[bytes] = set()  # rows as received (6 float64), rejected so far
        self.rejected_rows = 0  # every rejected row, repeats included

    @property
    def label(self) -> str:
        return f"{self.exchange.id} {self.symbol} {self.timeframe}"

    def _window(self) -> tuple[int, int]:
        first_open = -(-self.since_ms // self.tf) * self.tf
        newest = self.now if self.until_ms is None else min(self.until_ms, self.now)
        return first_open + self.tf, (newest // self.tf) * self.tf

    def _missing(self, first: int, last: int) -> tuple[list[tuple[int, int]], np.ndarray]:
        market = (self.exchange.id, self.symbol, self.timeframe)
        with self.engine.connect() as connection:
            stored = ledger.stored_close_times(connection, *market, first, last)
            settled = ledger.settled_ranges(connection, *market)
        holes = ledger.missing_ranges(stored, first, last, self.tf)
        return ledger.subtract_ranges(holes, settled, self.tf), stored

    async def run(self) -> None:
        first, last = self._window()
        self.report.window = (first, last)
        if last < first:
            log.info("%s: nothing closed in the window yet", self.label)
            return
        with self.engine.connect() as connection:
            newest = connection.execute(
                select(func.max(ohlcv.c.ts)).where(
                    ohlcv.c.exchange == self.exchange.id,
                    ohlcv.c.symbol == self.symbol,
                    ohlcv.c.timeframe == self.timeframe,
                )
            ).scalar()
        self.previous_newest = None if newest is None else int(newest)
        missing, _ = self._missing(first, last)
        if self.progress:
            total = sum(ledger.count_bars(a, b, self.tf) for a, b in missing)
            self.bar = tqdm(
                total=total, desc=self.label, unit="bar", position=self.position, leave=True
            )
        try:
            for range_first, range_last in missing:
                await self._fetch_range(range_first, range_last)
            await self._settle_gaps(first, last)
        except FetchError as error:
            self.report.error, self.report.unreachable = str(error), error.unreachable
            log.error("%s", error)
        finally:
            if self.bar is not None:
                if self.report.error is None and self.bar.total and self.bar.n < self.bar.total:
                    self.bar.set_postfix_str("rest: no data at the exchange (see gaps)")
                    self.bar.update(self.bar.total - self.bar.n)
                self.bar.close()

    async def _settle_gaps(self, first: int, last: int) -> None:
        market = (self.exchange.id, self.symbol, self.timeframe)
        with self.engine.begin() as connection:  # open gaps filled by this run's pages
            for gap_first, gap_last in ledger.open_gaps(connection, *market):
                present = ledger.stored_close_times(connection, *market, gap_first, gap_last)
                if len(present) == ledger.count_bars(gap_first, gap_last, self.tf):
                    ledger.record_gap(
                        connection,
                        *market,
                        gap_first,
                        gap_last,
                        self.tf,
                        "refetched",
                        "every missing bar arrived on a later run",
                    )
        missing, stored = self._missing(first, last)
        newest_stored = int(stored[-1]) if len(stored) else None
        for range_first, range_last in missing:
            trailing = newest_stored is None or range_first > newest_stored
            if trailing and range_last > self.now - SETTLE_MS:
                log.info(
                    "%s: no bars from %s on yet (too recent to call a gap; asked again next run)",
                    self.label,
                    iso(range_first),
                )
                continue
            rejected_before = self.rejected_rows
            inserted = await self._fetch_range(range_first, range_last)
            rejected = self.rejected_rows - rejected_before
            wanted = ledger.count_bars(range_first, range_last, self.tf)
            if rejected:
                status = "open"
                detail = (
                    f"{rejected} row(s) received but rejected by validation; asked again next run"
                )
            elif inserted == wanted:
                status, detail = "refetched", f"all {wanted} bar(s) arrived when asked again"
            elif inserted:
                status = "partially_refetched"
                detail = (
                    f"{inserted} of {wanted} bar(s) arrived; the exchange has no data for the rest"
                )
            else:
                status, detail = (
                    "confirmed_empty",
                    "asked again; the exchange returned no bars there",
                )
            with self.engine.begin() as connection:
                ledger.record_gap(
                    connection,
                    self.exchange.id,
                    self.symbol,
                    self.timeframe,
                    range_first,
                    range_last,
                    self.tf,
                    status,
                    detail,
                )
            self.report.gaps.append((range_first, range_last, status))
            log.info(
                "%s: gap %s .. %s (%d bars): %s",
                self.label,
                iso(range_first),
                iso(range_last),
                wanted,
                status,
            )

    async def _fetch_range(self, first_close: int, last_close: int) -> int:
        """Fetch bars with close times in ``[first_close, last_close]``; return how many were inserted."""
        tf = self.tf
        cursor = first_close - tf  # open time of the first wanted bar
        last_open = last_close - tf
        inserted = 0
        params_until = UNTIL_PARAMETER.get(self.exchange.id, False)
        while cursor <= last_open:
            since = cursor
            describe = f"{self.label} window {iso(since)} .. {iso(last_close)}"
            params = {"until": last_open + tf - 1} if params_until else {}
            rows = await call_with_retry(
                lambda: self.exchange.fetch_ohlcv(
                    self.symbol, self.timeframe, since=since, limit=self.limit, params=dict(params)
                ),
                policy=self.policy,
                describe=describe,
                exchange=self.exchange,
            )
            self.report.requests += 1
            if not rows:
                if self.exchange.id in WINDOWED_PAGES:
                    cursor = since + self.limit * tf
                    continue
                break
            inserted += self._take_page(rows, since, last_open)
            opens = _open_times(rows, tf)
            advanced = opens[(opens >= since) & (opens <= last_open)]
            if self.exchange.id in WINDOWED_PAGES:
                cursor = max(
                    since + self.limit * tf, int(advanced.max()) + tf if len(advanced) else 0
                )
            elif len(advanced) == 0 or (params_until and len(rows) < self.limit):
                break  # bounded by `until`, a short page is the last one; elsewhere ask until empty
            else:
                cursor = int(advanced.max()) + tf
        return inserted

    def _take_page(self, rows: list, since: int, last_open: int) -> int:
        tf = self.tf
        self.report.rows_received += len(rows)
        table = _as_table(rows)
        opens = table[:, 0]
        complete = np.isfinite(table).all(axis=1)
        in_window = complete & (opens >= since) & (opens <= last_open)
        if (~complete).any():
            count = int(np.count_nonzero(~complete))
            self._count_rejected(table[~complete], ["incomplete_row"] * count)
            log.warning(
                "%s: rejected %d incomplete row(s) (missing fields) in page from %s",
                self.label,
                count,
                iso(since),
            )
        table = table[in_window]
        close_ts = table[:, 0].astype(np.int64) + tf  # open time -> close time, once, here
        still_open = close_ts > self.now
        if still_open.any():
            self.report.still_open += int(np.count_nonzero(still_open))
            table, close_ts = table[~still_open], close_ts[~still_open]
        o, h, low, c, v = (table[:, i] for i in range(1, 6))
        check = validate_candles(close_ts, o, h, low, c, v, tf, after_ts=since)
        if check.rejected:
            rows_at = [row for row, _ in check.rejected]
            self._count_rejected(table[rows_at], [reason for _, reason in check.rejected])
            for row, reason in check.rejected[:10]:
                log.warning(
                    "%s: rejected bar closing %s (%d): %s",
                    self.label,
                    iso(int(close_ts[row])),
                    int(close_ts[row]),
                    reason,
                )
        keep = check.valid
        if not keep.any():
            return 0
        columns = (close_ts[keep], o[keep], h[keep], low[keep], c[keep], v[keep])
        with self.engine.begin() as connection:
            result = store_bars(connection, self.exchange.id, self.symbol, self.timeframe, *columns)
        self.report.inserted += result.inserted
        self.report.unchanged += result.unchanged
        self.report.conflicting += result.conflicting
        if result.conflicting:
            log.warning(
                "%s: %d bar(s) differ from the stored ones (kept the stored), e.g. ts %s",
                self.label,
                result.conflicting,
                list(result.conflict_examples),
            )
        if self.bar is not None:
            self.bar.update(len(columns[0]))
        if self.publisher is not None and self.previous_newest is not None and result.inserted:
            fresh = columns[0] > self.previous_newest
            if fresh.any():
                self.report.published += publish_bars(
                    self.publisher,
                    self.exchange.id,
                    self.symbol,
                    self.timeframe,
                    *(column[fresh] for column in columns),
                )
        return result.inserted

    def _count_rejected(self, received: np.ndarray, reasons: list[str]) -> None:
        """Count rejected rows: all in :attr:`rejected_rows`, distinct ones in the report."""
        self.rejected_rows += len(reasons)
        for row, reason in zip(received, reasons):
            key = np.ascontiguousarray(row, dtype=np.float64).tobytes()
            if key not in self.rejected_seen:
                self.rejected_seen.add(key)
                self.report.rejected[reason] += 1


def _as_table(rows: list) -> np.ndarray:
    """ccxt OHLCV rows as a float (n, 6) array; missing or non-numeric fields become NaN."""
    try:
        table = np.array(rows, dtype=np.float64)  # None becomes NaN
        if table.ndim == 2 and table.shape[1] >= 6:
            return table[:, :6]
    except (TypeError, ValueError):
        pass
    table = np.full((len(rows), 6), np.nan)
    for i, row in enumerate(rows):
        if isinstance(row, (list, tuple)):
            for j, value in enumerate(row[:6]):
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    table[i, j] = value
    return table


def _open_times(rows: list, tf: int) -> np.ndarray:
    opens = _as_table(rows)[:, 0]
    opens = opens[np.isfinite(opens)].astype(np.int64)
    return opens[opens % tf == 0]
