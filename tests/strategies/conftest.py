"""Real bars for the strategy tests: long enough files shipped with the repository (``market_files``)."""

from __future__ import annotations

import pytest
from market_files import read_market_bars

from research.types import Bars

#: Several exchanges, symbols and timeframes, each with thousands of bars (warm-ups reach ~1,000).
STRATEGY_FILES = [
    "bittrex_ADA-BTC_1m.csv.gz",
    "coinbase_BTC-USD_1m.csv.gz",
    "bittrex_XRP-BTC_5m.csv.gz",
    "binance_ETH-USDT_4h.csv.gz",
]


@pytest.fixture(scope="session", params=STRATEGY_FILES)
def real_bars(request) -> Bars:
    return read_market_bars(request.param)
