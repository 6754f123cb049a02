"""ema_cross against a pandas formulation on real data; validation; causality; warm-up."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from strategy_contract_checks import assert_causal, assert_warmup_shape, assert_warmup_window_exact

from strategies.ema_cross import SPEC


@pytest.mark.parametrize("fast, slow", [(12, 26), (5, 8), (20, 60)])
def test_matches_pandas_on_real_data(real_bars, fast, slow):
    """sign(ewm(fast) - ewm(slow)) with pandas ``ewm(span, adjust=False)``, nan in warm-up.
    pandas normalises each step by ``(1 - alpha) + alpha``, so at near-ties (EMAs within a few
    ulps) the two may round either way; those bars are excluded and must be rare."""
    params = SPEC.make_params(fast=fast, slow=slow)
    warmup = SPEC.warmup(params)
    assert warmup == int(np.ceil(30 * (slow + 1)))
    if len(real_bars) <= warmup + 100:  # too short to compare: it must at least stay flat
        assert np.isnan(SPEC.target(real_bars, params)[:warmup]).all()
        return
    target = assert_warmup_shape(SPEC, real_bars, params, levels=(-1.0, 0.0, 1.0))
    close = pd.Series(real_bars.close)
    gap = (close.ewm(span=fast, adjust=False).mean() - close.ewm(span=slow, adjust=False).mean())
    expected = np.sign(gap.to_numpy())
    expected[:warmup] = np.nan
    near_tie = (gap.abs() <= 8 * np.spacing(close.abs())).to_numpy()
    np.testing.assert_array_equal(target[~near_tie], expected[~near_tie])
    assert near_tie.mean() < 0.01
    assert (target == 1).any() and (target == -1).any()


def test_causal_and_warmup_window_exact(real_bars):
    params = SPEC.make_params(fast=5, slow=20)
    assert_causal(SPEC, real_bars, params)
    if len(real_bars) > SPEC.warmup(params) + 100:
        assert assert_warmup_window_exact(SPEC, real_bars, params) > 50


def test_param_validation_says_how_to_fix():
    with pytest.raises(ValueError, match=r"unknown parameter 'slwo'.*did you mean 'slow'"):
        SPEC.make_params(slwo=30)
    with pytest.raises(ValueError, match=r"fast \(30\) must be smaller than slow \(26\): swap them"):
        SPEC.make_params(fast=30)
    with pytest.raises(ValueError, match="must be int"):
        SPEC.make_params(slow=2.5)
