"""EMA cross: long while the fast EMA of closes is above the slow one, short while below."""

import numpy as np

from research.indicators import ema
from research.strategy_model import strategy


@strategy(sweep={"fast": range(5, 55, 2), "slow": range(20, 120, 4)},
          constraints=["1 <= fast < slow"])
def ema_cross(bars, fast: int = 12, slow: int = 26):
    """Long while the fast EMA of closes is above the slow EMA, short while below. Flat when
    they are equal. Trades from bar slow - 1; the runner loads enough bars for both EMAs to
    forget their seed."""
    fast_ema, slow_ema = ema(bars.close, fast), ema(bars.close, slow)
    return np.sign(fast_ema - slow_ema), {"price": {"ema_fast": fast_ema, "ema_slow": slow_ema}}
