"""Checks every shipped strategy must pass: warm-up shape, causality, exact warm-up windows."""

from __future__ import annotations

import numpy as np

from research.types import Bars, StrategySpec


def same(a: float, b: float) -> bool:
    """Bit-level equality that treats nan as equal to nan."""
    return (a == b) or (np.isnan(a) and np.isnan(b))


def sample_points(start: int, stop: int, count: int, seed: int = 7) -> np.ndarray:
    if stop <= start:
        return np.array([], dtype=int)
    rng = np.random.default_rng(seed)
    picks = rng.integers(start, stop, size=min(count, stop - start))
    return np.unique(np.r_[picks, start, stop - 1])


def assert_warmup_shape(spec: StrategySpec, bars: Bars, params, levels=(0.0, 1.0)) -> np.ndarray:
    """nan exactly during warm-up, then only the allowed levels; returns the target."""
    target = spec.target(bars, params)
    warmup = spec.warmup(params)
    assert target.dtype == np.float64 and len(target) == len(bars)
    assert np.isnan(target[:warmup]).all()
    assert not np.isnan(target[warmup:]).any()
    assert set(np.unique(target[warmup:])) <= set(levels)
    return target


def assert_causal(spec: StrategySpec, bars: Bars, params, count: int = 40) -> None:
    """target(bars[:t+1])[-1] == target(bars)[t] at sampled t (every t, warm-up included)."""
    full = spec.target(bars, params)
    for t in sample_points(0, len(bars), count):
        assert same(spec.target(bars[: t + 1], params)[-1], full[t]), f"past changed at t={t}"


def assert_warmup_window_exact(spec: StrategySpec, bars: Bars, params, count: int = 120) -> int:
    """The runner's window (the last warmup + 1 bars) decides exactly as the full history."""
    full = spec.target(bars, params)
    warmup = spec.warmup(params)
    points = sample_points(warmup, len(bars), count)
    for t in points:
        window = bars[t - warmup: t + 1]
        assert len(window) == spec.required_bars(params)
        assert spec.target(window, params)[-1] == full[t], f"window decision differs at t={t}"
    return len(points)
