"""Top-k momentum rotation: hold the markets that rose most over a trailing window."""

from research.kernels.portfolio_records import Rebalance
from research.portfolio_model import portfolio, top_k, trailing_return


@portfolio(
    lookback=lambda p: p.window,
    history=lambda p: p.window + 1,
    rebalance=lambda p: Rebalance(period=p.every_hours * 3_600_000),
    sweep={"top": (1, 2, 3), "window": (24, 72, 168, 336), "every_hours": (24, 168)},
    constraints=["top >= 1", "window >= 1", "every_hours >= 1"],
    long_only=True,
)
def momentum_rotation(panel, top: int = 2, window: int = 168, every_hours: int = 168):
    """Rank the markets by their return over the last ``window`` grid bars and hold the
    ``top`` best equally (``1 / top`` each; a market without a bar at either end is not
    ranked). The book rebalances every ``every_hours`` hours of close time."""
    return top_k(trailing_return(panel.close, window), top)
