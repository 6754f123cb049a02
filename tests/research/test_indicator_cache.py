"""The scoped indicator memo (``research.indicators.indicator_cache``) that sweeps rely on.

Inside a scope a wrapper called again on the same input array object returns the value it
computed first (bit for bit a fresh result) as a read-only array; outside a scope, or on another
array object, it computes afresh; the memo keeps at most ``max_bytes``.
"""

from __future__ import annotations

import numpy as np
import pytest

from research.indicators import bollinger, ema, indicator_cache, sma

CLOSE = 100.0 + np.cumsum(np.random.default_rng(7).standard_normal(5_000))


def test_a_repeated_call_in_a_scope_returns_the_first_result_read_only():
    fresh = sma(CLOSE, 20)
    with indicator_cache() as memo:
        first = sma(CLOSE, 20)
        again = sma(CLOSE, 20)
        other_window = sma(CLOSE, 21)
    assert again is first and memo.hits == 1 and memo.misses == 2
    np.testing.assert_array_equal(first, fresh)
    assert not first.flags.writeable and not other_window.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        first[0] = 1.0
    # outside a scope: a fresh, writable array every time
    outside = sma(CLOSE, 20)
    assert outside is not first and outside.flags.writeable
    np.testing.assert_array_equal(outside, fresh)


def test_another_array_object_or_another_indicator_is_a_miss():
    with indicator_cache() as memo:
        sma(CLOSE, 20)
        sma(CLOSE.copy(), 20)  # equal values, another object: not assumed equal
        ema(CLOSE, 20)  # same input and window, another indicator
    assert memo.hits == 0 and memo.misses == 3


def test_tuple_results_are_remembered_and_read_only_as_a_whole():
    with indicator_cache() as memo:
        bands = bollinger(CLOSE, 20, 2.0)
        again = bollinger(CLOSE, 20, 2.0)
    assert again is bands and memo.hits == 1
    assert not any(part.flags.writeable for part in bands)
    np.testing.assert_array_equal(bands.upper, bollinger(CLOSE, 20, 2.0).upper)


def test_the_memo_keeps_at_most_max_bytes_dropping_the_least_recently_used():
    one = CLOSE.nbytes
    with indicator_cache(max_bytes=2 * one) as memo:
        a = sma(CLOSE, 10)
        sma(CLOSE, 11)
        assert sma(CLOSE, 10) is a  # hit: 10 is now the most recently used
        sma(CLOSE, 12)  # evicts 11
        assert memo.nbytes <= 2 * one and len(memo.entries) == 2
        assert sma(CLOSE, 10) is a
        hits = memo.hits
        sma(CLOSE, 11)  # recomputed
        assert memo.hits == hits
