"""Missing-bar ranges and range subtraction against a set-based reference."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from data_pipeline.gaps import missing_ranges, subtract_ranges

TF = 60_000


def as_set(ranges):
    return {ts for first, last in ranges for ts in range(first, last + TF, TF)}


def is_maximal(ranges):
    ordered = sorted(ranges)
    return all(b[0] > a[1] + TF for a, b in zip(ordered, ordered[1:]))


@settings(max_examples=200, deadline=None)
@given(
    present=st.sets(st.integers(0, 60)), window=st.tuples(st.integers(0, 60), st.integers(0, 60))
)
def test_missing_ranges_are_exactly_the_absent_grid_points(present, window):
    first, last = min(window) * TF, max(window) * TF
    stored = np.array(sorted(p * TF for p in present), dtype=np.int64)
    ranges = missing_ranges(stored, first, last, TF)
    expected = {ts for ts in range(first, last + TF, TF)} - {int(s) for s in stored}
    assert as_set(ranges) == expected
    assert is_maximal(ranges)
    assert all(first <= a <= b <= last for a, b in ranges)


@settings(max_examples=200, deadline=None)
@given(
    base=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 10)), max_size=4),
    cut=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 10)), max_size=4),
)
def test_subtract_ranges_is_set_difference(base, cut):
    def to_ranges(items):
        return [(a * TF, (a + n) * TF) for a, n in items]

    base_ranges = missing_ranges(
        np.array(sorted(set(range(0, 60 * TF, TF)) - as_set(to_ranges(base))), dtype=np.int64),
        0,
        59 * TF,
        TF,
    )
    result = subtract_ranges(base_ranges, to_ranges(cut), TF)
    assert as_set(result) == as_set(base_ranges) - as_set(to_ranges(cut))
