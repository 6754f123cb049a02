"""Shared helpers of the portfolio kernel tests: random panels and weights, and one call that
runs the book kernel on them with a flat dict of settings (the reference book's keywords)."""

from __future__ import annotations

import math

import numpy as np

from research.kernels.portfolio_backtest import simulate_book
from research.kernels.portfolio_records import BookLimits, Rebalance, make_book_config, new_book
from research.types import Costs, Stops

CASH = 10_000.0


def synthetic_panel(
    n: int,
    m: int,
    seed: int,
    *,
    absent: float = 0.1,
    volatility: float = 0.03,
    timeframe_ms: int = 3_600_000,
    start_ts: int = 1_600_000_000_000,
):
    """``(ts, open, high, low, close)`` of ``m`` random-walk markets on ``n`` grid rows; each
    row of a market is absent (all ``nan``) with probability ``absent``, and some markets list
    late or delist early (absent at the start or the end)."""
    rng = np.random.default_rng(seed)
    ts = start_ts - start_ts % timeframe_ms + timeframe_ms * np.arange(1, n + 1, dtype=np.int64)
    common = rng.normal(0.0, volatility, n)
    steps = 0.6 * common[:, None] + 0.8 * rng.normal(0.0, volatility, (n, m))
    base = rng.uniform(0.5, 500.0, m)
    close = base * np.exp(np.cumsum(steps, axis=0))
    previous = np.vstack([base, close[:-1]])
    open_ = previous * np.exp(rng.normal(0.0, volatility / 3, (n, m)))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, volatility, (n, m))))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, volatility, (n, m))))
    missing = rng.random((n, m)) < absent
    for j in range(m):
        if rng.random() < 0.3:
            missing[: rng.integers(0, n // 2 + 1), j] = True  # listed late
        if rng.random() < 0.3:
            missing[n - rng.integers(0, n // 3 + 1) :, j] = True  # delisted
    for array in (open_, high, low, close):
        array[missing] = np.nan
    return ts, open_, high, low, close


def random_weights(
    n: int,
    m: int,
    seed: int,
    levels=(-0.5, -0.25, 0.0, 0.1, 0.25, 0.5, 1.0, math.nan),
    change_probability: float = 0.1,
):
    """Piecewise-constant random weights per market."""
    rng = np.random.default_rng(seed + 104_729)
    out = np.empty((n, m))
    current = np.zeros(m)
    for i in range(n):
        change = rng.random(m) < change_probability
        current = np.where(change, np.asarray(levels)[rng.integers(len(levels), size=m)], current)
        out[i] = current
    return out


def book_config(s: dict):
    return make_book_config(
        Costs(s.get("fee_rate", 0.0), s.get("slippage_bps", 0.0)),
        Stops(
            s.get("stop_loss", math.nan),
            s.get("take_profit", math.nan),
            s.get("trailing_stop", math.nan),
        ),
        BookLimits(
            s.get("max_weight", 1.0),
            s.get("max_gross", 1.0),
            s.get("daily_loss_limit", math.nan),
            s.get("max_drawdown", math.nan),
            s.get("min_notional", 0.0),
        ),
        Rebalance(
            s.get("every", 0), s.get("period", 0), s.get("offset", 0), s.get("drift", math.nan)
        ),
    )


def run_book(panel, weights, s: dict | None = None, cash: float = CASH, general: bool = True):
    """Run the kernel (by default the book loop even for one market, see
    :func:`~research.kernels.portfolio_backtest.simulate_book`); return ``(fills, cash,
    positions, equity, status, book, legs)``."""
    s = s or {}
    ts, open_, high, low, close = panel
    n, m = open_.shape
    book, legs = new_book(cash, m)
    equity, cash_out, positions = np.full(n, np.nan), np.full(n, np.nan), np.full((n, m), np.nan)
    run = simulate_book(
        book,
        legs,
        book_config(s),
        ts,
        open_,
        high,
        low,
        close,
        np.ascontiguousarray(weights, dtype=float),
        equity,
        cash_out,
        positions,
        general=general,
    )
    return run.fills, cash_out, positions, equity, run.status, run.book, run.legs
