"""Read closed bars of one market from the ``ohlcv`` table (the runner's only data source).

The runner never imports ``research.data`` (an upper layer); these two queries are all it needs.
Stored gaps are simply absent rows: the next stored bar is the next bar, as in the backtest.
"""

from __future__ import annotations

import bisect
import math
import threading
import time

import numpy as np
from sqlalchemy import Connection, select

from candela.core import schema

_COLUMNS = (
    schema.ohlcv.c.ts,
    schema.ohlcv.c.open,
    schema.ohlcv.c.high,
    schema.ohlcv.c.low,
    schema.ohlcv.c.close,
    schema.ohlcv.c.volume,
)


def _market(query, market: tuple[str, str, str]):
    exchange, symbol, timeframe = market
    return query.where(
        schema.ohlcv.c.exchange == exchange,
        schema.ohlcv.c.symbol == symbol,
        schema.ohlcv.c.timeframe == timeframe,
    )


def bars_after(
    connection: Connection,
    market: tuple[str, str, str],
    after_ts: int,
    *,
    until_ts: int | None = None,
    limit: int = 5000,
) -> list[tuple]:
    """Stored bars with ``after_ts < ts <= until_ts``, oldest first, at most ``limit``.

    Returns
    -------
    list of tuple
        ``(ts, open, high, low, close, volume)`` rows.
    """
    query = _market(select(*_COLUMNS), market).where(schema.ohlcv.c.ts > after_ts)
    if until_ts is not None:
        query = query.where(schema.ohlcv.c.ts <= until_ts)
    rows = connection.execute(query.order_by(schema.ohlcv.c.ts).limit(limit)).all()
    return [tuple(row) for row in rows]


def bars_through(
    connection: Connection, market: tuple[str, str, str], through_ts: int, count: int
) -> list[tuple]:
    """The last ``count`` stored bars with ``ts <= through_ts``, oldest first."""
    query = (
        _market(select(*_COLUMNS), market)
        .where(schema.ohlcv.c.ts <= through_ts)
        .order_by(schema.ohlcv.c.ts.desc())
        .limit(count)
    )
    rows = connection.execute(query).all()
    return [tuple(row) for row in reversed(rows)]


def first_bar_ts(
    connection: Connection, market: tuple[str, str, str], at_or_after: int | None = None
) -> int | None:
    """Close ts of the first stored bar (at or after ``at_or_after``), or ``None``."""
    query = _market(select(schema.ohlcv.c.ts), market)
    if at_or_after is not None:
        query = query.where(schema.ohlcv.c.ts >= at_or_after)
    value = connection.execute(query.order_by(schema.ohlcv.c.ts).limit(1)).scalar()
    return None if value is None else int(value)


class BarWindow:
    """The last ``size`` bars as contiguous numpy arrays, appended one bar at a time.

    Backed by arrays of twice the size so that appending is O(1) amortized and the window is a
    view (no copy) for the strategy.
    """

    def __init__(self, size: int) -> None:
        self.size = max(int(size), 1)
        capacity = 2 * self.size
        self._ts = np.empty(capacity, dtype=np.int64)
        self._values = np.empty((5, capacity), dtype=np.float64)
        self._start = 0
        self._end = 0

    def __len__(self) -> int:
        return self._end - self._start

    def append(self, bar: tuple) -> None:
        """Append ``(ts, open, high, low, close, volume)``, dropping the oldest beyond ``size``."""
        if self._end == len(self._ts):
            keep = self.size - 1
            self._ts[:keep] = self._ts[self._end - keep : self._end]
            self._values[:, :keep] = self._values[:, self._end - keep : self._end]
            self._start, self._end = 0, keep
        self._ts[self._end] = bar[0]
        self._values[:, self._end] = bar[1:6]
        self._end += 1
        if self._end - self._start > self.size:
            self._start += 1

    def extend(self, ts: np.ndarray, values: np.ndarray) -> None:
        """Append bars given as arrays (``ts``, and ``values`` of shape ``(5, n)``: open, high,
        low, close, volume), as :meth:`append` of each would."""
        n = len(ts)
        if n == 0:
            return
        keep = min(len(self), max(self.size - n, 0))
        take = min(n, self.size)
        if self._end + take > len(self._ts):
            old = slice(self._end - keep, self._end)
            self._ts[:keep] = self._ts[old]
            self._values[:, :keep] = self._values[:, old]
            self._start, self._end = 0, keep
        new = slice(self._end, self._end + take)
        self._ts[new] = ts[n - take :]
        self._values[:, new] = values[:, n - take :]
        self._end += take
        self._start = max(self._start, self._end - self.size)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """``(ts, open, high, low, close, volume)`` views of the window."""
        window = slice(self._start, self._end)
        values = self._values[:, window]
        return (self._ts[window], values[0], values[1], values[2], values[3], values[4])


class MarketFeed:
    """The newest stored bars of one market, read from the database once for all its bots.

    When a ``market:`` message wakes 100 bots of one market, the first bot to ask reads the new
    bars; the others are served from memory. The cache covers every stored bar with
    ``floor < ts <= top`` (the pipeline stores bars in order); a bot whose cursor lies before
    ``floor`` reads the database itself. Thread-safe.

    Parameters
    ----------
    market : (exchange, symbol, timeframe)
    keep : int
        Bars kept in memory (the oldest are dropped and ``floor`` moves up).
    """

    def __init__(self, market: tuple[str, str, str], keep: int = 5000) -> None:
        self.market = market
        self.keep = keep
        self._lock = threading.Lock()
        self._ts: list[int] = []
        self._rows: list[tuple] = []
        self._floor: int | None = None
        self._top: int | None = None
        self._read_at = -math.inf
        self._exhausted = False
        self.reads = 0

    def bars_after(
        self,
        connection: Connection,
        after_ts: int,
        *,
        fresh_since: float,
        until_ts: int | None = None,
        limit: int = 2000,
    ) -> list[tuple] | None:
        """Bars with ``after_ts < ts <= until_ts`` (at most ``limit``), or ``None`` if not covered.

        The database is read again unless another caller's read **started** after
        ``fresh_since`` (a ``time.monotonic()`` value: when the caller learnt of new bars) and
        returned fewer than ``limit`` rows.
        """
        with self._lock:
            if self._floor is None:
                self._floor = self._top = after_ts
            if after_ts < self._floor:
                return None
            if self._read_at < fresh_since or not self._exhausted:
                started = time.monotonic()  # a read that started after a commit includes it
                rows = bars_after(connection, self.market, self._top, limit=limit)
                self.reads += 1
                self._read_at = started
                self._exhausted = len(rows) < limit
                if rows:
                    self._rows.extend(rows)
                    self._ts.extend(int(row[0]) for row in rows)
                    self._top = self._ts[-1]
                if len(self._rows) > max(self.keep, limit):
                    drop = len(self._rows) - max(self.keep, limit)
                    self._floor = self._ts[drop - 1]
                    del self._rows[:drop], self._ts[:drop]
                    if after_ts < self._floor:
                        return None
            start = bisect.bisect_right(self._ts, after_ts)
            rows = self._rows[start : start + limit]
        if until_ts is not None:
            rows = [row for row in rows if row[0] <= until_ts]
        return rows
