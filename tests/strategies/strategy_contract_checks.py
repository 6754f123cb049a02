"""Checks every shipped strategy must pass: look-back shape, causality, exact history windows."""

from __future__ import annotations

import numpy as np

from research.strategy_model import StrategySpec
from research.types import Bars


def same(a: float, b: float) -> bool:
    """Bit-level equality that treats nan as equal to nan."""
    return (a == b) or (np.isnan(a) and np.isnan(b))


def sample_points(start: int, stop: int, count: int, seed: int = 7) -> np.ndarray:
    if stop <= start:
        return np.array([], dtype=int)
    rng = np.random.default_rng(seed)
    picks = rng.integers(start, stop, size=min(count, stop - start))
    return np.unique(np.r_[picks, start, stop - 1])


def assert_lookback_shape(spec: StrategySpec, bars: Bars, params, levels=(0.0, 1.0)) -> np.ndarray:
    """nan exactly during the look-back, then only the allowed levels; returns the target."""
    target = spec.target(bars, params)
    lookback = spec.lookback(params)
    assert target.dtype == np.float64 and len(target) == len(bars)
    assert np.isnan(target[:lookback]).all()
    assert not np.isnan(target[lookback:]).any()
    assert set(np.unique(target[lookback:])) <= set(levels)
    return target


def assert_causal(spec: StrategySpec, bars: Bars, params, count: int = 40) -> None:
    """target(bars[:t+1])[-1] == target(bars)[t] at sampled t (every t, look-back included)."""
    full = spec.target(bars, params)
    for t in sample_points(0, len(bars), count):
        assert same(spec.target(bars[: t + 1], params)[-1], full[t]), f"past changed at t={t}"


def assert_history_window_exact(spec: StrategySpec, bars: Bars, params, count: int = 120) -> int:
    """The runner's window (the last history_window bars, clamped at the first bar) gives the
    full-history target and indicators, bit for bit; returns the number of points checked."""
    full = spec.evaluate(bars, params)
    window = spec.history_window(params)
    points = sample_points(spec.lookback(params), len(bars), count)
    for t in points:
        last = spec.evaluate(bars[max(0, t - window + 1) : t + 1], params)
        assert same(last.target[-1], full.target[t]), f"window decision differs at t={t}"
        for name, values in last.indicators.items():
            assert same(values[-1], full.indicators[name][t]), f"{name} differs at t={t}"
    return len(points)
