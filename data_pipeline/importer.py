"""Import OHLCV candles from CSV or CSV.gz files into the database (issue 2, point 5).

The file format is that of ``data/sample/ohlcv/`` (and of the freqtrade/OctoBot exports it comes
from): a header
``open_time_ms,open,high,low,close,volume`` (any column order) and one candle per line, the
time being the bar's **open** time in milliseconds UTC. The importer

1. reads and parses the whole file (plain or gzip; a truncated or malformed file is an error
   naming the line, and nothing is written; a file whose last line lacks its line ending counts
   as truncated, since its last value may be cut short),
2. converts open times to close times once, ``ts = open_time_ms + timeframe`` (docs/architecture.md §2),
3. validates every row (:func:`data_pipeline.validation.validate_candles`); rejected rows are
   counted per reason and reported with their line numbers, the rest are stored,
4. stores the accepted rows in **one transaction** (:func:`data_pipeline.store.store_bars`):
   new bars are inserted, bars already stored are left alone and reported as unchanged (same
   values) or conflicting (different values). Any failure rolls the whole import back.
5. records, in the same transaction, every hole the stored series now has around the file's
   span in the gap ledger (:func:`data_pipeline.gaps.record_stored_holes`), as ``open`` gaps
   a later backfill asks the exchange for.

Before any of that, a file whose rows are not spaced by the timeframe is refused
(:func:`check_spacing`): an hourly file given as ``5m`` would otherwise be stored as 5-minute
bars with eleven "missing" bars between each pair.

Importing the same file twice therefore inserts nothing the second time.
"""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import DBAPIError

from candela.core.markets import validate_exchange, validate_symbol
from candela.core.schema import ohlcv
from candela.core.timeframes import SUPPORTED_TIMEFRAMES, timeframe_to_ms
from data_pipeline.gaps import count_bars, record_stored_holes
from data_pipeline.store import StoreResult, store_bars
from data_pipeline.validation import validate_candles

COLUMNS: tuple[str, ...] = ("open_time_ms", "open", "high", "low", "close", "volume")
"""The CSV columns the importer expects (the header may list them in any order)."""

REJECTED_EXAMPLES = 5
"""How many rejected rows :class:`ImportReport` keeps as examples."""

_FILE_NAME = re.compile(
    r"^(?P<exchange>[a-z][a-z0-9_]*)_(?P<base>[A-Za-z0-9]+)-(?P<quote>[A-Za-z0-9]+)"
    r"_(?P<timeframe>\d+[mhdw])(?:_[A-Za-z0-9]+)?\.csv(?:\.gz)?$"
)


class ImportFailedError(RuntimeError):
    """Writing the candles failed; the transaction was rolled back and nothing was stored."""


class SpacingError(ValueError):
    """The file's rows are not spaced by the timeframe it is imported as; nothing was stored.

    Attributes
    ----------
    path : Path
        The file.
    timeframe : str
        The timeframe it was to be imported as.
    spacing_ms : int
        The most common step between consecutive distinct row times.
    steps, at_spacing : int
        Steps between consecutive distinct row times, and how many of them are ``spacing_ms``.
    """

    def __init__(self, path: Path, timeframe: str, spacing_ms: int, steps: int, at_spacing: int):
        self.path, self.timeframe, self.spacing_ms = path, timeframe, spacing_ms
        self.steps, self.at_spacing = steps, at_spacing
        super().__init__(self.describe(f"timeframe {timeframe}"))

    @property
    def fitting_timeframe(self) -> str | None:
        """The supported timeframe as long as :attr:`spacing_ms`, if there is one."""
        for name in SUPPORTED_TIMEFRAMES:
            if timeframe_to_ms(name) == self.spacing_ms:
                return name
        return None

    def describe(self, given: str, option: str = "timeframe") -> str:
        """The message, naming how the timeframe was ``given`` and the ``option`` that fixes it."""
        fits = self.fitting_timeframe
        fix = (
            f"pass {option} {fits}"
            if fits
            else f"no timeframe Candela stores is {format_duration(self.spacing_ms)} long "
            f"({', '.join(SUPPORTED_TIMEFRAMES)}): check the file"
        )
        return (
            f"{self.path}: rows are spaced {format_duration(self.spacing_ms)} apart ({self.at_spacing} of "
            f"{self.steps} steps between rows), which does not fit {given}: {fix}"
        )


@dataclass(frozen=True)
class CandleFile:
    """The parsed content of one candle file (times already converted to close times).

    Attributes
    ----------
    ts : ndarray of int64
        Close times in file order, ``open_time_ms + timeframe_ms``.
    open, high, low, close, volume : ndarray of float64
        The candle values in file order.
    line_numbers : ndarray of int64
        1-based line number in the file of each row (the header is line 1).
    """

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    line_numbers: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)


@dataclass(frozen=True)
class ImportReport:
    """What :func:`import_candles` did with one file.

    Attributes
    ----------
    path : Path
        The imported file.
    exchange, symbol, timeframe : str
        The market the candles were stored under.
    rows : int
        Data rows read from the file.
    inserted, unchanged, conflicting : int
        Accepted rows that were new, already stored with equal values, already stored with
        different values (the stored values were kept unless ``revise``), see
        :class:`data_pipeline.store.StoreResult`.
    revised : int
        Conflicting rows whose stored values were replaced (``revise=True``); the replaced
        versions are kept in ``ohlcv_revisions``.
    rejected : dict of str to int
        Rejected rows per validation reason (see :mod:`data_pipeline.validation`).
    rejected_examples : list of (int, str)
        ``(line number, reason)`` of the first :data:`REJECTED_EXAMPLES` rejected rows.
    conflict_examples : tuple of int
        Close times of up to five conflicting bars.
    first_ts, last_ts : int or None
        Close times of the first and last accepted bar (``None`` when none was accepted).
    new_gaps : tuple of (int, int)
        Holes written to the gap ledger by this import (inclusive close-time ranges), see
        :func:`data_pipeline.gaps.record_stored_holes`.
    timeframe_ms : int
        Length of ``timeframe``.
    """

    path: Path
    exchange: str
    symbol: str
    timeframe: str
    rows: int
    inserted: int
    unchanged: int
    conflicting: int
    rejected: dict[str, int] = field(default_factory=dict)
    rejected_examples: list[tuple[int, str]] = field(default_factory=list)
    conflict_examples: tuple[int, ...] = ()
    first_ts: int | None = None
    last_ts: int | None = None
    new_gaps: tuple[tuple[int, int], ...] = ()
    timeframe_ms: int = 0
    revised: int = 0

    @property
    def rejected_total(self) -> int:
        """Number of rejected rows."""
        return sum(self.rejected.values())

    @property
    def new_gap_bars(self) -> int:
        """Missing bars in :attr:`new_gaps`."""
        return sum(count_bars(first, last, self.timeframe_ms) for first, last in self.new_gaps)

    def summary(self) -> str:
        """One line: ``binance BTC/USDT 1m: 0 new, 1,500 already stored, 0 rejected (file.csv.gz)``."""
        text = (
            f"{self.exchange} {self.symbol} {self.timeframe}: {self.inserted:,} new, "
            f"{self.unchanged:,} already stored"
        )
        if self.revised:
            text += f", {self.revised:,} revised (previous values kept in ohlcv_revisions)"
        if self.conflicting > self.revised:
            text += f", {self.conflicting - self.revised:,} conflicting (stored values kept)"
        text = f"{text}, {self.rejected_total:,} rejected ({self.rows:,} rows in {self.path.name})"
        if self.new_gaps:
            text += (
                f"; {len(self.new_gaps):,} gap(s), {self.new_gap_bars:,} missing bar(s), recorded in the "
                "gap ledger (see 'candela data gaps')"
            )
        return text


# --------------------------------------------------------------------------- reading


def infer_market(path: str | Path) -> tuple[str, str, str] | None:
    """Guess ``(exchange, symbol, timeframe)`` from a name like ``binance_BTC-USDT_1m.csv.gz``.

    Returns ``None`` when the name does not follow that pattern.
    """
    match = _FILE_NAME.match(Path(path).name)
    if not match:
        return None
    symbol = f"{match['base'].upper()}/{match['quote'].upper()}"
    return match["exchange"], symbol, match["timeframe"]


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"candle file {str(path)!r} does not exist: check the path"
        ) from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a folder: pass one CSV or CSV.gz file") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            raise ValueError(
                f"{path} is a truncated or corrupt gzip file ({exc}): re-download or re-create it"
            ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path} is not UTF-8 text (byte {exc.start}): pass a CSV or CSV.gz file with header "
            f"{','.join(COLUMNS)}"
        ) from None
    return text.removeprefix("\ufeff")


def _first_bad_line(path: Path, lines: list[str], line_numbers: np.ndarray, width: int) -> str:
    """Find the first data line that is not ``width`` numbers; describe it and the fix."""
    for line, number in zip(lines, line_numbers.tolist()):
        fields = line.split(",")
        if len(fields) != width:
            return (
                f"{path} line {number}: expected {width} comma-separated fields "
                f"({','.join(COLUMNS)}), found {len(fields)} in {line[:80]!r}; the file is "
                "truncated or malformed: fix or re-download it"
            )
        for name, value in zip(COLUMNS, fields):
            try:
                float(value)
            except ValueError:
                return (
                    f"{path} line {number}: {name} is {value!r}, not a number; fix the line "
                    "or re-download the file"
                )
    return f"{path}: cannot parse the candle rows; check that every line has {width} numbers"


def read_candle_file(path: str | Path, timeframe: str) -> CandleFile:
    """Read a candle CSV/CSV.gz and convert open times to close times.

    Parameters
    ----------
    path : str or Path
        The file, plain or gzip-compressed (detected from its content).
    timeframe : str
        The candles' timeframe, e.g. ``"1m"``; ``ts = open_time_ms + timeframe_to_ms(timeframe)``.

    Returns
    -------
    CandleFile
        Every data row in file order, not yet validated.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is empty, truncated or malformed, or its header lacks or adds columns; the
        message names the line and the fix.
    """
    path = Path(path)
    timeframe_ms = timeframe_to_ms(timeframe)
    text = _read_text(path)
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ValueError(f"{path} is empty: expected a header {','.join(COLUMNS)} and candle rows")
    if len(lines) > 1 and not text.endswith(("\n", "\r")):
        raise ValueError(
            f"{path} line {len(lines)}: the last line has no line ending, so the file looks "
            "truncated (its last value may be cut short): re-download it, or add the missing "
            "newline if the file is complete"
        )
    header = [name.strip().lower() for name in lines[0].split(",")]
    if header[0].lstrip("-").isdigit():
        raise ValueError(
            f"{path} line 1: the file has no header line; add '{','.join(COLUMNS)}' as its first "
            "line (first column: bar OPEN time in ms UTC)"
        )
    missing = [name for name in COLUMNS if name not in header]
    extra = [name for name in header if name not in COLUMNS]
    if missing or extra or len(header) != len(COLUMNS):
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if extra:
            problems.append(f"unexpected {', '.join(repr(name) for name in extra)}")
        if not problems:
            problems.append("a column is repeated")
        raise ValueError(
            f"{path} line 1: header {lines[0][:80]!r} has the wrong columns ({'; '.join(problems)}): "
            f"the file needs exactly the columns {','.join(COLUMNS)}"
        )
    data = lines[1:]
    line_numbers = np.arange(2, len(data) + 2, dtype=np.int64)
    if any(not line.strip() for line in data):  # blank lines inside the file: skip, keep numbering
        keep = [index for index, line in enumerate(data) if line.strip()]
        data = [data[index] for index in keep]
        line_numbers = line_numbers[keep]
    if not data:
        raise ValueError(f"{path} has a header but no candle rows: the file is truncated or empty")
    try:
        table = np.loadtxt(data, delimiter=",", dtype=np.float64, ndmin=2, comments=None)
    except ValueError:
        raise ValueError(_first_bad_line(path, data, line_numbers, len(COLUMNS))) from None
    if table.shape[1] != len(COLUMNS):
        raise ValueError(_first_bad_line(path, data, line_numbers, len(COLUMNS)))
    columns = {name: np.ascontiguousarray(table[:, header.index(name)]) for name in COLUMNS}
    open_time = columns["open_time_ms"]
    bad_time = ~np.isfinite(open_time) | (open_time % 1 != 0) | (np.abs(open_time) > 2**62)
    if bad_time.any():
        row = int(np.flatnonzero(bad_time)[0])
        raise ValueError(
            f"{path} line {line_numbers[row]}: open_time_ms {data[row].split(',')[header.index('open_time_ms')]!r} "
            "is not an integer number of milliseconds; fix the line or re-download the file"
        )
    if np.abs(open_time).max() < 1e11:  # before 1973 in ms: almost surely seconds
        raise ValueError(
            f"{path}: open_time_ms values such as {int(open_time[0])} look like seconds, not "
            "milliseconds: multiply the first column by 1000"
        )
    return CandleFile(
        ts=open_time.astype(np.int64) + timeframe_ms,
        open=columns["open"],
        high=columns["high"],
        low=columns["low"],
        close=columns["close"],
        volume=columns["volume"],
        line_numbers=line_numbers,
    )


# --------------------------------------------------------------------------- spacing


def format_duration(milliseconds: int) -> str:
    """``3_600_000`` -> ``"1h"``, ``5_400_000`` -> ``"90m"``, ``1_500`` -> ``"1500ms"``."""
    for unit, length in (
        ("w", 604_800_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ):
        if milliseconds % length == 0:
            return f"{milliseconds // length}{unit}"
    return f"{milliseconds}ms"


def check_spacing(path: str | Path, ts: np.ndarray, timeframe: str) -> None:
    """Refuse rows whose most common step is not the timeframe.

    The steps are the differences between consecutive **distinct** row times, sorted (so
    duplicated or out-of-order rows, which validation rejects one by one, do not decide it).
    The file fits ``timeframe`` when no step is more common than one ``timeframe``. Gaps
    (steps of several bars) are allowed however many there are: when bars go missing at
    random, a one-bar step stays the most common one however sparse the data, while a file of
    another timeframe has hardly any one-bar step (an hourly file given as ``5m`` steps by 12
    bars; a 5-minute file given as ``1h`` steps by a twelfth of one). On every real file of the
    sample and of the wider collection, one bar is the most common step (at least 59.8 % of
    the steps, bittrex NEO/BTC 1m; 94.6 % on bittrex ADA/BTC 1m). A file with fewer than two
    distinct times has no step and is not judged.

    Raises
    ------
    SpacingError
        If another step is more common than ``timeframe``.
    """
    timeframe_ms = timeframe_to_ms(timeframe)
    steps = np.diff(np.unique(ts))
    if len(steps) == 0:
        return
    values, counts = np.unique(steps, return_counts=True)
    at_timeframe = int(counts[values == timeframe_ms].sum())
    if at_timeframe < counts.max():
        most = int(np.argmax(counts))
        raise SpacingError(Path(path), timeframe, int(values[most]), len(steps), int(counts[most]))


# --------------------------------------------------------------------------- importing


def import_candles(
    engine: Engine,
    path: str | Path,
    exchange: str,
    symbol: str,
    timeframe: str,
    *,
    chunk_rows: int = 200_000,
    revise: bool = False,
) -> ImportReport:
    """Import one candle file into ``engine``'s ``ohlcv`` table, in one transaction.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        A database at the current schema (see :func:`candela.core.db.connect`).
    path : str or Path
        CSV or CSV.gz with header ``open_time_ms,open,high,low,close,volume`` (open times).
    exchange, symbol, timeframe : str
        Market to store the candles under: ccxt exchange id, unified ``BASE/QUOTE`` symbol,
        supported timeframe.
    chunk_rows : int
        Rows per :func:`~data_pipeline.store.store_bars` call; every chunk is written in the
        same transaction, so this bounds memory, not atomicity.
    revise : bool
        Replace stored bars whose values differ from the file's, keeping the replaced versions
        in ``ohlcv_revisions`` (default: keep the stored values and count the conflicts).

    Returns
    -------
    ImportReport
        Rows read, inserted, unchanged, conflicting and rejected (per reason, with examples).

    Raises
    ------
    SpacingError
        If the rows are not spaced by ``timeframe`` (:func:`check_spacing`; nothing is written).
    ValueError, FileNotFoundError
        For a bad market or a missing, truncated or malformed file (nothing is written).
    ImportFailedError
        If the database rejects the write; the transaction is rolled back, nothing is written.
    """
    validate_exchange(exchange)
    validate_symbol(symbol)
    timeframe_ms = timeframe_to_ms(timeframe)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    candles = read_candle_file(path, timeframe)
    check_spacing(path, candles.ts, timeframe)
    check = validate_candles(
        candles.ts,
        candles.open,
        candles.high,
        candles.low,
        candles.close,
        candles.volume,
        timeframe_ms,
    )
    keep = check.valid
    columns = [
        column[keep]
        for column in (
            candles.ts,
            candles.open,
            candles.high,
            candles.low,
            candles.close,
            candles.volume,
        )
    ]
    totals = StoreResult(0, 0, 0)
    conflicts: list[int] = []
    try:
        with engine.begin() as connection:
            for start in range(0, len(columns[0]), chunk_rows):
                part = [column[start : start + chunk_rows] for column in columns]
                result = store_bars(connection, exchange, symbol, timeframe, *part, revise=revise)
                totals = StoreResult(
                    totals.inserted + result.inserted,
                    totals.unchanged + result.unchanged,
                    totals.conflicting + result.conflicting,
                    revised=totals.revised + result.revised,
                )
                conflicts.extend(result.conflict_examples)
            new_gaps = _record_gaps(
                connection, (exchange, symbol, timeframe), columns[0], timeframe_ms, Path(path).name
            )
    except DBAPIError as exc:
        raise ImportFailedError(_write_failure(path, exc.orig or exc)) from exc
    except engine.dialect.dbapi.Error as exc:  # raised by the raw-cursor COPY/executemany paths
        raise ImportFailedError(_write_failure(path, exc)) from exc
    accepted_ts = columns[0]
    return ImportReport(
        path=Path(path),
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        rows=len(candles),
        inserted=totals.inserted,
        unchanged=totals.unchanged,
        conflicting=totals.conflicting,
        rejected=dict(check.counts),
        rejected_examples=[
            (int(candles.line_numbers[row]), reason)
            for row, reason in check.rejected[:REJECTED_EXAMPLES]
        ],
        conflict_examples=tuple(sorted(conflicts)[:5]),
        first_ts=int(accepted_ts.min()) if len(accepted_ts) else None,
        last_ts=int(accepted_ts.max()) if len(accepted_ts) else None,
        new_gaps=tuple(new_gaps),
        timeframe_ms=timeframe_ms,
        revised=totals.revised,
    )


def _record_gaps(
    connection: Connection,
    market: tuple[str, str, str],
    accepted_ts: np.ndarray,
    timeframe_ms: int,
    source: str,
) -> list[tuple[int, int]]:
    """Ledger the holes between the stored bars on either side of the file's span (inclusive)."""
    if len(accepted_ts) == 0:
        return []
    first, last = int(accepted_ts.min()), int(accepted_ts.max())
    key = (
        ohlcv.c.exchange == market[0],
        ohlcv.c.symbol == market[1],
        ohlcv.c.timeframe == market[2],
    )
    before = connection.execute(
        select(func.max(ohlcv.c.ts)).where(*key, ohlcv.c.ts < first)
    ).scalar()
    after = connection.execute(select(func.min(ohlcv.c.ts)).where(*key, ohlcv.c.ts > last)).scalar()
    return record_stored_holes(
        connection,
        *market,
        first if before is None else int(before),
        last if after is None else int(after),
        timeframe_ms,
        source,
    )


def _write_failure(path, error) -> str:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"importing {path} failed, nothing was written (rolled back): {reason}"
