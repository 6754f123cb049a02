"""SMA cross: long while the fast simple moving average of closes is above the slow one."""

from research.indicators import sma
from research.strategy_model import strategy


@strategy(sweep={"fast": range(5, 55), "slow": range(20, 220, 4)},
          constraints=["1 <= fast < slow"], long_only=True)
def sma_cross(bars, fast: int = 10, slow: int = 50):
    """Long while the fast simple moving average of closes is above the slow one. Flat
    otherwise (equal averages: flat); exact window sums: the history window is slow bars."""
    fast_sma, slow_sma = sma(bars.close, fast), sma(bars.close, slow)
    return fast_sma > slow_sma, {"price": {"sma_fast": fast_sma, "sma_slow": slow_sma}}
