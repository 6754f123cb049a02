"""Bars with read-only or strided arrays reach the kernels as the contiguous, writable arrays
they are compiled and cached for: no kernel is compiled again for them, and the results are the
very same."""

from __future__ import annotations

import numpy as np
import pandas as pd
from reference import synthetic_bars as random_walk

import research
from research.kernels.backtest import simulate_span_nb
from research.kernels.window_sums import fixed_point_sums_nb
from research.types import Bars, Costs, Stops
from strategies.registry import get_strategy

COLUMNS = ("ts", "open", "high", "low", "close", "volume")


def synthetic_bars(n: int, seed: int) -> Bars:
    ts, open_, high, low, close = random_walk(n, seed)
    return Bars(ts, open_, high, low, close, np.ones(n), 3_600_000)


def read_only_bars(bars: Bars) -> Bars:
    """The bars as a user builds them from a DataFrame (pandas' copy-on-write arrays)."""
    frame = pd.DataFrame({name: getattr(bars, name) for name in COLUMNS})
    return Bars(*(frame[name].to_numpy() for name in COLUMNS), bars.timeframe_ms)


def test_contiguous_writable_bars_are_used_as_they_are():
    bars = synthetic_bars(300, 1)
    assert bars.for_kernels() is bars
    assert bars[10:].for_kernels().close.base is bars.close  # a plain slice still shares memory


def test_read_only_and_strided_bars_are_copied_into_the_kernels_layout():
    bars = synthetic_bars(300, 1)
    read_only = read_only_bars(bars)
    assert not read_only.close.flags.writeable  # what pandas gives: the case this is about
    for odd, expected in ((read_only, bars), (bars[::2], bars[::2])):
        ready = odd.for_kernels()
        assert ready is not odd and ready.timeframe_ms == odd.timeframe_ms
        for name in COLUMNS:
            array = getattr(ready, name)
            assert array.flags.c_contiguous and array.flags.writeable, name
            assert array.dtype == getattr(odd, name).dtype
            np.testing.assert_array_equal(array, getattr(expected, name))
    assert not read_only.close.flags.writeable  # the caller's arrays are left as they were


def test_a_backtest_on_read_only_or_strided_bars_compiles_no_new_signature_and_matches():
    bars = synthetic_bars(2_000, 2)
    spec = get_strategy("sma_cross")
    settings = {"fast": 5, "slow": 20}, Costs(0.001, 2.0)
    stops = Stops(stop_loss=0.03)
    reference = research.backtest(spec, bars, *settings, stops=stops)
    strided_reference = research.backtest(spec, bars[::2].for_kernels(), *settings, stops=stops)
    known = {kernel: set(kernel.signatures) for kernel in (simulate_span_nb, fixed_point_sums_nb)}

    for odd, expected in ((read_only_bars(bars), reference), (bars[::2], strided_reference)):
        result = research.backtest(spec, odd, *settings, stops=stops)
        assert result.equity_values.tobytes() == expected.equity_values.tobytes()
        for field in expected.fill_rows.dtype.names:  # field by field: padding is not data
            assert result.fill_rows[field].tobytes() == expected.fill_rows[field].tobytes()
        pd.testing.assert_series_equal(result.stats, expected.stats)
    for kernel, signatures in known.items():
        assert set(kernel.signatures) == signatures, kernel.py_func.__name__
