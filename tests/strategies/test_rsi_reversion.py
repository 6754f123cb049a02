"""rsi_reversion against a pandas formulation on real data; validation; causality; history
window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from event_rule_oracle import windowed_position
from strategy_contract_checks import (
    assert_causal,
    assert_history_window_exact,
    assert_lookback_shape,
)

from research.indicators import converged_warmup, wilder_alpha
from research.types import Bars
from strategies.rsi_reversion import rsi_reversion as SPEC


def pandas_rsi(close: pd.Series, n: int) -> pd.Series:
    delta = close.diff()
    gain = delta.clip(lower=0).ewm(alpha=1 / n, adjust=False, min_periods=n).mean()
    loss = (-delta.clip(upper=0)).ewm(alpha=1 / n, adjust=False, min_periods=n).mean()
    rsi = 100 - 100 / (1 + gain / loss)
    return rsi.mask((loss == 0) & (gain > 0), 100.0).mask((loss == 0) & (gain == 0), 50.0)


@pytest.mark.parametrize("allow_short", [False, True])
@pytest.mark.parametrize(
    "window, lower, exit_level, upper, max_hold",
    [(14, 30.0, 50.0, 70.0, 100), (6, 25.0, 55.0, 75.0, 20)],
)
def test_matches_pandas_on_real_data(
    real_bars, window, lower, exit_level, upper, max_hold, allow_short
):
    params = SPEC.make_params(
        window=window,
        lower=lower,
        exit_level=exit_level,
        upper=upper,
        max_hold=max_hold,
        allow_short=allow_short,
    )
    assert SPEC.lookback(params) == window  # the RSI's first value
    rsi_history = converged_warmup(wilder_alpha(window)) + 2
    assert SPEC.history_window(params) == rsi_history + max_hold - 1
    levels = (-1.0, 0.0, 1.0) if allow_short else (0.0, 1.0)
    target = assert_lookback_shape(SPEC, real_bars, params, levels)
    close = pd.Series(real_bars.close)
    rsi = pandas_rsi(close, window)
    changed = close.diff().ne(0)
    unchanged = close.groupby(changed.cumsum()).cumcount()  # bars since the close last moved
    rsi = rsi.where(unchanged < window)  # stale: nan compares false, so no event
    never = pd.Series(False, index=rsi.index)
    expected = windowed_position(
        rsi < lower,
        rsi > exit_level,
        (rsi > upper) if allow_short else never,
        (rsi < exit_level) if allow_short else never,
        max_hold,
    )
    expected[:window] = np.nan
    np.testing.assert_array_equal(target, expected)
    assert (target == 1).any() and (target == 0).any()
    if allow_short:
        assert (target == -1).any()


def test_a_long_flat_stretch_makes_no_event_and_keeps_the_window_exact():
    """After a sell-off the close freezes far longer than the history window: the full-history
    RSI stays a ratio of vanishing averages, but no entry is drawn from it, so the runner's
    window (which starts inside the flat stretch) decides the same."""
    params = SPEC.make_params(window=5, lower=30.0, max_hold=10)
    window = SPEC.history_window(params)
    close = np.r_[np.linspace(100.0, 90.0, 50), np.full(3 * window, 90.0), 91.0, 90.5, 90.0, 89.0]
    bars = Bars.from_arrays(np.arange(1, len(close) + 1) * 60_000, close, close, close, close)
    full = SPEC.target(bars, params)
    for t in range(window, len(close)):
        assert SPEC.target(bars[t - window + 1 : t + 1], params)[-1] == full[t]
    stretch = slice(window, 50 + 3 * window)
    assert (SPEC.indicators(bars, params)["rsi"][stretch] < 1.0).all()  # "oversold" forever...
    assert (full[stretch] == 0.0).all()  # ...but stale, so flat


def test_causal_and_history_window_exact(real_bars):
    params = SPEC.make_params(window=5, max_hold=30, allow_short=True)
    assert_causal(SPEC, real_bars, params)
    assert assert_history_window_exact(SPEC, real_bars, params) > 50


def test_param_validation_says_how_to_fix():
    with pytest.raises(
        ValueError, match=r"unknown parameter 'allow_shorts'.*did you mean 'allow_short'"
    ):
        SPEC.make_params(allow_shorts=True)
    ordered = r"constraint '0 <= lower < exit_level < upper <= 100'"
    with pytest.raises(ValueError, match=ordered + r".*lower=60.0"):
        SPEC.make_params(lower=60.0)
    with pytest.raises(ValueError, match=ordered):
        SPEC.make_params(upper=40.0)
    with pytest.raises(ValueError, match="must be bool"):
        SPEC.make_params(allow_short=1)
    with pytest.raises(ValueError, match="constraint 'max_hold >= 1'"):
        SPEC.make_params(max_hold=0)
    assert SPEC.make_params(lower=20).lower == 20.0
