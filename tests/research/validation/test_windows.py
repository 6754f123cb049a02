"""Walk-forward windows: properties over bar counts, and calendar windows on real gappy bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from market_files import read_market_bars

from research.validation.windows import walk_forward_windows


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(2, 3_000),
    train=st.integers(1, 2_000),
    test=st.integers(1, 800),
    anchored=st.booleans(),
)
def test_bar_windows_tile_everything_after_the_first_training_window(n, train, test, anchored):
    ts = np.arange(n, dtype=np.int64) * 60_000
    if train >= n:
        with pytest.raises(ValueError, match="no bar is left to test on"):
            walk_forward_windows(ts, train, test, anchored=anchored)
        return
    windows = walk_forward_windows(ts, train, test, anchored=anchored)
    assert windows[0].test_start == train
    assert [w.test_start for w in windows[1:]] == [w.test_stop for w in windows[:-1]]
    assert windows[-1].test_stop == n
    for w in windows:
        assert w.train_stop == w.test_start
        assert 0 < w.test_stop - w.test_start <= test
        if anchored:
            assert w.train_start == 0
        else:
            assert w.train_stop - w.train_start == train
    assert all(w.test_stop - w.test_start == test for w in windows[:-1])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(20, 3_000), train=st.integers(1, 1_000), windows=st.integers(1, 15))
def test_n_windows_split_the_rest_evenly(n, train, windows):
    ts = np.arange(n, dtype=np.int64)
    if train >= n or n - train < windows:
        with pytest.raises(ValueError):
            walk_forward_windows(ts, train, n_windows=windows)
        return
    result = walk_forward_windows(ts, train, n_windows=windows)
    sizes = [w.test_stop - w.test_start for w in result]
    assert len(result) == windows and sum(sizes) == n - train and max(sizes) - min(sizes) <= 1


def test_calendar_windows_on_gappy_real_bars():
    """Bittrex leaves out 5m intervals without trades: a 3-day window holds fewer than 864 bars
    but exactly the bars closing within its 3 days."""
    bars = read_market_bars("bittrex_XRP-BTC_5m.csv.gz")
    assert (np.diff(bars.ts) > bars.timeframe_ms).any()  # the data has gaps
    windows = walk_forward_windows(bars.ts, "6D", "3D")
    day = 86_400_000
    first = windows[0]
    assert bars.ts[first.test_start] >= bars.ts[0] + 6 * day > bars.ts[first.test_start - 1]
    for w in windows:
        span = bars.ts[w.test_start : w.test_stop]
        assert span[-1] - span[0] < 3 * day
        assert bars.ts[w.train_start] >= bars.ts[w.test_start] - 6 * day
        assert w.train_start == 0 or bars.ts[w.train_start - 1] < bars.ts[w.test_start] - 6 * day
    assert windows[-1].test_stop == len(bars)
    assert sum(w.test_stop - w.test_start for w in windows) == len(bars) - first.test_start
    assert any(w.test_stop - w.test_start < 3 * 288 for w in windows[:-1])  # gaps: fewer bars


@pytest.mark.parametrize(
    "train, test, n_windows, message",
    [
        (100, None, None, "give the test window's length"),
        (100, 10, 5, "not both"),
        (100, "1D", None, "both be numbers of bars or both durations"),
        ("ninety days", "1D", None, "neither a number of bars nor a duration"),
        ("400D", "1D", None, "no bar is left to test on; use a shorter train window"),
        (0, 10, None, "positive number of bars"),
    ],
)
def test_bad_windows_say_what_to_change(train, test, n_windows, message):
    ts = (np.arange(500, dtype=np.int64) * 3_600_000) + pd.Timestamp("2024-01-01").value // 10**6
    with pytest.raises(ValueError, match=message):
        walk_forward_windows(ts, train, test, n_windows=n_windows)
