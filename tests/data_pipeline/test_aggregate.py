"""Trades -> candles and candle roll-ups, checked against pandas and plain-Python references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_pipeline.aggregate import CandleAggregator, aggregate_trades, resample_candles

MINUTE = 60_000


def pandas_candles(ts, price, amount, tf_ms):
    """Oracle: pandas resample, right-labelled, left-closed; empty intervals flat at the previous close."""
    frame = pd.DataFrame(
        {"price": price, "amount": amount},
        index=pd.to_datetime(np.asarray(ts), unit="ms", utc=True),
    )
    rule = pd.Timedelta(milliseconds=tf_ms)
    resampled = frame.resample(rule, label="right", closed="left", origin="epoch")
    out = pd.DataFrame(
        {
            "open": resampled["price"].first(),
            "high": resampled["price"].max(),
            "low": resampled["price"].min(),
            "close": resampled["price"].last(),
            "volume": resampled["amount"].sum(),
            "trades": resampled["price"].count(),
        }
    )
    close = out["close"].ffill()
    for column in ("open", "high", "low", "close"):
        out[column] = out[column].fillna(close)
    return out


trade_batches = st.lists(
    st.tuples(st.integers(0, 400_000), st.floats(1, 1000), st.floats(0.001, 10)),
    min_size=1,
    max_size=300,
)


@settings(max_examples=60, deadline=None)
@given(trades=trade_batches, tf=st.sampled_from([1000, 15_000, MINUTE, 5 * MINUTE]))
def test_aggregate_trades_matches_pandas(trades, tf):
    trades.sort(key=lambda t: t[0])
    ts, price, amount = (np.array(column) for column in zip(*trades))
    ts = ts.astype(np.int64) + 1_700_000_000_000
    candles = aggregate_trades(ts, price, amount, tf)
    oracle = pandas_candles(ts, price, amount, tf)
    assert candles.ts.tolist() == [int(t.value // 1_000_000) for t in oracle.index]
    for column in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(getattr(candles, column), oracle[column].to_numpy())
    np.testing.assert_allclose(candles.volume, oracle["volume"].to_numpy(), rtol=1e-12)
    np.testing.assert_array_equal(candles.trades, oracle["trades"].to_numpy())


def test_candle_ts_is_the_close_time_and_holds_trades_from_open_inclusive():
    # trades at 09:00:00.000 and 09:04:59.999 are in the bar labelled 09:05; 09:05:00.000 is not
    base = 1_704_099_600_000  # 2024-01-01T09:00Z
    ts = [base, base + 5 * MINUTE - 1, base + 5 * MINUTE]
    candles = aggregate_trades(ts, [1.0, 2.0, 3.0], [1.0, 1.0, 1.0], 5 * MINUTE)
    assert candles.ts.tolist() == [base + 5 * MINUTE, base + 10 * MINUTE]
    assert candles.volume.tolist() == [2.0, 1.0]
    assert candles.close.tolist() == [2.0, 3.0]


def test_empty_intervals_follow_the_exchange_rule():
    ts = [0, 10, 3 * MINUTE + 5]
    flat = aggregate_trades(ts, [5.0, 6.0, 7.0], [1.0, 1.0, 1.0], MINUTE, empty="flat")
    assert flat.ts.tolist() == [MINUTE, 2 * MINUTE, 3 * MINUTE, 4 * MINUTE]
    assert flat.volume.tolist() == [2.0, 0.0, 0.0, 1.0]
    for column in (flat.open, flat.high, flat.low, flat.close):
        assert column[1] == column[2] == 6.0  # flat at the previous close
    omitted = aggregate_trades(ts, [5.0, 6.0, 7.0], [1.0, 1.0, 1.0], MINUTE, empty="omit")
    assert omitted.ts.tolist() == [MINUTE, 4 * MINUTE]


def test_bad_input_is_rejected_with_a_fix():
    with pytest.raises(ValueError, match="sort the trades"):
        aggregate_trades([2, 1], [1.0, 1.0], [1.0, 1.0], MINUTE)
    with pytest.raises(ValueError, match="'flat'"):
        aggregate_trades([1], [1.0], [1.0], MINUTE, empty="zero")
    with pytest.raises(ValueError, match="positive integer"):
        aggregate_trades([1], [1.0], [1.0], 0)


@settings(max_examples=60, deadline=None)
@given(trades=trade_batches, cuts=st.lists(st.integers(0, 300), max_size=8))
def test_live_aggregator_in_batches_equals_one_pass(trades, cuts):
    trades.sort(key=lambda t: t[0])
    ts, price, amount = (np.array(column) for column in zip(*trades))
    ts = ts.astype(np.int64)
    timeframes = {"15s": 15_000, "1m": MINUTE}
    aggregator = CandleAggregator(timeframes, emit_from_ms=0)
    emitted = {name: [] for name in timeframes}
    bounds = sorted({min(c, len(ts)) for c in cuts} | {0, len(ts)})
    for start, stop in zip(bounds[:-1], bounds[1:]):
        for name, candles in aggregator.add(
            ts[start:stop], price[start:stop], amount[start:stop]
        ).items():
            emitted[name].extend(
                zip(
                    candles.ts.tolist(),
                    candles.open,
                    candles.high,
                    candles.low,
                    candles.close,
                    candles.volume,
                )
            )
    for name, tf in timeframes.items():
        whole = aggregate_trades(ts, price, amount, tf)
        expected = list(
            zip(whole.ts.tolist(), whole.open, whole.high, whole.low, whole.close, whole.volume)
        )
        assert len(emitted[name]) == len(expected) - 1  # the last candle is still open
        for got, want in zip(emitted[name], expected):
            assert got[:5] == want[:5]
            assert got[5] == pytest.approx(want[5], rel=1e-12)
        assert aggregator.open_candle(name).ts[0] == whole.ts[-1]


def test_wall_clock_closes_the_open_candle_and_elapsed_empty_intervals():
    aggregator = CandleAggregator({"1m": MINUTE}, emit_from_ms=0)
    assert aggregator.add([5_000, 20_000], [10.0, 11.0], [1.0, 2.0])["1m"].size == 0
    assert aggregator.close_until(MINUTE - 1)["1m"].size == 0  # interval not over yet
    silent = CandleAggregator({"1m": MINUTE}, emit_from_ms=0)
    silent.add([5_000], [10.0], [1.0])
    assert silent.close_until(3 * MINUTE, fill_empty=False)["1m"].ts.tolist() == [MINUTE]
    assert silent.close_until(9 * MINUTE, fill_empty=False)["1m"].size == 0
    assert silent.add([4 * MINUTE], [12.0], [1.0])["1m"].ts.tolist() == [
        2 * MINUTE,
        3 * MINUTE,
        4 * MINUTE,
    ]
    closed = aggregator.close_until(3 * MINUTE + 10)["1m"]
    assert closed.ts.tolist() == [MINUTE, 2 * MINUTE, 3 * MINUTE]
    assert closed.volume.tolist() == [3.0, 0.0, 0.0]
    assert closed.close.tolist() == [11.0, 11.0, 11.0] and closed.open.tolist() == [
        10.0,
        11.0,
        11.0,
    ]
    assert aggregator.close_until(3 * MINUTE + 20)["1m"].size == 0  # nothing emitted twice
    later = aggregator.add([4 * MINUTE + 1], [12.0], [1.0])["1m"]
    assert later.ts.tolist() == [4 * MINUTE]  # the empty 4th minute, flat at 11
    assert later.volume.tolist() == [0.0] and later.open.tolist() == [11.0]


def test_first_partly_seen_interval_is_not_emitted():
    aggregator = CandleAggregator({"1m": MINUTE})  # starts inside the first minute
    closed = aggregator.add([30_000, MINUTE + 1, 2 * MINUTE + 1], [1.0, 2.0, 3.0], [1.0, 1.0, 1.0])[
        "1m"
    ]
    assert closed.ts.tolist() == [2 * MINUTE]


def test_late_trades_of_an_emitted_candle_are_counted_not_merged():
    aggregator = CandleAggregator({"1m": MINUTE}, emit_from_ms=0)
    aggregator.add([1_000, MINUTE + 1_000], [1.0, 2.0], [1.0, 1.0])
    closed = aggregator.add([2_000], [9.0], [1.0])["1m"]
    assert closed.size == 0 and aggregator.late_trades == 1


def reference_rollup(rows, source_ms, target_ms):
    """Plain-Python reference of Binance's rule: zero-volume candles don't count for O/H/L/C."""
    groups = {}
    for ts, o, h, lo, c, v in rows:
        groups.setdefault((ts - 1) // target_ms * target_ms + target_ms, []).append(
            (ts, o, h, lo, c, v)
        )
    out = {}
    for key, members in groups.items():
        if len(members) != target_ms // source_ms:
            continue
        traded = [m for m in members if m[5] > 0]
        if traded:
            out[key] = (
                traded[0][1],
                max(m[2] for m in traded),
                min(m[3] for m in traded),
                traded[-1][4],
                sum(m[5] for m in members),
            )
        else:
            out[key] = (members[0][1],) * 4 + (0.0,)
    return out


@settings(max_examples=60, deadline=None)
@given(
    bars=st.lists(
        st.tuples(st.booleans(), st.booleans(), st.floats(1, 100), st.floats(0, 5)),
        min_size=1,
        max_size=80,
    )
)
def test_resample_matches_the_reference(bars):
    rows, previous_close, ts = [], 50.0, 0
    for present, traded, price, spread in bars:
        ts += MINUTE
        if not present:
            continue
        if traded:
            rows.append(
                (ts, price, price + spread, price - spread / 2, price + spread / 3, spread + 0.5)
            )
            previous_close = price + spread / 3
        else:
            rows.append((ts, previous_close, previous_close, previous_close, previous_close, 0.0))
    if not rows:
        return
    columns = [np.array(c) for c in zip(*rows)]
    result = resample_candles(*columns, MINUTE, 5 * MINUTE)
    expected = reference_rollup(rows, MINUTE, 5 * MINUTE)
    assert result.ts.tolist() == sorted(expected)
    for i, key in enumerate(result.ts.tolist()):
        got = (result.open[i], result.high[i], result.low[i], result.close[i])
        assert got == expected[key][:4]
        assert result.volume[i] == pytest.approx(expected[key][4], rel=1e-12)
