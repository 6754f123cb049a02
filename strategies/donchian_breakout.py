"""Donchian (turtle) breakout: enter on a new N-bar extreme, exit on an M-bar opposite extreme."""

from research.indicators import donchian, event_position, shift
from research.strategy_model import strategy


@strategy(sweep={"entry_window": range(10, 61, 5), "exit_window": range(5, 31, 5)},
          constraints=["1 <= exit_window <= entry_window", "max_hold >= 1"])
def donchian_breakout(bars, entry_window: int = 20, exit_window: int = 10, max_hold: int = 100,
                      allow_short: bool = False):
    """Turtle-style breakout of the previous bars' channel. Long on a close above the previous
    entry_window bars' high, out on a close below the previous exit_window bars' low; shorts
    mirrored with allow_short. Held at most max_hold bars after the latest breakout."""
    entry = donchian(bars.high, bars.low, entry_window)
    leave = donchian(bars.high, bars.low, exit_window)
    channels = {"entry_high": shift(entry.upper), "entry_low": shift(entry.lower),
                "exit_high": shift(leave.upper), "exit_low": shift(leave.lower)}
    close = bars.close
    position = event_position(close > channels["entry_high"], close < channels["exit_low"],
                              allow_short and close < channels["entry_low"],
                              allow_short and close > channels["exit_high"], max_hold)
    return position, {"price": channels}
