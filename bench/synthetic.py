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
