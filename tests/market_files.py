"""Test-side reader of the market-data CSV files (the wider market-data collection (``CANDELA_SHARED_DATA``), ``data/sample``).

Independent of Candela's importer, so tests can use it as the oracle's view of a file.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from candela.core.timeframes import timeframe_to_ms
from research.types import Bars


def read_ohlcv_csv(path, timeframe_ms: int | None = None, limit: int | None = None) -> Bars:
    """Bars from an ``open_time_ms,open,high,low,close,volume`` file; ``ts`` = open time + timeframe.

    The timeframe comes from the file name (``<exchange>_<BASE-QUOTE>_<timeframe>[...].csv.gz``)
    unless given; ``limit`` keeps the first rows only.
    """
    path = Path(path)
    if timeframe_ms is None:
        timeframe_ms = timeframe_to_ms(path.name.split("_")[2].split(".")[0])
    frame = pd.read_csv(path, nrows=limit)
    return Bars.from_arrays(frame["open_time_ms"].to_numpy() + timeframe_ms, frame["open"],
                            frame["high"], frame["low"], frame["close"], frame["volume"],
                            timeframe_ms)
