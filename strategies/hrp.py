"""Hierarchical risk parity, re-estimated once a period on a trailing window (skfolio)."""

import numpy as np

from research.kernels.portfolio_records import Rebalance
from research.portfolio_model import bars_per_period, log_returns, period_anchors, portfolio

HOUR_MS = 3_600_000


def _history(p, timeframe_ms):
    # the estimate of a period's first bar holds for the whole period: a window must reach
    # back to that bar's own window (see research.portfolio_model.period_anchors)
    return p.window + bars_per_period(p.every_hours * HOUR_MS, timeframe_ms) + 1


@portfolio(
    lookback=lambda p: p.window,
    history=_history,
    rebalance=lambda p: Rebalance(period=p.every_hours * HOUR_MS),
    sweep={"window": (72, 168, 336), "every_hours": (24, 168)},
    constraints=["window >= 8", "every_hours >= 1"],
    long_only=True,
)
def hrp(panel, window: int = 168, every_hours: int = 24):
    """Hierarchical risk parity (skfolio's ``HierarchicalRiskParity``) of the markets' log
    returns over the last ``window`` grid bars, estimated on the first bar of each
    ``every_hours`` period and held until the next (the book rebalances then). Markets with
    fewer than half the window's returns (not yet listed, long gaps) get 0; an absent bar's
    return counts as 0."""
    returns = log_returns(panel.close)
    anchors = period_anchors(panel.ts, every_hours * HOUR_MS)
    weights = np.zeros(returns.shape)  # cash until the first estimate
    estimates = {}
    for t, anchor in enumerate(anchors):
        if anchor < window:  # no estimate yet (or its period began before the data)
            continue
        if anchor not in estimates:
            estimates[anchor] = _estimate(returns[anchor - window + 1 : anchor + 1])
        weights[t] = estimates[anchor]
    return weights


def _estimate(returns):
    """HRP weights of the markets with at least half the window's returns; 0 for the rest."""
    from skfolio.optimization import HierarchicalRiskParity  # heavy: loaded on first use

    usable = np.isfinite(returns).sum(axis=0) >= len(returns) / 2
    usable &= np.nanstd(np.where(np.isfinite(returns), returns, 0.0), axis=0) > 0.0
    weights = np.zeros(returns.shape[1])
    if usable.sum() == 1:
        weights[usable] = 1.0
    elif usable.sum() > 1:
        sample = np.nan_to_num(returns[:, usable], nan=0.0)
        weights[usable] = HierarchicalRiskParity().fit(sample).weights_
    return weights
