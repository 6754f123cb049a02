"""bollinger_breakout against a pandas formulation on real data; validation; causality;
history window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from strategy_contract_checks import (
    assert_causal,
    assert_history_window_exact,
    assert_lookback_shape,
)

from research.indicators import converged_warmup, wilder_alpha
from strategies.bollinger_breakout import bollinger_breakout as SPEC


def pandas_target(bars, window, num_std, atr_window, atr_multiplier, max_hold):
    """Groups bars by the latest entry event; within a group, trailing high = cummax of closes,
    an exit is a close below it minus k * ATR, and the position lasts until the first exit or
    ``max_hold`` bars after the entry."""
    close, high, low = (pd.Series(a) for a in (bars.close, bars.high, bars.low))
    mean = close.rolling(window).mean()
    windows = np.lib.stride_tricks.sliding_window_view(bars.close, window)
    std = pd.Series(np.r_[np.full(window - 1, np.nan), windows.std(axis=1)])  # population
    upper = mean + num_std * std
    prev = close.shift()
    true_range = pd.concat([high - low, (high - prev).abs(), (low - prev).abs()], axis=1).max(
        axis=1
    )
    atr = true_range.ewm(alpha=1 / atr_window, adjust=False, min_periods=atr_window).mean()
    entry = close > upper
    group = entry.cumsum()  # 0 before the first entry
    since = close.groupby(group).cumcount()  # bars since the group's entry
    trailing_high = close.groupby(group).cummax()
    exit_now = (close < trailing_high - atr_multiplier * atr) | atr.isna()
    exit_now &= since > 0
    exited = exit_now.astype(int).groupby(group).cummax().astype(bool)
    held = (group > 0) & ~exited & (since < max_hold)
    return held.to_numpy(dtype=float, copy=True), upper.to_numpy()


@pytest.mark.parametrize(
    "window, num_std, atr_window, atr_multiplier, max_hold",
    [(20, 2.0, 14, 3.0, 100), (10, 1.5, 5, 1.5, 40)],
)
def test_matches_pandas_on_real_data(
    real_bars, window, num_std, atr_window, atr_multiplier, max_hold
):
    params = SPEC.make_params(
        window=window,
        num_std=num_std,
        atr_window=atr_window,
        atr_multiplier=atr_multiplier,
        max_hold=max_hold,
    )
    lookback = SPEC.lookback(params)
    assert lookback == max(window, atr_window) - 1  # the bands' and the ATR's first values
    atr_history = converged_warmup(wilder_alpha(atr_window)) + 2
    assert SPEC.history_window(params) == max(window, atr_history) + max_hold - 1
    target = assert_lookback_shape(SPEC, real_bars, params)
    expected, upper = pandas_target(
        real_bars, window, num_std, atr_window, atr_multiplier, max_hold
    )
    expected[:lookback] = np.nan
    ours = SPEC.indicators(real_bars, params)["bb_upper"]
    np.testing.assert_allclose(ours, upper, rtol=1e-9)
    np.testing.assert_array_equal(target, expected)
    assert (target == 1).any() and (target == 0).any()


def test_trailing_exit_on_a_scripted_path():
    """Breakout, new high, then a close more than k * ATR below it exits at that close."""
    from research.types import Bars

    close = np.r_[np.full(200, 100.0), 103.0, 106.0, 107.0, 100.0, 100.0]
    bars = Bars.from_arrays(
        np.arange(1, len(close) + 1) * 60_000, close, close + 0.5, close - 0.5, close
    )
    params = SPEC.make_params(window=10, num_std=2.0, atr_window=2, atr_multiplier=1.0, max_hold=30)
    target = SPEC.target(bars, params)
    values = SPEC.indicators(bars, params)
    atr = values["atr"]
    assert np.isnan(target[: SPEC.lookback(params)]).all() and target[199] == 0.0
    assert target[200] == 1.0 and target[201] == 1.0 and target[202] == 1.0  # breakout, held
    assert values["trailing_stop"][202] == 107.0 - atr[202]
    assert 100.0 < 107.0 - atr[203]  # the drop to 100 is below the trailing level
    assert target[203] == 0.0 and target[204] == 0.0


def test_causal_and_history_window_exact(real_bars):
    params = SPEC.make_params(window=15, atr_window=5, atr_multiplier=2.0, max_hold=50)
    assert_causal(SPEC, real_bars, params)
    assert assert_history_window_exact(SPEC, real_bars, params) > 50


def test_param_validation_says_how_to_fix():
    with pytest.raises(
        ValueError, match=r"unknown parameter 'atr_mult'.*did you mean 'atr_multiplier'"
    ):
        SPEC.make_params(atr_mult=2.0)
    with pytest.raises(ValueError, match="constraint 'num_std > 0'"):
        SPEC.make_params(num_std=0.0)
    with pytest.raises(ValueError, match="constraint 'window >= 2'.*window=1"):
        SPEC.make_params(window=1)
    with pytest.raises(ValueError, match="must be float"):
        SPEC.make_params(num_std="2")
