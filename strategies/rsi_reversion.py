"""RSI mean reversion: buy oversold, sell when the RSI has recovered; optional mirrored shorts."""

from research.indicators import event_position, rsi, unchanged
from research.strategy_model import strategy


@strategy(sweep={"window": range(5, 31), "lower": range(15, 41, 5),
                 "exit_level": range(45, 66, 5)},
          constraints=["window >= 2", "max_hold >= 1", "0 <= lower < exit_level < upper <= 100"])
def rsi_reversion(bars, window: int = 14, lower: float = 30.0, exit_level: float = 50.0,
                  upper: float = 70.0, max_hold: int = 100, allow_short: bool = False):
    """Mean reversion on the Wilder RSI: in when oversold, out when recovered. Long when
    RSI < lower, out when RSI > exit_level; with allow_short, short when RSI > upper, out when
    RSI < exit_level. A position is held at most
    max_hold bars after its latest entry signal. While the close has not moved for window bars
    the RSI is stale (a ratio of vanishing averages) and gives no signal."""
    strength = rsi(bars.close, window)
    live = ~unchanged(bars.close, window)
    position = event_position(live & (strength < lower), live & (strength > exit_level),
                              allow_short and live & (strength > upper),
                              allow_short and live & (strength < exit_level), max_hold)
    return position, {"rsi": {"rsi": strength}}
