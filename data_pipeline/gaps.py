"""Finding missing bars in what is stored, and the gap ledger (table ``gaps``).

A *gap* is a run of consecutive bars on a market's timeframe grid that is not stored although
bars on both sides of it (or after it) are. Every gap the backfill finds is written to the ledger
with what became of it; nothing is ever filled in silently:

===========================  ============================================================
status                       meaning
===========================  ============================================================
``open``                     found; not (fully) resolved, e.g. the exchange sent rows that
                             failed validation. Asked for again on the next run.
``refetched``                asked for again and every missing bar is now stored.
``partially_refetched``      asked for again; some bars arrived, the exchange had no data
                             for the rest.
``confirmed_empty``          asked for again; the exchange has no bars there (an outage, a
                             market not yet listed). Not asked for again.
===========================  ============================================================

Ranges are inclusive pairs of bar **close** times ``(first_missing_ts, last_missing_ts)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection, and_, select, update

from candela.core.db import now_ms
from candela.core.schema import gaps as gaps_table
from candela.core.schema import ohlcv

SETTLED = ("confirmed_empty", "partially_refetched")
"""Statuses whose ranges are not asked for again (what is still missing there was confirmed empty)."""


@dataclass(frozen=True)
class Gap:
    """One ledger row."""

    exchange: str
    symbol: str
    timeframe: str
    first_missing_ts: int
    last_missing_ts: int
    missing_bars: int
    status: str
    detail: str | None
    found_at: int
    resolved_at: int | None


def missing_ranges(
    stored_ts: np.ndarray, first_ts: int, last_ts: int, timeframe_ms: int
) -> list[tuple[int, int]]:
    """Ranges of grid close times in ``[first_ts, last_ts]`` that are not in ``stored_ts``.

    Parameters
    ----------
    stored_ts : ndarray of int64
        Stored close times, sorted ascending, unique, on the grid (values outside the window are
        ignored).
    first_ts, last_ts : int
        Inclusive window of close times, both multiples of ``timeframe_ms``.
    """
    if last_ts < first_ts:
        return []
    stored = np.asarray(stored_ts, dtype=np.int64)
    stored = stored[(stored >= first_ts) & (stored <= last_ts)]
    edges = np.concatenate(([first_ts - timeframe_ms], stored, [last_ts + timeframe_ms]))
    steps = np.diff(edges)
    holes = np.flatnonzero(steps > timeframe_ms)
    return [(int(edges[i] + timeframe_ms), int(edges[i + 1] - timeframe_ms)) for i in holes]


def subtract_ranges(
    ranges: list[tuple[int, int]], excluded: list[tuple[int, int]], timeframe_ms: int
) -> list[tuple[int, int]]:
    """``ranges`` minus ``excluded`` (inclusive grid ranges), as inclusive grid ranges."""
    result = list(ranges)
    for low, high in sorted(excluded):
        pieces = []
        for first, last in result:
            if high < first or low > last:
                pieces.append((first, last))
                continue
            if first < low:
                pieces.append((first, low - timeframe_ms))
            if last > high:
                pieces.append((high + timeframe_ms, last))
        result = pieces
    return [(first, last) for first, last in result if last >= first]


def count_bars(first_ts: int, last_ts: int, timeframe_ms: int) -> int:
    """Number of grid bars in the inclusive range."""
    return (last_ts - first_ts) // timeframe_ms + 1


def stored_close_times(
    connection: Connection,
    exchange: str,
    symbol: str,
    timeframe: str,
    first_ts: int | None = None,
    last_ts: int | None = None,
) -> np.ndarray:
    """Stored close times of one market (optionally within an inclusive window), ascending."""
    query = select(ohlcv.c.ts).where(
        ohlcv.c.exchange == exchange, ohlcv.c.symbol == symbol, ohlcv.c.timeframe == timeframe
    )
    if first_ts is not None:
        query = query.where(ohlcv.c.ts >= first_ts)
    if last_ts is not None:
        query = query.where(ohlcv.c.ts <= last_ts)
    rows = connection.execute(query.order_by(ohlcv.c.ts)).scalars().all()
    return np.asarray(rows, dtype=np.int64)


def settled_ranges(
    connection: Connection, exchange: str, symbol: str, timeframe: str
) -> list[tuple[int, int]]:
    """Ledger ranges of one market that are not to be asked for again (see :data:`SETTLED`)."""
    rows = connection.execute(
        select(gaps_table.c.first_missing_ts, gaps_table.c.last_missing_ts).where(
            gaps_table.c.exchange == exchange,
            gaps_table.c.symbol == symbol,
            gaps_table.c.timeframe == timeframe,
            gaps_table.c.status.in_(SETTLED),
        )
    ).all()
    return [(int(first), int(last)) for first, last in rows]


def open_gaps(
    connection: Connection, exchange: str, symbol: str, timeframe: str
) -> list[tuple[int, int]]:
    """Ranges of one market's ledger rows still ``open``."""
    rows = connection.execute(
        select(gaps_table.c.first_missing_ts, gaps_table.c.last_missing_ts).where(
            gaps_table.c.exchange == exchange,
            gaps_table.c.symbol == symbol,
            gaps_table.c.timeframe == timeframe,
            gaps_table.c.status == "open",
        )
    ).all()
    return [(int(first), int(last)) for first, last in rows]


def record_gap(
    connection: Connection,
    exchange: str,
    symbol: str,
    timeframe: str,
    first_ts: int,
    last_ts: int,
    timeframe_ms: int,
    status: str,
    detail: str | None = None,
) -> None:
    """Insert or update the ledger row of the gap starting at ``first_ts``."""
    if status not in ("open", "refetched", "partially_refetched", "confirmed_empty"):
        raise ValueError(f"unknown gap status {status!r}")
    now = now_ms()
    values = {
        "last_missing_ts": int(last_ts),
        "missing_bars": count_bars(first_ts, last_ts, timeframe_ms),
        "status": status,
        "detail": detail,
        "resolved_at": None if status == "open" else now,
    }
    key = and_(
        gaps_table.c.exchange == exchange,
        gaps_table.c.symbol == symbol,
        gaps_table.c.timeframe == timeframe,
        gaps_table.c.first_missing_ts == int(first_ts),
    )
    updated = connection.execute(update(gaps_table).where(key).values(**values))
    if updated.rowcount == 0:
        connection.execute(
            gaps_table.insert().values(
                exchange=exchange,
                symbol=symbol,
                timeframe=timeframe,
                first_missing_ts=int(first_ts),
                found_at=now,
                **values,
            )
        )


def list_gaps(
    connection: Connection,
    exchange: str | None = None,
    symbol: str | None = None,
    timeframe: str | None = None,
    status: str | None = None,
) -> list[Gap]:
    """Ledger rows, filtered by any of the arguments, ordered by market and start."""
    query = select(gaps_table)
    for column, value in (
        ("exchange", exchange),
        ("symbol", symbol),
        ("timeframe", timeframe),
        ("status", status),
    ):
        if value is not None:
            query = query.where(gaps_table.c[column] == value)
    query = query.order_by(
        gaps_table.c.exchange,
        gaps_table.c.symbol,
        gaps_table.c.timeframe,
        gaps_table.c.first_missing_ts,
    )
    return [
        Gap(
            row.exchange,
            row.symbol,
            row.timeframe,
            int(row.first_missing_ts),
            int(row.last_missing_ts),
            int(row.missing_bars),
            row.status,
            row.detail,
            int(row.found_at),
            None if row.resolved_at is None else int(row.resolved_at),
        )
        for row in connection.execute(query)
    ]


def _overlapping_rows(
    connection: Connection, exchange: str, symbol: str, timeframe: str, first_ts: int, last_ts: int
) -> list:
    return connection.execute(
        select(gaps_table).where(
            gaps_table.c.exchange == exchange,
            gaps_table.c.symbol == symbol,
            gaps_table.c.timeframe == timeframe,
            gaps_table.c.first_missing_ts <= last_ts,
            gaps_table.c.last_missing_ts >= first_ts,
        )
    ).all()


def record_stored_holes(
    connection: Connection,
    exchange: str,
    symbol: str,
    timeframe: str,
    first_ts: int,
    last_ts: int,
    timeframe_ms: int,
    source: str,
) -> list[tuple[int, int]]:
    """Bring the ledger in line with the holes now stored between ``first_ts`` and ``last_ts``.

    Used after bars were written from somewhere other than the exchange (an imported file), so
    that ``candela data gaps`` lists every hole ``candela data status`` counts.

    Parameters
    ----------
    connection : sqlalchemy.Connection
        In the transaction that wrote the bars.
    exchange, symbol, timeframe : str
        The market.
    first_ts, last_ts : int
        Inclusive window of close times to examine; both should be stored bars (the window is
        widened to cover any ledger row that overlaps it).
    timeframe_ms : int
        The timeframe's length.
    source : str
        Where the bars came from, for the ledger's ``detail`` (e.g. the file name).

    Returns
    -------
    list of (int, int)
        The holes newly written to the ledger, as ``open`` rows: asked for again by the next
        backfill that covers them. Holes already in the ledger keep their row; an ``open`` row
        whose bars are now all stored becomes ``refetched``; an ``open`` row now partly filled is
        replaced by rows for the holes left in it (keeping its ``found_at`` and detail).
        Rows of other statuses are left alone.
    """
    market = (exchange, symbol, timeframe)
    rows = _overlapping_rows(connection, *market, first_ts, last_ts)
    first_ts = min([first_ts, *(int(row.first_missing_ts) for row in rows)])
    last_ts = max([last_ts, *(int(row.last_missing_ts) for row in rows)])
    holes = missing_ranges(
        stored_close_times(connection, *market, first_ts, last_ts), first_ts, last_ts, timeframe_ms
    )
    starts = np.array([first for first, _ in holes], dtype=np.int64)
    ends = np.array([last for _, last in holes], dtype=np.int64)
    covered: list[tuple[int, int]] = []
    for row in rows:
        span = (int(row.first_missing_ts), int(row.last_missing_ts))
        if row.status != "open":
            covered.append(span)
            continue
        low, high = np.searchsorted(ends, span[0]), np.searchsorted(starts, span[1], side="right")
        inside = [
            (max(int(a), span[0]), min(int(b), span[1]))
            for a, b in zip(starts[low:high], ends[low:high])
        ]
        if not inside:
            record_gap(
                connection,
                *market,
                *span,
                timeframe_ms,
                "refetched",
                f"every missing bar arrived with {source}",
            )
        elif inside != [span]:
            connection.execute(gaps_table.delete().where(gaps_table.c.id == row.id))
            _insert_open(connection, market, inside, timeframe_ms, row.detail, int(row.found_at))
        covered.extend(inside)
    exact, hole_set = set(covered), set(holes)
    new = subtract_ranges(
        [hole for hole in holes if hole not in exact],
        [span for span in covered if span not in hole_set],
        timeframe_ms,
    )
    _insert_open(
        connection,
        market,
        new,
        timeframe_ms,
        f"not stored after importing {source}; a backfill asks the exchange for these bars",
        now_ms(),
    )
    return new


def _insert_open(
    connection: Connection,
    market: tuple[str, str, str],
    ranges: list[tuple[int, int]],
    timeframe_ms: int,
    detail: str | None,
    found_at: int,
) -> None:
    if not ranges:
        return
    exchange, symbol, timeframe = market
    connection.execute(
        gaps_table.insert(),
        [
            {
                "exchange": exchange,
                "symbol": symbol,
                "timeframe": timeframe,
                "first_missing_ts": first,
                "last_missing_ts": last,
                "missing_bars": count_bars(first, last, timeframe_ms),
                "status": "open",
                "detail": detail,
                "found_at": found_at,
                "resolved_at": None,
            }
            for first, last in ranges
        ],
    )
