"""Candle validation: every reason, first-reason-wins, and a plain-Python reference loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from market_files import market_file

from data_pipeline.validation import REASONS, validate_candles

MINUTE = 60_000


def reference(ts, o, h, l, c, v, timeframe_ms, after_ts=None):  # noqa: E741
    """Row by row, exactly as docs/architecture.md §2 and the module table say."""
    verdicts = []
    last = after_ts
    seen = set()
    for row in range(len(ts)):
        fields = (o[row], h[row], l[row], c[row], v[row])
        if not all(math.isfinite(x) for x in fields):
            reason = "nan"
        elif min(o[row], h[row], l[row], c[row]) <= 0:
            reason = "non_positive_price"
        elif h[row] < max(o[row], c[row]):
            reason = "high_below_open_close"
        elif l[row] > min(o[row], c[row]):
            reason = "low_above_open_close"
        elif h[row] < l[row]:
            reason = "high_below_low"
        elif v[row] < 0:
            reason = "negative_volume"
        elif ts[row] % timeframe_ms:
            reason = "misaligned_ts"
        elif ts[row] in seen:
            reason = "duplicate_ts"
        elif last is not None and ts[row] <= last:
            reason = "out_of_order_ts"
        else:
            reason = None
            seen.add(ts[row])
            last = ts[row]
        verdicts.append(reason)
    return verdicts


def check(rows, timeframe_ms=MINUTE, after_ts=None):
    ts, o, h, l, c, v = (np.array(column) for column in zip(*rows))  # noqa: E741
    return validate_candles(ts.astype(np.int64), o, h, l, c, v, timeframe_ms, after_ts=after_ts)


GOOD = (1.0, 2.0, 0.5, 1.5, 10.0)


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ((math.nan, 2.0, 0.5, 1.5, 1.0), "nan"),
        ((1.0, 2.0, 0.5, 1.5, math.inf), "nan"),
        ((1.0, 2.0, 0.5, 1.5, math.nan), "nan"),
        ((0.0, 2.0, 0.5, 1.5, 1.0), "non_positive_price"),
        ((1.0, 2.0, -0.5, 1.5, 1.0), "non_positive_price"),
        ((1.0, 1.2, 0.5, 1.5, 1.0), "high_below_open_close"),
        ((1.0, 2.0, 1.2, 1.5, 1.0), "low_above_open_close"),
        ((1.0, 2.0, 0.5, 1.5, -1.0), "negative_volume"),
        # several faults: the first in the documented order wins
        ((math.nan, 0.0, 5.0, 1.0, -1.0), "nan"),
        ((0.0, 0.5, 5.0, 1.0, -1.0), "non_positive_price"),
        ((1.0, 0.9, 5.0, 1.0, -1.0), "high_below_open_close"),
    ],
)
def test_each_row_fault_has_its_reason(values, reason):
    result = check([(MINUTE, *GOOD), (2 * MINUTE, *values), (3 * MINUTE, *GOOD)])
    assert result.valid.tolist() == [True, False, True]
    assert result.rejected == [(1, reason)]
    assert result.counts == {reason: 1}


def test_zero_volume_is_valid_and_flat_bar_is_valid():
    result = check([(MINUTE, 1.0, 1.0, 1.0, 1.0, 0.0)])
    assert result.valid.tolist() == [True]
    assert result.rejected == [] and result.counts == {}


def test_timestamp_faults():
    rows = [
        (2 * MINUTE, *GOOD),
        (2 * MINUTE + 1, *GOOD),  # misaligned
        (2 * MINUTE, *GOOD),  # duplicate of row 0
        (MINUTE, *GOOD),  # before row 0
        (3 * MINUTE, *GOOD),
    ]
    result = check(rows)
    assert result.rejected == [(1, "misaligned_ts"), (2, "duplicate_ts"), (3, "out_of_order_ts")]
    assert result.counts == {"misaligned_ts": 1, "duplicate_ts": 1, "out_of_order_ts": 1}
    assert result.accepted == 2 and result.rejected_total == 3


def test_rejected_rows_do_not_block_later_rows():
    # row 1 is bad (high below close) with a large ts; row 2 must still be accepted
    rows = [(MINUTE, *GOOD), (9 * MINUTE, 1.0, 1.0, 0.5, 1.5, 1.0), (2 * MINUTE, *GOOD)]
    assert check(rows).valid.tolist() == [True, False, True]


def test_after_ts_rejects_everything_up_to_it():
    rows = [(MINUTE, *GOOD), (2 * MINUTE, *GOOD), (3 * MINUTE, *GOOD)]
    result = check(rows, after_ts=2 * MINUTE)
    assert result.valid.tolist() == [False, False, True]
    assert result.counts == {"out_of_order_ts": 2}


def test_empty_input():
    empty = np.array([], dtype=np.int64)
    result = validate_candles(empty, [], [], [], [], [], MINUTE)
    assert result.valid.shape == (0,) and result.rejected == [] and result.counts == {}


def test_bad_arguments_raise_with_a_fix():
    with pytest.raises(TypeError, match="int64"):
        validate_candles(np.array([60000.0]), [1.0], [1.0], [1.0], [1.0], [1.0], MINUTE)
    with pytest.raises(ValueError, match="align"):
        validate_candles(np.array([60000]), [1.0, 2.0], [1.0], [1.0], [1.0], [1.0], MINUTE)
    with pytest.raises(ValueError, match="timeframe_ms"):
        validate_candles(np.array([60000]), [1.0], [1.0], [1.0], [1.0], [1.0], 0)


def test_real_file_rows_are_all_accepted():
    import pandas as pd

    frame = pd.read_csv(market_file("ohlcv/bittrex_ADA-BTC_1m.csv.gz"))
    ts = frame["open_time_ms"].to_numpy() + MINUTE
    result = validate_candles(
        ts, *(frame[name].to_numpy() for name in ("open", "high", "low", "close", "volume")), MINUTE
    )
    assert result.accepted == len(frame)


prices = st.sampled_from([math.nan, -1.0, 0.0, 0.5, 1.0, 1.5, 2.0, math.inf])
volumes = st.sampled_from([math.nan, -1.0, 0.0, 3.0])
stamps = st.integers(min_value=0, max_value=12).map(
    lambda k: k * MINUTE // 2
)  # half are misaligned
rows_strategy = st.lists(st.tuples(stamps, prices, prices, prices, prices, volumes), max_size=40)


@settings(max_examples=300, deadline=None)
@given(rows=rows_strategy, after=st.one_of(st.none(), st.integers(0, 6).map(lambda k: k * MINUTE)))
def test_matches_reference_loop(rows, after):
    if not rows:
        return
    result = check(rows, after_ts=after)
    expected = reference(*(list(column) for column in zip(*rows)), MINUTE, after)
    assert result.rejected == [(row, reason) for row, reason in enumerate(expected) if reason]
    assert result.valid.tolist() == [reason is None for reason in expected]
    assert set(result.counts) <= set(REASONS)
    assert sum(result.counts.values()) == len(result.rejected)
    accepted_ts = np.array([row[0] for row in rows])[result.valid]
    assert (np.diff(accepted_ts) > 0).all()
