"""donchian_breakout against a pandas formulation on real data; validation; causality;
history window."""

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

from strategies.donchian_breakout import donchian_breakout as SPEC


@pytest.mark.parametrize("allow_short", [False, True])
@pytest.mark.parametrize(
    "entry_window, exit_window, max_hold", [(20, 10, 100), (55, 20, 300), (5, 5, 7)]
)
def test_matches_pandas_on_real_data(real_bars, entry_window, exit_window, max_hold, allow_short):
    params = SPEC.make_params(
        entry_window=entry_window,
        exit_window=exit_window,
        max_hold=max_hold,
        allow_short=allow_short,
    )
    lookback = SPEC.lookback(params)
    assert lookback == entry_window  # the channel of the bars before: one more bar
    assert SPEC.history_window(params) == entry_window + 1 + max_hold - 1
    levels = (-1.0, 0.0, 1.0) if allow_short else (0.0, 1.0)
    target = assert_lookback_shape(SPEC, real_bars, params, levels)
    close = pd.Series(real_bars.close)
    high, low = pd.Series(real_bars.high), pd.Series(real_bars.low)
    entry_high = high.rolling(entry_window).max().shift()  # channel of the bars before t
    entry_low = low.rolling(entry_window).min().shift()
    exit_high = high.rolling(exit_window).max().shift()
    exit_low = low.rolling(exit_window).min().shift()
    never = pd.Series(False, index=close.index)
    expected = windowed_position(
        close > entry_high,
        close < exit_low,
        (close < entry_low) if allow_short else never,
        (close > exit_high) if allow_short else never,
        max_hold,
    )
    expected[:lookback] = np.nan
    np.testing.assert_array_equal(target, expected)
    assert (target == 1).any() and (target == 0).any()
    if allow_short:
        assert (target == -1).any()


def test_current_bar_can_break_the_channel():
    """A close above every earlier high enters at once (the channel excludes bar t)."""
    from research.types import Bars

    close = np.r_[np.full(30, 10.0), 11.0, 11.0]
    bars = Bars.from_arrays(np.arange(1, 33) * 60_000, close, close, close, close)
    params = SPEC.make_params(entry_window=5, exit_window=3, max_hold=10)
    target = SPEC.target(bars, params)
    assert target[29] == 0.0 and target[30] == 1.0 and target[31] == 1.0


def test_causal_and_history_window_exact(real_bars):
    params = SPEC.make_params(entry_window=15, exit_window=8, max_hold=60, allow_short=True)
    assert_causal(SPEC, real_bars, params)
    assert assert_history_window_exact(SPEC, real_bars, params) > 50


def test_param_validation_says_how_to_fix():
    with pytest.raises(
        ValueError, match=r"unknown parameter 'entry_windw'.*did you mean 'entry_window'"
    ):
        SPEC.make_params(entry_windw=20)
    with pytest.raises(
        ValueError,
        match=r"constraint '1 <= exit_window <= entry_window'.*"
        r"exit_window=30, entry_window=20",
    ):
        SPEC.make_params(exit_window=30)
    with pytest.raises(ValueError, match="must be int"):
        SPEC.make_params(entry_window="20")
