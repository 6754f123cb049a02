"""ema_cross against a pandas formulation on real data; validation; causality; history window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from strategy_contract_checks import (
    assert_causal,
    assert_history_window_exact,
    assert_lookback_shape,
)

from research.indicators import converged_warmup, ema_alpha
from strategies.ema_cross import ema_cross as SPEC


@pytest.mark.parametrize("fast, slow", [(12, 26), (5, 8), (20, 60)])
def test_matches_pandas_on_real_data(real_bars, fast, slow):
    """sign(ewm(fast) - ewm(slow)) with pandas ``ewm(span, adjust=False, min_periods=span)``:
    nan before the slow EMA's first value (bar slow - 1). pandas normalises each step by
    ``(1 - alpha) + alpha``, so at near-ties (EMAs within a few ulps) the two may round either
    way; those bars are excluded and must be rare."""
    params = SPEC.make_params(fast=fast, slow=slow)
    assert SPEC.lookback(params) == slow - 1
    assert SPEC.history_window(params) == converged_warmup(ema_alpha(slow)) + 1
    target = assert_lookback_shape(SPEC, real_bars, params, levels=(-1.0, 0.0, 1.0))
    close = pd.Series(real_bars.close)
    gap = (
        close.ewm(span=fast, adjust=False, min_periods=fast).mean()
        - close.ewm(span=slow, adjust=False, min_periods=slow).mean()
    )
    expected = np.sign(gap.to_numpy())
    near_tie = (gap.abs() <= 8 * np.spacing(close.abs())).to_numpy()
    np.testing.assert_array_equal(target[~near_tie], expected[~near_tie])
    assert near_tie.mean() < 0.01
    assert (target == 1).any() and (target == -1).any()


def test_causal_and_history_window_exact(real_bars):
    params = SPEC.make_params(fast=5, slow=20)
    assert_causal(SPEC, real_bars, params)
    assert assert_history_window_exact(SPEC, real_bars, params) > 50


def test_param_validation_says_how_to_fix():
    with pytest.raises(ValueError, match=r"unknown parameter 'slwo'.*did you mean 'slow'"):
        SPEC.make_params(slwo=30)
    with pytest.raises(ValueError, match=r"constraint '1 <= fast < slow'.*fast=30, slow=26"):
        SPEC.make_params(fast=30)
    with pytest.raises(ValueError, match="must be int"):
        SPEC.make_params(slow=2.5)
