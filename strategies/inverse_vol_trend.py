"""An inverse-volatility book with a trend filter: each market in an uptrend, weighted by
the inverse of its volatility."""

from research.indicators import sma
from research.kernels.portfolio_records import Rebalance
from research.portfolio_model import allocate, inverse_volatility
from research.strategy_model import strategy


@strategy(sweep={"trend": (24, 50, 100, 200)}, constraints=["trend >= 2"], long_only=True)
def above_trend(bars, trend: int = 100):
    """Long while the close is above its ``trend``-bar simple moving average, flat otherwise."""
    average = sma(bars.close, trend)
    return bars.close > average, {"price": {"trend": average}}


inverse_vol_trend = allocate(
    above_trend,
    inverse_volatility(vol_window=168),
    name="inverse_vol_trend",
    rebalance=Rebalance(drift=0.05),
    sweep={"trend": (50, 100, 200), "vol_window": (72, 168, 336)},
    description="Every market above its trend (close over its SMA), weighted by the inverse "
    "of its volatility (the standard deviation of its last vol_window log returns) "
    "so that all markets in an uptrend would hold the whole book; the others are "
    "cash. The book trades back to the weights when one drifts 5 points away.",
)
