"""Real bars for the strategy tests: long enough files from ``../shared/data/ohlcv``."""

from __future__ import annotations

import pandas as pd
import pytest

from research.types import Bars

TIMEFRAME_MS = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000, "4h": 14_400_000, "1d": 86_400_000}

#: Several exchanges, symbols and timeframes, each with thousands of bars (warm-ups reach ~1,000).
STRATEGY_FILES = [
    "bittrex_ADA-BTC_1m.csv.gz",
    "coinbase_BTC-USD_1m.csv.gz",
    "bittrex_XRP-BTC_5m.csv.gz",
    "binance_ETH-USDT_4h.csv.gz",
]


def read_bars(path) -> Bars:
    """Bars from a ``open_time_ms,open,high,low,close,volume`` file; ts = open time + timeframe."""
    frame = pd.read_csv(path)
    timeframe_ms = TIMEFRAME_MS[path.name.split("_")[2].split(".")[0]]
    return Bars.from_arrays(frame["open_time_ms"] + timeframe_ms, frame["open"], frame["high"],
                            frame["low"], frame["close"], frame["volume"], timeframe_ms)


@pytest.fixture(scope="session", params=STRATEGY_FILES)
def real_bars(request, shared_data) -> Bars:
    return read_bars(shared_data / "ohlcv" / request.param)
