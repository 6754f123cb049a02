"""Where the tests' real market-data files live, and a test-side reader of the OHLCV CSV files.

A file is named as in the wider market-data collection (``CANDELA_SHARED_DATA``), relative to its
root: ``ohlcv/<exchange>_<BASE-QUOTE>_<timeframe>.csv.gz``, ``trades/...``,
``exchange_samples/...``. :func:`market_file` looks for it in the repository first, in
:data:`REPOSITORY_DIRS` (byte-for-byte copies of the collection's files, each with its
provenance and SHA-256), and only then in the collection. So a test that needs only shipped files
runs in any clone, and a test that needs the wider collection is still collected everywhere and
skips (fails under ``CI=true``) naming the file it lacks.

The reader is independent of Candela's importer, so tests can use it as the oracle's view of a
file.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from availability import unavailable

from candela.core.paths import REPO_ROOT, SAMPLE_DIR, shared_data_dir
from candela.core.timeframes import timeframe_to_ms
from research.types import Bars

FIXTURE_DIR = REPO_ROOT / "tests" / "fixtures" / "market"
"""Real files shipped for the tests only (see its ``PROVENANCE.md``)."""

REPOSITORY_DIRS = (FIXTURE_DIR, SAMPLE_DIR)
"""Roots searched before the collection: the test fixture, then the bundled sample."""


def repository_file(name: str) -> Path | None:
    """The repository's copy of ``name`` (relative to a collection root), or None."""
    for root in REPOSITORY_DIRS:
        path = root / name
        if path.is_file():
            return path
    return None


def market_file(name: str) -> Path:
    """Path of the market-data file ``name`` (relative to a collection root, e.g. ``ohlcv/x.csv.gz``).

    The repository's copy when it ships one, else the collection's. When neither has it the
    calling test is skipped, or fails under ``CI=true`` (the collection is required there).
    """
    path = repository_file(name)
    if path is not None:
        return path
    shared = shared_data_dir() / name
    if shared.is_file():
        return shared
    unavailable(
        f"{name} is not shipped with the repository and the wider market-data collection "
        f"is not at {shared_data_dir()} (set CANDELA_SHARED_DATA)"
    )


def read_ohlcv_csv(path, timeframe_ms: int | None = None, limit: int | None = None) -> Bars:
    """Bars from an ``open_time_ms,open,high,low,close,volume`` file; ``ts`` = open time + timeframe.

    The timeframe comes from the file name (``<exchange>_<BASE-QUOTE>_<timeframe>[...].csv.gz``)
    unless given; ``limit`` keeps the first rows only.
    """
    path = Path(path)
    if timeframe_ms is None:
        timeframe_ms = timeframe_to_ms(path.name.split("_")[2].split(".")[0])
    frame = pd.read_csv(path, nrows=limit)
    return Bars.from_arrays(
        frame["open_time_ms"].to_numpy() + timeframe_ms,
        frame["open"],
        frame["high"],
        frame["low"],
        frame["close"],
        frame["volume"],
        timeframe_ms,
    )


def read_market_bars(name: str, timeframe_ms: int | None = None, limit: int | None = None) -> Bars:
    """:func:`read_ohlcv_csv` of :func:`market_file` ``(name)``; a bare file name means ``ohlcv/<name>``."""
    if "/" not in name:
        name = f"ohlcv/{name}"
    return read_ohlcv_csv(market_file(name), timeframe_ms, limit)
