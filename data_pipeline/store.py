"""Idempotent bulk writes of OHLCV bars into ``candela.core.schema.ohlcv`` (docs/architecture.md §4).

:func:`store_bars` inserts the bars whose key ``(exchange, symbol, timeframe, ts)`` is new,
stamping each with ``ingested_at`` (when it was stored). A bar whose key is already stored is
*unchanged* when all its values are equal to the stored ones, *conflicting* otherwise; conflicts
are counted and reported (with example timestamps), never overwritten silently: by default the
stored row is kept; with ``revise=True`` the new values replace it (a *revision*) and the
version they replace is kept in ``ohlcv_revisions`` with the time it was replaced, so that what
a bot saw at its decision can still be rebuilt (``candela bots reconcile``).

PostgreSQL gets a binary ``COPY`` into a temporary table and one
``INSERT ... SELECT ... ON CONFLICT DO NOTHING``; SQLite compares against the stored rows of the
same span in numpy and inserts the new ones with ``executemany``. Either way the caller owns the
transaction::

    with engine.begin() as connection:
        result = store_bars(connection, "binance", "BTC/USDT", "1m", ts, o, h, l, c, v)
"""

from __future__ import annotations

import io
import itertools
import uuid
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection

from candela.core.db import now_ms
from candela.core.markets import validate_exchange, validate_symbol
from candela.core.timeframes import timeframe_to_ms

CONFLICT_EXAMPLES = 5
"""How many conflicting close times :class:`StoreResult` keeps as examples."""

_VALUE_COLUMNS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class StoreResult:
    """What :func:`store_bars` did with each bar.

    Attributes
    ----------
    inserted : int
        Bars whose key was new and that were written.
    unchanged : int
        Bars whose key was stored already with exactly the same values (nothing to do).
    conflicting : int
        Bars whose key was stored already with different values: kept as stored, or replaced
        when ``revise=True`` (then also counted in ``revised``).
    conflict_examples : tuple of int
        Close times ``ts`` of up to :data:`CONFLICT_EXAMPLES` conflicting bars, ascending.
    revised : int
        Conflicting bars whose stored values were replaced (``revise=True``); their previous
        version is in ``ohlcv_revisions``.
    """

    inserted: int
    unchanged: int
    conflicting: int
    conflict_examples: tuple[int, ...] = ()
    revised: int = 0

    @property
    def total(self) -> int:
        """Number of bars passed to :func:`store_bars`."""
        return self.inserted + self.unchanged + self.conflicting


def _columns(ts, open, high, low, close, volume):  # noqa: A002
    ts_array = np.ascontiguousarray(ts)
    if ts_array.ndim != 1 or (len(ts_array) and ts_array.dtype.kind not in "iu"):
        raise TypeError("ts must be a 1-D array of int64 close times in milliseconds UTC")
    ts_array = ts_array.astype(np.int64, copy=False)
    n = len(ts_array)
    values = []
    for name, column in zip(_VALUE_COLUMNS, (open, high, low, close, volume)):
        array = np.ascontiguousarray(column, dtype=np.float64)
        if array.shape != (n,):
            raise ValueError(
                f"{name} has shape {array.shape} but ts has {n} values: columns must align"
            )
        if not np.isfinite(array).all():
            raise ValueError(
                f"{name} contains NaN or infinite values: validate the bars first "
                "(data_pipeline.validation.validate_candles) and store only the accepted rows"
            )
        values.append(array)
    if n > 1 and len(np.unique(ts_array)) != n:
        raise ValueError(
            "ts contains duplicate close times: validate the bars first "
            "(data_pipeline.validation.validate_candles) and store only the accepted rows"
        )
    return ts_array, values


def store_bars(
    connection: Connection,
    exchange: str,
    symbol: str,
    timeframe: str,
    ts,
    open,  # noqa: A002 - the column's name
    high,
    low,
    close,
    volume,
    *,
    revise: bool = False,
) -> StoreResult:
    """Insert new bars of one market, keep (or revise) stored ones, and report what happened.

    Parameters
    ----------
    connection : sqlalchemy.Connection
        A connection inside a transaction the caller commits or rolls back
        (``with engine.begin() as connection``). Nothing is committed here.
    exchange, symbol, timeframe : str
        The market: a ccxt exchange id, a unified ``BASE/QUOTE`` symbol, a supported timeframe.
    ts : array_like of int
        Bar **close** times, int64 ms UTC, unique (any order). Pass validated bars only.
    open, high, low, close, volume : array_like of float
        Finite bar values aligned with ``ts``.
    revise : bool
        Replace stored bars whose values differ (default: keep them). The replaced version
        goes to ``ohlcv_revisions`` (its values, its ``ingested_at``, and ``revised_at`` = now);
        the new one gets ``ingested_at`` = now.

    Returns
    -------
    StoreResult
        ``inserted + unchanged + conflicting == len(ts)`` when no other writer inserts the same
        keys concurrently.

    Raises
    ------
    ValueError
        If the market is malformed, the columns do not align, hold NaN/inf or duplicate ``ts``.
    TypeError
        If ``ts`` is not an integer array.
    """
    validate_exchange(exchange)
    validate_symbol(symbol)
    timeframe_to_ms(timeframe)
    ts_array, values = _columns(ts, open, high, low, close, volume)
    if len(ts_array) == 0:
        return StoreResult(0, 0, 0)
    market = (exchange, symbol, timeframe)
    if connection.dialect.name == "postgresql":
        return _store_postgresql(connection, market, ts_array, values, revise)
    return _store_sqlite(connection, market, ts_array, values, revise)


# --------------------------------------------------------------------------- PostgreSQL

_PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_PGCOPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
_PGCOPY_ROW = np.dtype(
    [("fields", ">i2"), ("ts_len", ">i4"), ("ts", ">i8")]
    + [item for name in _VALUE_COLUMNS for item in ((f"{name}_len", ">i4"), (name, ">f8"))]
)


def _pgcopy_binary(ts: np.ndarray, values: list[np.ndarray]) -> bytes:
    """Encode rows ``(ts bigint, open..volume double precision)`` in PostgreSQL's binary COPY format."""
    rows = np.empty(len(ts), dtype=_PGCOPY_ROW)
    rows["fields"] = 1 + len(values)
    rows["ts_len"] = 8
    rows["ts"] = ts
    for name, column in zip(_VALUE_COLUMNS, values):
        rows[f"{name}_len"] = 8
        rows[name] = column
    return _PGCOPY_HEADER + rows.tobytes() + _PGCOPY_TRAILER


_VALUES = ", ".join(_VALUE_COLUMNS)
_REVISION_COLUMNS = f"exchange, symbol, timeframe, ts, {_VALUES}, ingested_at, revised_at"


def _store_postgresql(
    connection: Connection, market, ts: np.ndarray, values, revise: bool
) -> StoreResult:
    staging = f"candela_staging_ohlcv_{uuid.uuid4().hex[:12]}"
    now = now_ms()
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        cursor.execute(
            f"CREATE TEMPORARY TABLE {staging} (ts bigint NOT NULL, open double precision NOT NULL, "
            "high double precision NOT NULL, low double precision NOT NULL, "
            "close double precision NOT NULL, volume double precision NOT NULL) ON COMMIT DROP"
        )
        cursor.copy_expert(
            f"COPY {staging} FROM STDIN WITH (FORMAT binary)",
            io.BytesIO(_pgcopy_binary(ts, values)),
        )
        differs = " OR ".join(f"o.{name} IS DISTINCT FROM s.{name}" for name in _VALUE_COLUMNS)
        # The ts range lets the planner use the primary-key index instead of scanning ohlcv.
        cursor.execute(
            f"SELECT s.ts, ({differs}) FROM {staging} s JOIN ohlcv o ON o.exchange = %s "
            "AND o.symbol = %s AND o.timeframe = %s AND o.ts = s.ts "
            "WHERE o.ts BETWEEN %s AND %s ORDER BY s.ts",
            (*market, int(ts.min()), int(ts.max())),
        )
        existing = cursor.fetchall()
        revised = 0
        if revise and any(different for _, different in existing):
            match = (
                f"FROM {staging} s WHERE o.exchange = %s AND o.symbol = %s AND o.timeframe = %s "
                f"AND o.ts = s.ts AND ({differs})"
            )
            cursor.execute(
                f"INSERT INTO ohlcv_revisions ({_REVISION_COLUMNS}) SELECT o.exchange, o.symbol, "
                f"o.timeframe, o.ts, {', '.join(f'o.{name}' for name in _VALUE_COLUMNS)}, "
                f"o.ingested_at, %s FROM ohlcv o JOIN {staging} s ON o.exchange = %s "
                "AND o.symbol = %s AND o.timeframe = %s AND o.ts = s.ts "
                f"WHERE {differs}",
                (now, *market),
            )
            cursor.execute(
                "UPDATE ohlcv o SET "
                + ", ".join(f"{name} = s.{name}" for name in _VALUE_COLUMNS)
                + f", ingested_at = %s {match}",
                (now, *market),
            )
            revised = max(cursor.rowcount, 0)
        cursor.execute(
            f"INSERT INTO ohlcv (exchange, symbol, timeframe, ts, {_VALUES}, ingested_at) "
            f"SELECT %s, %s, %s, ts, {_VALUES}, %s FROM {staging} "
            "ON CONFLICT DO NOTHING",
            (*market, now),
        )
        inserted = max(cursor.rowcount, 0)
        cursor.execute(f"DROP TABLE {staging}")
    finally:
        cursor.close()
    conflicts = [row_ts for row_ts, different in existing if different]
    return StoreResult(
        inserted=inserted,
        unchanged=len(existing) - len(conflicts),
        conflicting=len(conflicts),
        conflict_examples=tuple(int(value) for value in conflicts[:CONFLICT_EXAMPLES]),
        revised=revised,
    )


# --------------------------------------------------------------------------- SQLite


def _store_sqlite(
    connection: Connection, market, ts: np.ndarray, values, revise: bool
) -> StoreResult:
    cursor = connection.connection.dbapi_connection.cursor()
    now = now_ms()
    try:
        cursor.execute(
            "SELECT ts, open, high, low, close, volume FROM ohlcv WHERE exchange = ? AND symbol = ? "
            "AND timeframe = ? AND ts BETWEEN ? AND ? ORDER BY ts",
            (*market, int(ts.min()), int(ts.max())),
        )
        stored = np.array(cursor.fetchall(), dtype=np.float64).reshape(-1, 6)
        stored_ts = stored[:, 0].astype(np.int64)
        position = np.searchsorted(stored_ts, ts)
        in_range = position < len(stored_ts)
        exists = np.zeros(len(ts), dtype=bool)
        exists[in_range] = stored_ts[position[in_range]] == ts[in_range]
        incoming = np.column_stack(values)[exists]
        different = (stored[position[exists], 1:] != incoming).any(axis=1)
        conflicts = np.sort(ts[exists][different])

        revised = 0
        if revise and len(conflicts):
            replaced = np.flatnonzero(exists)[different]
            key = "exchange = ? AND symbol = ? AND timeframe = ? AND ts = ?"
            cursor.executemany(
                f"INSERT INTO ohlcv_revisions ({_REVISION_COLUMNS}) SELECT exchange, symbol, "
                f"timeframe, ts, {_VALUES}, ingested_at, ? FROM ohlcv WHERE {key}",
                [(now, *market, int(ts[i])) for i in replaced],
            )
            cursor.executemany(
                "UPDATE ohlcv SET "
                + ", ".join(f"{name} = ?" for name in _VALUE_COLUMNS)
                + f", ingested_at = ? WHERE {key}",
                [
                    (*(float(column[i]) for column in values), now, *market, int(ts[i]))
                    for i in replaced
                ],
            )
            revised = len(replaced)
        new = ~exists
        rows = zip(
            *(itertools.repeat(part) for part in market),
            ts[new].tolist(),
            *(column[new].tolist() for column in values),
            itertools.repeat(now),
        )
        cursor.executemany(
            f"INSERT INTO ohlcv (exchange, symbol, timeframe, ts, {_VALUES}, ingested_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            rows,
        )
        inserted = max(cursor.rowcount, 0)
    finally:
        cursor.close()
    return StoreResult(
        inserted=inserted,
        unchanged=int(np.count_nonzero(exists)) - len(conflicts),
        conflicting=len(conflicts),
        conflict_examples=tuple(int(value) for value in conflicts[:CONFLICT_EXAMPLES]),
        revised=revised,
    )
