"""Reading stored bars: what is stored, gaps, loading as arrays or frames, resampling.

Everything here reads the ``ohlcv`` table written by the data pipeline and the importer. Bar
timestamps are **close** times (docs/architecture.md §2): the bar labelled ``T`` holds the trades with
``T - timeframe <= t < T``. Arrays carry int64 milliseconds UTC; frames carry a tz-aware UTC
``DatetimeIndex`` named ``ts`` with lower-case columns ``open, high, low, close, volume``.

Loading is built for speed: PostgreSQL streams a binary ``COPY (SELECT ...) TO STDOUT`` straight
into numpy (fixed-width rows, no per-row Python); SQLite fills numpy from the raw cursor.

>>> engine = candela.core.db.connect()
>>> inventory(engine)                                              # doctest: +SKIP
>>> bars = load_bars(engine, "binance", "BTC/USDT", "1m", start="2018-06-18")  # doctest: +SKIP
>>> hourly = resample(bars, "1h")                                   # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import io

import numpy as np
import pandas as pd
from sqlalchemy import Engine, text

from candela.core.db import connect
from candela.core.markets import validate_exchange, validate_symbol
from candela.core.timeframes import SUPPORTED_TIMEFRAMES, ms_to_timeframe, timeframe_to_ms
from research.kernels.resample import resample_nb
from research.types import Bars

WEEK_OFFSET_MS = 4 * 86_400_000
"""Weekly buckets close on Monday 00:00 UTC (1970-01-05 was a Monday; the epoch a Thursday)."""

_COLUMNS = ("open", "high", "low", "close", "volume")
_TIMEFRAME_MS_SQL = (
    "CASE timeframe "
    + " ".join(f"WHEN '{name}' THEN {timeframe_to_ms(name)}" for name in SUPPORTED_TIMEFRAMES)
    + " END"
)


def _engine(engine: Engine | str | None) -> Engine:
    if isinstance(engine, Engine):
        return engine
    if engine is None or isinstance(engine, str):
        return connect(engine)
    raise TypeError(f"expected a SQLAlchemy Engine or a database URL, got {type(engine).__name__}")


def _to_utc(ms) -> pd.Series | pd.Timestamp:
    return pd.to_datetime(ms, unit="ms", utc=True)


def to_ms(value) -> int:
    """Convert a time bound to int64 milliseconds UTC.

    Accepts integer milliseconds, ISO strings (``"2018-06-18"``, ``"2018-06-18T05:00Z"``),
    ``datetime``/``date``, ``pandas.Timestamp`` and ``numpy.datetime64``. Tz-naive values are UTC.

    Raises
    ------
    TypeError, ValueError
        For anything else, with an example of what is accepted.
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"time bound {value!r} is a bool: pass ms since the epoch or an ISO date")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (str, _dt.datetime, _dt.date, np.datetime64, pd.Timestamp)):
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"cannot read time bound {value!r} ({exc}): use e.g. '2018-06-18T05:00Z' or ms"
            ) from None
        if stamp is pd.NaT:
            raise ValueError(f"time bound {value!r} is not a time: use e.g. '2018-06-18' or ms")
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return int(stamp.value // 1_000_000)
    raise TypeError(
        f"time bound must be ms since the epoch, an ISO string or a datetime, got {type(value).__name__}"
    )


# --------------------------------------------------------------------------- what is stored


def inventory(engine: Engine | str | None = None) -> pd.DataFrame:
    """List every stored market: one row per (exchange, symbol, timeframe).

    Returns
    -------
    DataFrame
        Columns ``exchange, symbol, timeframe, first, last`` (UTC close times of the first and
        last bar), ``bars`` (stored bars), ``gaps`` (number of gap segments: runs of missing bars
        between two stored bars) and ``missing_bars`` (bars missing inside those gaps), sorted by
        exchange, symbol and timeframe length.
    """
    engine = _engine(engine)
    spans_sql = (
        "SELECT exchange, symbol, timeframe, MIN(ts), MAX(ts), COUNT(*) FROM ohlcv "
        "GROUP BY exchange, symbol, timeframe"
    )
    gaps_sql = (
        "SELECT exchange, symbol, timeframe, COUNT(*), SUM((ts - previous) / step - 1) FROM ("
        f"SELECT exchange, symbol, timeframe, ts, {_TIMEFRAME_MS_SQL} AS step, "
        "LAG(ts) OVER (PARTITION BY exchange, symbol, timeframe ORDER BY ts) AS previous "
        "FROM ohlcv) AS steps WHERE ts - previous > step GROUP BY exchange, symbol, timeframe"
    )
    with engine.connect() as connection:
        spans = connection.execute(text(spans_sql)).all()
        gap_rows = {
            tuple(row[:3]): (int(row[3]), int(row[4])) for row in connection.execute(text(gaps_sql))
        }
    columns = ["exchange", "symbol", "timeframe", "first", "last", "bars", "gaps", "missing_bars"]
    records = []
    for exchange, symbol, timeframe, first, last, count in spans:
        gap_count, missing = gap_rows.get((exchange, symbol, timeframe), (0, 0))
        records.append(
            (exchange, symbol, timeframe, int(first), int(last), int(count), gap_count, missing)
        )
    length = {name: timeframe_to_ms(name) for name in SUPPORTED_TIMEFRAMES}
    records.sort(key=lambda row: (row[0], row[1], length.get(row[2], 0), row[2]))
    frame = pd.DataFrame.from_records(records, columns=columns)
    frame["first"] = _to_utc(frame["first"].astype("int64"))
    frame["last"] = _to_utc(frame["last"].astype("int64"))
    return frame.astype({"bars": "int64", "gaps": "int64", "missing_bars": "int64"})


def _stored_markets(engine: Engine) -> dict[tuple[str, str], list[str]]:
    """Stored timeframes per (exchange, symbol), shortest first."""
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT DISTINCT exchange, symbol, timeframe FROM ohlcv")
        ).all()
    markets: dict[tuple[str, str], list[str]] = {}
    for exchange, symbol, timeframe in sorted(rows):
        markets.setdefault((exchange, symbol), []).append(timeframe)
    order = {name: index for index, name in enumerate(SUPPORTED_TIMEFRAMES)}
    for timeframes in markets.values():
        timeframes.sort(key=lambda name: (order.get(name, len(order)), name))
    return markets


def _no_bars_error(engine: Engine, exchange, symbol, timeframe, start_ms, end_ms) -> ValueError:
    market = f"{exchange} {symbol} {timeframe}"
    stored = _stored_markets(engine)
    if timeframe in stored.get((exchange, symbol), ()):
        with engine.connect() as connection:
            first, last = connection.execute(
                text(
                    "SELECT MIN(ts), MAX(ts) FROM ohlcv WHERE exchange = :e AND symbol = :s AND timeframe = :t"
                ),
                {"e": exchange, "s": symbol, "t": timeframe},
            ).one()
        return ValueError(
            f"no bars for {market} from {_describe(start_ms, 'the start')} to "
            f"{_describe(end_ms, 'the end')}; stored close times run from {_to_utc(first)} to "
            f"{_to_utc(last)}: widen start/end"
        )
    if (exchange, symbol) in stored:
        return ValueError(
            f"no bars for {market}; {exchange} {symbol} is stored at "
            f"{', '.join(stored[(exchange, symbol)])}: load one of those and resample, or import {timeframe}"
        )
    listing = "; ".join(f"{e} {s} ({', '.join(t)})" for (e, s), t in list(stored.items())[:15])
    if len(stored) > 15:
        listing += f"; and {len(stored) - 15} more (see research.data.inventory)"
    return ValueError(
        f"no bars for {market}; stored markets: {listing or 'none'}. Import or backfill it first "
        "(candela data import FILE, or the pipeline's backfill)"
    )


def _describe(ms: int | None, unbounded: str) -> str:
    return unbounded if ms is None else str(_to_utc(ms))


def _check_market(exchange: str, symbol: str, timeframe: str) -> int:
    validate_exchange(exchange)
    validate_symbol(symbol)
    return timeframe_to_ms(timeframe)


def gaps(engine: Engine | str | None, exchange: str, symbol: str, timeframe: str) -> pd.DataFrame:
    """List the gap segments of one stored market: runs of missing bars between stored bars.

    Returns
    -------
    DataFrame
        One row per gap, in time order: ``first_missing`` and ``last_missing`` (UTC close times of
        the first and last missing bar), ``missing_bars``, and the same bounds as int64 ms in
        ``first_missing_ts`` and ``last_missing_ts``. Empty when the series has no gap.

    Raises
    ------
    ValueError
        If the market is not stored (the message lists the stored ones).
    """
    engine = _engine(engine)
    step = _check_market(exchange, symbol, timeframe)
    ts = _load_ts(engine, exchange, symbol, timeframe)
    if len(ts) == 0:
        raise _no_bars_error(engine, exchange, symbol, timeframe, None, None)
    steps = np.diff(ts)
    where = np.flatnonzero(steps > step)
    first = ts[where] + step
    last = ts[where + 1] - step
    return pd.DataFrame(
        {
            "first_missing": _to_utc(first),
            "last_missing": _to_utc(last),
            "missing_bars": (steps[where] // step - 1).astype(np.int64),
            "first_missing_ts": first.astype(np.int64),
            "last_missing_ts": last.astype(np.int64),
        }
    )


def _load_ts(engine: Engine, exchange, symbol, timeframe) -> np.ndarray:
    with engine.connect() as connection:
        rows = (
            connection.execute(
                text(
                    "SELECT ts FROM ohlcv WHERE exchange = :e AND symbol = :s AND timeframe = :t ORDER BY ts"
                ),
                {"e": exchange, "s": symbol, "t": timeframe},
            )
            .scalars()
            .all()
        )
    return np.array(rows, dtype=np.int64)


# --------------------------------------------------------------------------- loading

_PG_ROW = np.dtype(
    [("fields", ">i2"), ("ts_len", ">i4"), ("ts", ">i8")]
    + [item for name in _COLUMNS for item in ((f"{name}_len", ">i4"), (name, ">f8"))]
)
_PG_HEADER = b"PGCOPY\n\xff\r\n\x00"


def _range_sql(placeholder: str, start_ms, end_ms) -> tuple[str, list]:
    clauses, params = [], []
    if start_ms is not None:
        clauses.append(f" AND ts >= {placeholder}")
        params.append(start_ms)
    if end_ms is not None:
        clauses.append(f" AND ts <= {placeholder}")
        params.append(end_ms)
    return "".join(clauses), params


def _load_postgresql(connection, market, start_ms, end_ms) -> tuple[np.ndarray, ...]:
    bounds, params = _range_sql("%s", start_ms, end_ms)
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        # No ORDER BY: the planner may then pick a plain scan, and numpy sorts faster than the
        # server's ordered index scan (rows usually arrive in order already).
        query = cursor.mogrify(
            "SELECT ts, open, high, low, close, volume FROM ohlcv WHERE exchange = %s AND symbol = %s "
            f"AND timeframe = %s{bounds}",
            (*market, *params),
        ).decode()
        buffer = io.BytesIO()
        cursor.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT binary)", buffer)
    finally:
        cursor.close()
    raw = buffer.getbuffer()
    if bytes(raw[:11]) != _PG_HEADER:
        raise RuntimeError("unexpected COPY output from PostgreSQL (not PGCOPY binary)")
    offset = 19 + int.from_bytes(raw[15:19], "big")  # header, flags, extension area
    count = (len(raw) - offset - 2) // _PG_ROW.itemsize
    rows = np.frombuffer(raw, dtype=_PG_ROW, count=count, offset=offset)
    if count and ((rows["fields"] != 6).any() or (rows["ts_len"] != 8).any()):
        raise RuntimeError("unexpected NULL or field count in the ohlcv COPY stream")
    ts = rows["ts"].astype(np.int64)
    if count > 1 and (ts[1:] <= ts[:-1]).any():
        order = np.argsort(ts, kind="stable")
        rows, ts = rows[order], ts[order]
    return (ts,) + tuple(rows[name].astype(np.float64) for name in _COLUMNS)


def _load_sqlite(connection, market, start_ms, end_ms) -> tuple[np.ndarray, ...]:
    bounds, params = _range_sql("?", start_ms, end_ms)
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        cursor.execute(
            "SELECT ts, open, high, low, close, volume FROM ohlcv WHERE exchange = ? AND symbol = ? "
            f"AND timeframe = ?{bounds} ORDER BY ts",
            (*market, *params),
        )
        row_type = np.dtype([("ts", np.int64)] + [(name, np.float64) for name in _COLUMNS])
        rows = np.fromiter(cursor, dtype=row_type)
    finally:
        cursor.close()
    return (np.ascontiguousarray(rows["ts"]),) + tuple(
        np.ascontiguousarray(rows[name]) for name in _COLUMNS
    )


def load_bars(
    engine: Engine | str | None,
    exchange: str,
    symbol: str,
    timeframe: str,
    start=None,
    end=None,
    history: int = 0,
) -> Bars:
    """Load the stored bars of one market as numpy arrays.

    Parameters
    ----------
    engine : Engine or str or None
        A SQLAlchemy engine, a database URL, or ``None`` for the default database.
    exchange, symbol, timeframe : str
        The market, e.g. ``"binance", "BTC/USDT", "1m"``.
    start, end : int, str, datetime, Timestamp, optional
        **Inclusive** bounds on the bars' close times: ms since the epoch, ISO strings or
        datetimes (tz-naive means UTC). ``None`` means unbounded.
    history : int
        Also load up to this many stored bars before ``start`` (all there are when fewer):
        the history a strategy needs before its first traded bar, e.g.
        ``spec.history_window(params)`` for ``research.backtest(..., start=start)``. Needs
        ``start``.

    Returns
    -------
    research.types.Bars
        ``ts`` (int64 close times, strictly increasing) and float64 OHLCV, ``timeframe_ms`` set.

    Raises
    ------
    ValueError
        If the market is malformed, ``start > end``, or no bar is stored in the range (the
        message lists the stored markets or the stored span).
    """
    engine = _engine(engine)
    step = _check_market(exchange, symbol, timeframe)
    start_ms = None if start is None else to_ms(start)
    end_ms = None if end is None else to_ms(end)
    if start_ms is not None and end_ms is not None and start_ms > end_ms:
        raise ValueError(f"start {_to_utc(start_ms)} is after end {_to_utc(end_ms)}: swap them")
    if (
        isinstance(history, (bool, np.bool_))
        or not isinstance(history, (int, np.integer))
        or history < 0
    ):
        raise ValueError(f"history must be a number of bars (0 or more), got {history!r}")
    if history and start_ms is None:
        raise ValueError(
            "history= loads bars before start=: give start too, or leave history "
            "out to load from the first stored bar"
        )
    market = (exchange, symbol, timeframe)
    requested_start = start_ms
    if history:
        start_ms = _history_start(engine, market, start_ms, int(history))
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            columns = _load_postgresql(connection, market, start_ms, end_ms)
        else:
            columns = _load_sqlite(connection, market, start_ms, end_ms)
    if len(columns[0]) == 0:
        raise _no_bars_error(engine, exchange, symbol, timeframe, requested_start, end_ms)
    return Bars(*columns, timeframe_ms=step)


def _history_start(
    engine: Engine, market: tuple[str, str, str], start_ms: int, history: int
) -> int | None:
    """Close time of the ``history``-th stored bar before ``start_ms`` (``None``: fewer are
    stored, load them all)."""
    with engine.connect() as connection:
        value = connection.execute(
            text(
                "SELECT ts FROM ohlcv WHERE exchange = :e AND symbol = :s AND timeframe = :t "
                "AND ts < :start ORDER BY ts DESC LIMIT 1 OFFSET :skip"
            ),
            {
                "e": market[0],
                "s": market[1],
                "t": market[2],
                "start": start_ms,
                "skip": history - 1,
            },
        ).scalar()
    return None if value is None else int(value)


def bars_to_frame(bars: Bars) -> pd.DataFrame:
    """Return ``bars`` as a DataFrame: tz-aware UTC ``DatetimeIndex`` ``ts`` (close times),
    columns ``open, high, low, close, volume``; ``frame.attrs["timeframe_ms"]`` keeps the length."""
    index = pd.DatetimeIndex(_to_utc(bars.ts), name="ts")
    frame = pd.DataFrame({name: getattr(bars, name) for name in _COLUMNS}, index=index)
    frame.attrs["timeframe_ms"] = int(bars.timeframe_ms)
    return frame


def frame_to_bars(frame: pd.DataFrame, timeframe_ms: int | None = None) -> Bars:
    """Return the bars of a frame shaped like :func:`load_frame`'s (index = close times).

    ``timeframe_ms`` defaults to ``frame.attrs["timeframe_ms"]``, else 0 (unknown).
    """
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise TypeError("the frame needs a DatetimeIndex of bar close times (see load_frame)")
    missing = [name for name in _COLUMNS if name not in frame.columns]
    if missing:
        raise ValueError(
            f"the frame lacks the columns {', '.join(missing)}: use lower-case OHLCV names"
        )
    index = (
        frame.index.tz_localize("UTC") if frame.index.tz is None else frame.index.tz_convert("UTC")
    )
    ts = np.asarray(index.as_unit("ms").asi8, dtype=np.int64)
    step = timeframe_ms if timeframe_ms is not None else frame.attrs.get("timeframe_ms", 0)
    return Bars.from_arrays(
        ts, *(frame[name].to_numpy(np.float64) for name in _COLUMNS), timeframe_ms=int(step)
    )


def load_frame(
    engine: Engine | str | None, exchange: str, symbol: str, timeframe: str, start=None, end=None
) -> pd.DataFrame:
    """Load bars like :func:`load_bars`, as a DataFrame indexed by tz-aware UTC close times.

    Returns
    -------
    DataFrame
        Index ``ts`` (``datetime64[ns, UTC]``, close times); columns ``open, high, low, close,
        volume``; ``attrs`` holds ``exchange``, ``symbol``, ``timeframe`` and ``timeframe_ms``.
    """
    frame = bars_to_frame(load_bars(engine, exchange, symbol, timeframe, start, end))
    frame.attrs.update(exchange=exchange, symbol=symbol, timeframe=timeframe)
    return frame


# --------------------------------------------------------------------------- resampling


def resample(bars_or_frame: Bars | pd.DataFrame, timeframe: str, *, partial: bool = False):
    """Aggregate bars into a coarser timeframe, right-aligned (labels are close times).

    Parameters
    ----------
    bars_or_frame : Bars or DataFrame
        Source bars (a frame as from :func:`load_frame`). The source timeframe is
        ``Bars.timeframe_ms`` / ``frame.attrs["timeframe_ms"]``, else the smallest step between
        bars.
    timeframe : str
        Target timeframe; its length must be a multiple of the source's.
    partial : bool
        Keep the first and last bucket even when the data does not cover them entirely
        (default: drop them, see Notes).

    Returns
    -------
    Bars or DataFrame
        Same type as the input. The bar labelled ``L`` aggregates the source bars closing in
        ``(L - timeframe, L]``: open of the first, max high, min low, close of the last, sum of
        volumes, with the **zero-volume rule**: bars with zero volume are ignored for open, high,
        low and close; a bucket whose bars all have zero volume is a flat zero-volume bar at the
        close of its last bar (which is the previous close on Binance).

    Notes
    -----
    * Buckets sit on the UTC grid: ``1h`` on the hour, ``4h`` at 00/04/08..., ``1d`` at
      midnight, ``1w`` closes Monday 00:00 (Binance's weeks).
    * Edges: the **leading** bucket is dropped when the data starts after the bucket opens and
      the **trailing** bucket when the data ends before it closes (an unfinished bar labelled in
      the data's future). ``partial=True`` keeps both, aggregated from the bars present.
    * Interior buckets with missing source bars are built from the bars present and never
      filled: Bittrex leaves out intervals without trades, so there this is exact; across a
      data gap the coarse bar covers only the stored part. Buckets with no source bar at all do
      not appear (gaps stay gaps).
    """
    is_frame = isinstance(bars_or_frame, pd.DataFrame)
    if is_frame:
        bars = frame_to_bars(bars_or_frame)
    elif isinstance(bars_or_frame, Bars):
        bars = bars_or_frame
    else:
        raise TypeError(
            f"resample takes research.types.Bars or a DataFrame from load_frame, got {type(bars_or_frame).__name__}"
        )
    target = timeframe_to_ms(timeframe)
    source = int(bars.timeframe_ms)
    if len(bars.ts) > 1:
        steps = np.diff(bars.ts)
        if (steps <= 0).any():
            raise ValueError("bar timestamps must strictly increase: sort and de-duplicate first")
        if source <= 0:
            source = int(steps.min())
    if source <= 0:
        raise ValueError("cannot tell the bars' timeframe: pass Bars with timeframe_ms set")
    if target < source or target % source:
        raise ValueError(
            f"cannot resample {_name(source)} bars to {timeframe}: the target must be a whole "
            f"multiple of the source timeframe ({', '.join(_multiples(source))})"
        )
    offset = WEEK_OFFSET_MS if timeframe == "1w" else 0
    grid = WEEK_OFFSET_MS if source == timeframe_to_ms("1w") else 0
    if offset % source or (len(bars.ts) and ((bars.ts - grid) % source != 0).any()):
        raise ValueError(
            f"the bars' close times are not on the {_name(source)} grid; check timeframe_ms"
        )
    n = len(bars.ts)
    out_ts = np.empty(n, dtype=np.int64)
    out = [np.empty(n) for _ in _COLUMNS]
    count = np.empty(n, dtype=np.int64)
    k = resample_nb(
        bars.ts,
        bars.open,
        bars.high,
        bars.low,
        bars.close,
        bars.volume,
        np.int64(target),
        np.int64(offset),
        out_ts,
        *out,
        count,
    )
    first, last = 0, k
    if not partial and k:
        if bars.ts[0] - source > out_ts[0] - target:  # data starts after the first bucket opens
            first = 1
        if bars.ts[-1] < out_ts[k - 1]:  # data ends before the last bucket closes
            last = k - 1
    result = Bars(
        out_ts[first:last].copy(),
        *(column[first:last].copy() for column in out),
        timeframe_ms=target,
    )
    if not is_frame:
        return result
    frame = bars_to_frame(result)
    frame.attrs.update(
        {
            key: value
            for key, value in bars_or_frame.attrs.items()
            if key not in ("timeframe", "timeframe_ms")
        }
    )
    frame.attrs.update(timeframe=timeframe, timeframe_ms=target)
    return frame


def _name(milliseconds: int) -> str:
    try:
        return ms_to_timeframe(milliseconds)
    except ValueError:
        return f"{milliseconds} ms"


def _multiples(source: int) -> list[str]:
    return [
        name
        for name in SUPPORTED_TIMEFRAMES
        if timeframe_to_ms(name) >= source and timeframe_to_ms(name) % source == 0
    ]
