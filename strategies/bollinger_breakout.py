"""Bollinger breakout with an ATR trailing stop on closes (long only)."""

from research.indicators import atr, bollinger, trailing_exit_position
from research.strategy_model import strategy


@strategy(sweep={"window": range(10, 61, 5), "num_std": (1.5, 2.0, 2.5, 3.0),
                 "atr_multiplier": (1.5, 2.0, 2.5, 3.0, 4.0)},
          constraints=["window >= 2", "atr_window >= 2", "max_hold >= 1", "num_std > 0",
                       "atr_multiplier > 0"], long_only=True)
def bollinger_breakout(bars, window: int = 20, num_std: float = 2.0, atr_window: int = 14,
                       atr_multiplier: float = 3.0, max_hold: int = 100):
    """Long on a close above the upper Bollinger band, with an ATR trailing exit. Out when a
    close falls more than atr_multiplier ATRs below the highest close since the latest
    breakout, or max_hold bars after it."""
    bands = bollinger(bars.close, window, num_std)
    average_range = atr(bars.high, bars.low, bars.close, atr_window)
    position, stop = trailing_exit_position(bars.close > bands.upper, bars.close,
                                            atr_multiplier * average_range, max_hold)
    return position, {"price": {"bb_middle": bands.middle, "bb_upper": bands.upper,
                                "bb_lower": bands.lower, "trailing_stop": stop},
                      "atr": {"atr": average_range}}
