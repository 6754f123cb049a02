"""MACD and RSI: long on MACD momentum unless the RSI says overbought."""

from research.indicators import macd, rsi
from research.strategy_model import strategy


@strategy(sweep={"fast": range(6, 20, 2), "slow": range(20, 44, 4), "ceiling": (60.0, 70.0, 80.0)},
          constraints=["1 <= fast < slow", "signal >= 1", "rsi_window >= 2", "0 < ceiling <= 100"],
          long_only=True)
def macd_rsi(bars, fast: int = 12, slow: int = 26, signal: int = 9, rsi_window: int = 14,
             ceiling: float = 70.0):
    """Long while the MACD line is above its signal line and the RSI is not overbought. Flat
    otherwise (the RSI at or above the ceiling counts as overbought)."""
    lines, strength = macd(bars.close, fast, slow, signal), rsi(bars.close, rsi_window)
    long = (lines.line > lines.signal) & (strength < ceiling)
    return long, {"macd": {"macd": lines.line, "macd_signal": lines.signal},
                  "rsi": {"rsi": strength}}
