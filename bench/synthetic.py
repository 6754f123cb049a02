"""The shared synthetic market for the benchmarks: a seeded random walk of 1-minute bars.

Every benchmark measures on the very same series, so their figures can be compared: call
:func:`synthetic_bars` with the defaults.
"""

from __future__ import annotations

import numpy as np

from research.types import Bars

N_BARS = 1_000_000
SEED = 42
MINUTE_MS = 60_000
START_MS = 1_577_836_800_000  # 2020-01-01 00:00 UTC


def synthetic_bars(n_bars: int = N_BARS, seed: int = SEED) -> Bars:
    """Return ``n_bars`` seeded 1m bars (close times from 2020-01-01 00:01 UTC).

    Closes follow a geometric random walk with 0.1 % per-bar volatility starting at 10,000;
    each bar opens at the previous close, and the high/low extend the open-close range by a
    random half-normal amount, so every bar is consistent (low <= open, close <= high).
    """
    if n_bars < 2:
        raise ValueError(f"n_bars must be at least 2, got {n_bars}")
    rng = np.random.default_rng(seed)
    log_returns = rng.normal(0.0, 0.001, n_bars)
    close = 10_000.0 * np.exp(np.cumsum(log_returns))
    open_ = np.empty(n_bars)
    open_[0] = 10_000.0
    open_[1:] = close[:-1]
    wick = np.abs(rng.normal(0.0, 0.0005, (2, n_bars)))
    high = np.maximum(open_, close) * (1.0 + wick[0])
    low = np.minimum(open_, close) * (1.0 - wick[1])
    volume = rng.lognormal(1.0, 0.5, n_bars)
    ts = START_MS + MINUTE_MS * np.arange(1, n_bars + 1, dtype=np.int64)
    return Bars(ts, open_, high, low, close, volume, MINUTE_MS)


def synthetic_panel_arrays(
    n_bars: int = 100_000, n_markets: int = 50, seed: int = SEED, correlation: float = 0.5
):
    """Return ``(ts, open, high, low, close)`` of ``n_markets`` seeded, correlated 1m markets
    (``(n_bars, n_markets)`` float64 arrays, every market present at every bar).

    Each market's log return is ``sqrt(correlation)`` times a common factor plus
    ``sqrt(1 - correlation)`` times its own noise (0.1 % per bar either way, so any two
    markets' returns correlate by ``correlation``); prices start between 1 and 1,000; bars
    are built as :func:`synthetic_bars` builds them.
    """
    rng = np.random.default_rng(seed)
    common = rng.normal(0.0, 0.001, (n_bars, 1))
    own = rng.normal(0.0, 0.001, (n_bars, n_markets))
    log_returns = np.sqrt(correlation) * common + np.sqrt(1.0 - correlation) * own
    start = 10.0 ** rng.uniform(0.0, 3.0, n_markets)
    close = start * np.exp(np.cumsum(log_returns, axis=0))
    open_ = np.vstack([start, close[:-1]])
    wick = np.abs(rng.normal(0.0, 0.0005, (2, n_bars, n_markets)))
    high = np.maximum(open_, close) * (1.0 + wick[0])
    low = np.minimum(open_, close) * (1.0 - wick[1])
    ts = START_MS + MINUTE_MS * np.arange(1, n_bars + 1, dtype=np.int64)
    return ts, open_, high, low, close
