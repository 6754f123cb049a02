"""macd_rsi against a pandas formulation on real data; validation; causality; history window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from strategy_contract_checks import (
    assert_causal,
    assert_history_window_exact,
    assert_lookback_shape,
)
from test_rsi_reversion import pandas_rsi

from research.indicators import converged_warmup, ema_alpha, wilder_alpha
from strategies.macd_rsi import macd_rsi as SPEC


def pandas_macd(close: pd.Series, fast: int, slow: int, signal: int):
    line = (
        close.ewm(span=fast, adjust=False, min_periods=fast).mean()
        - close.ewm(span=slow, adjust=False, min_periods=slow).mean()
    )
    return line, line.ewm(span=signal, adjust=False, min_periods=signal).mean()


@pytest.mark.parametrize(
    "fast, slow, signal, rsi_window, ceiling", [(12, 26, 9, 14, 70.0), (5, 20, 4, 6, 60.0)]
)
def test_matches_pandas_on_real_data(real_bars, fast, slow, signal, rsi_window, ceiling):
    """Long while line > signal and rsi < ceiling. pandas rounds each EMA step differently
    (it normalises by ``(1 - alpha) + alpha``), so bars where the line is within a few ulps of
    its signal line are excluded and must be rare."""
    params = SPEC.make_params(
        fast=fast, slow=slow, signal=signal, rsi_window=rsi_window, ceiling=ceiling
    )
    lookback = max(slow + signal - 2, rsi_window)  # the signal line's and the RSI's first values
    assert SPEC.lookback(params) == lookback
    macd_history = converged_warmup(ema_alpha(slow)) + 1 + converged_warmup(ema_alpha(signal))
    rsi_history = converged_warmup(wilder_alpha(rsi_window)) + 2
    assert SPEC.history_window(params) == max(macd_history, rsi_history)
    target = assert_lookback_shape(SPEC, real_bars, params)
    close = pd.Series(real_bars.close)
    line, signal_line = pandas_macd(close, fast, slow, signal)
    rsi = pandas_rsi(close, rsi_window)
    expected = ((line > signal_line) & (rsi < ceiling)).to_numpy(dtype=float)
    expected[:lookback] = np.nan
    near_tie = ((line - signal_line).abs() <= 16 * np.spacing(close.abs())) | (
        (rsi - ceiling).abs() < 1e-9
    )
    near_tie = near_tie.to_numpy()
    np.testing.assert_array_equal(target[~near_tie], expected[~near_tie])
    assert near_tie.mean() < 0.01
    assert (target == 1).any() and (target == 0).any()
    values = SPEC.indicators(real_bars, params)
    np.testing.assert_allclose(values["macd"], line, rtol=1e-9, atol=1e-12 * close.abs().max())
    np.testing.assert_allclose(values["rsi"], rsi, rtol=1e-9, atol=1e-9)


def test_causal_and_history_window_exact(real_bars):
    params = SPEC.make_params(fast=5, slow=20, signal=4, rsi_window=6)
    assert_causal(SPEC, real_bars, params)
    assert assert_history_window_exact(SPEC, real_bars, params) > 50


def test_param_validation_says_how_to_fix():
    with pytest.raises(ValueError, match=r"did you mean 'signal'"):
        SPEC.make_params(signl=5)
    with pytest.raises(ValueError, match=r"constraint '1 <= fast < slow'.*fast=30, slow=26"):
        SPEC.make_params(fast=30)
    with pytest.raises(ValueError, match=r"constraint '0 < ceiling <= 100'.*ceiling=120.0"):
        SPEC.make_params(ceiling=120)
