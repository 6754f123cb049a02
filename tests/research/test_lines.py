"""Lines: what keeps and what loses the look-back and history window, and the numbers every
indicator reports, checked against the data (its first defined value) and against the full
history (a window of its history window gives the full-history value, bit for bit)."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from market_files import market_file

from research import indicators as ind
from research.lines import Line

A = Line(np.arange(1.0, 11.0), 0, 1)
B = Line(np.linspace(5.0, 1.0, 10), 4, 30)


def numbers(value):
    return (value.lookback, value.history) if isinstance(value, Line) else None


# --------------------------------------------------------------------------- the algebra


@pytest.mark.parametrize(
    "expression",
    [
        lambda: A + B,
        lambda: B * 2.0,
        lambda: 3 - B,
        lambda: A > B,
        lambda: B <= 2,
        lambda: (A > 3) & (B < 4),
        lambda: (A > 3) | (B < 4),
        lambda: ~(B > 2),
        lambda: np.sign(A - B),
        lambda: np.abs(B),
        lambda: np.maximum(A, B),
        lambda: np.isnan(B),
        lambda: np.log(B),
        lambda: np.where(A > B, A, 0.0),
        lambda: np.clip(B, 1.0, 2.0),
        lambda: np.select([A > 5, B > 2], [A, B], 0.0),
        lambda: B.astype(np.float32),
        lambda: B.copy(),
        lambda: B[:],
        lambda: np.nan_to_num(B),
        lambda: False & (B > 1),
    ],
)
def test_element_wise_operations_keep_the_largest_numbers(expression):
    assert numbers(expression()) == (4, 30)


@pytest.mark.parametrize(
    "expression",
    [
        lambda: B[1:],
        lambda: B[::-1],
        lambda: B[B > 2],
        lambda: np.roll(B, 1),
        lambda: np.concatenate([A, B]),
        lambda: np.diff(B),
        lambda: np.cumsum(B),
        lambda: B.cumsum(),
        lambda: np.maximum.accumulate(B),
        lambda: B + np.arange(10.0),
        lambda: np.where(A > 3, B, A.view(np.ndarray)),
        lambda: np.sort(B),
        lambda: np.asarray(B),
        lambda: B + [1.0] * 10,
    ],
)
def test_anything_else_gives_a_plain_array(expression):
    value = expression()
    assert type(value) is np.ndarray


def test_single_values_and_reductions_are_plain_scalars():
    for value in (B[3], B.sum(), np.mean(B), B.max(), np.nanmax(B), (A > B).any()):
        assert not isinstance(value, np.ndarray), type(value)


def test_in_place_operations_update_or_forget_the_numbers():
    x = A.copy()
    x += B
    assert numbers(x) == (4, 30)
    x += np.arange(10.0)  # a plain array went in: nothing is known any more
    assert x.history < 1
    assert type(x + A) is np.ndarray  # and neither is anything computed from it


def test_lines_pickle_with_their_numbers_and_print_them():
    again = pickle.loads(pickle.dumps(B))
    assert numbers(again) == (4, 30)
    np.testing.assert_array_equal(again, B)
    assert "lookback=4, history=30" in repr(B)


def test_a_line_needs_sensible_numbers():
    with pytest.raises(ValueError, match="lookback >= 0 and history >= 1"):
        Line(np.ones(3), -1, 1)


# --------------------------------------------------------------------------- indicator numbers


def _raw(values) -> Line:
    return Line(np.asarray(values, dtype=np.float64), 0, 1)


def all_indicators(close: Line, high: Line, low: Line, n: int) -> dict[str, Line]:
    macd = ind.macd(close, n, n + 7, 5)
    bands = ind.bollinger(close, n)
    channel = ind.donchian(high, low, n)
    return {
        "sma": ind.sma(close, n),
        "ema": ind.ema(close, n),
        "rsi": ind.rsi(close, n),
        "atr": ind.atr(high, low, close, n),
        "true_range": ind.true_range(high, low, close),
        "macd": macd.line,
        "macd_signal": macd.signal,
        "macd_histogram": macd.histogram,
        "bb_upper": bands.upper,
        "bb_lower": bands.lower,
        "rolling_std": ind.rolling_std(close, n),
        "zscore": ind.rolling_zscore(close, n),
        "donchian_upper": channel.upper,
        "donchian_lower": channel.lower,
        "shift": ind.shift(close, 3),
        # chains: an indicator of an indicator adds its own numbers
        "ema_of_sma": ind.ema(ind.sma(close, n), 4),
        "rsi_of_ema": ind.rsi(ind.ema(close, 3), n),
        "sma_of_atr": ind.sma(ind.atr(high, low, close, n), 6),
        "shifted_channel": ind.shift(channel.upper),
        "price_minus_ema": close - ind.ema(close, n),
    }


EXPECTED_LOOKBACK = {  # by the usual definitions, for raw prices
    "sma": lambda n: n - 1,
    "ema": lambda n: n - 1,
    "rsi": lambda n: n,
    "atr": lambda n: n - 1,
    "true_range": lambda n: 0,
    "macd": lambda n: n + 6,
    "macd_signal": lambda n: n + 10,
    "macd_histogram": lambda n: n + 10,
    "bb_upper": lambda n: n - 1,
    "bb_lower": lambda n: n - 1,
    "rolling_std": lambda n: n - 1,
    "zscore": lambda n: n - 1,
    "donchian_upper": lambda n: n - 1,
    "donchian_lower": lambda n: n - 1,
    "shift": lambda n: 3,
    "ema_of_sma": lambda n: n + 2,
    "rsi_of_ema": lambda n: n + 2,
    "sma_of_atr": lambda n: n + 4,
    "shifted_channel": lambda n: n,
    "price_minus_ema": lambda n: n - 1,
}


@pytest.fixture(scope="module", params=["bittrex_ADA-BTC_1m.csv.gz", "binance_ETH-USDT_4h.csv.gz"])
def real(request) -> pd.DataFrame:
    return pd.read_csv(market_file(f"ohlcv/{request.param}")).iloc[:6000]


@pytest.mark.parametrize("n", [2, 9, 30])
def test_the_lookback_is_where_the_first_value_is(real, n):
    """Every indicator's look-back is the number of ``nan`` it starts with on real prices (none
    of the price columns holds a ``nan``), as the pandas definitions give it."""
    close, high, low = _raw(real.close), _raw(real.high), _raw(real.low)
    for name, line in all_indicators(close, high, low, n).items():
        assert isinstance(line, Line), name
        first = int(np.flatnonzero(~np.isnan(np.asarray(line, dtype=float)))[0])
        assert line.lookback == first == EXPECTED_LOOKBACK[name](n), name


@pytest.mark.parametrize("n", [2, 9, 30])
def test_a_window_of_the_history_window_gives_the_full_history_value(real, n):
    """At sampled bars, every indicator computed on the last ``history`` bars only equals the
    full-history value bit for bit (``nan`` included), chains included."""
    close, high, low = _raw(real.close), _raw(real.high), _raw(real.low)
    full = all_indicators(close, high, low, n)
    plain = real[["close", "high", "low"]].to_numpy()
    rng = np.random.default_rng(n)
    for t in rng.integers(0, len(real), 40):
        for name, line in full.items():
            start = max(0, t - line.history + 1)
            window = [_raw(plain[start : t + 1, column]) for column in range(3)]
            value = all_indicators(*window, n)[name][-1]
            assert value == line[t] or (np.isnan(value) and np.isnan(line[t])), (name, t)


def test_window_indicators_need_their_whole_history_window(real):
    """One bar less than the history window and an exact window indicator is not defined yet."""
    close, high, low = _raw(real.close), _raw(real.high), _raw(real.low)
    for name in ("sma", "bb_upper", "donchian_upper", "rolling_std", "shifted_channel"):
        line = all_indicators(close, high, low, 12)[name]
        short = [
            _raw(real[column].to_numpy()[100 - line.history + 2 : 101])
            for column in ("close", "high", "low")
        ]
        assert np.isnan(all_indicators(*short, 12)[name][-1]), name


prices = hnp.arrays(
    np.float64,
    st.integers(0, 80),
    elements=st.floats(0.5, 2.0, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=60, deadline=None)
@given(prices, st.integers(1, 25))
def test_the_numbers_do_not_depend_on_the_data(x, n):
    """Zero bars give the same numbers as any bars: that is how a strategy reads them."""
    empty = _raw(x[:0])
    lines = all_indicators(_raw(x), _raw(x * 1.01), _raw(x * 0.99), n)
    for name, line in all_indicators(empty, empty, empty, n).items():
        assert len(line) == 0 and numbers(line) == numbers(lines[name]), name


def test_plain_inputs_give_plain_results():
    x = np.linspace(1.0, 2.0, 50)
    assert type(ind.sma(x, 5)) is np.ndarray and type(ind.macd(x).signal) is np.ndarray
    assert type(ind.sma(_raw(x)[1:], 5)) is np.ndarray  # a slice is plain
    mixed = ind.donchian(_raw(x), x, 5)  # one input of unknown history
    assert type(mixed.upper) is np.ndarray


# --------------------------------------------------------------------------- @indicator


@ind.indicator(lookback=lambda values, n: n - 1)
def rolling_median(values, n):
    out = np.full(len(values), np.nan)
    if len(values) >= n:
        out[n - 1 :] = np.median(np.lib.stride_tricks.sliding_window_view(values, n), axis=1)
    return out


@ind.indicator(lookback=1, history=5)
def two_outputs(values):
    assert type(values) is np.ndarray  # the function receives plain arrays
    change = np.r_[np.nan, np.diff(values)]
    return change, -change


def test_an_indicator_of_your_own_reports_its_declared_numbers(real):
    close = _raw(real.close)
    median = rolling_median(close, 7)
    assert numbers(median) == (6, 7)
    expected = real.close.rolling(7).median().to_numpy()
    np.testing.assert_array_equal(median, expected)
    assert numbers(rolling_median(ind.ema(close, 5), 7)) == (4 + 6, ind.ema(close, 5).history + 6)
    up, down = two_outputs(close)
    assert numbers(up) == numbers(down) == (1, 5)
    assert type(rolling_median(np.asarray(close), 7)) is np.ndarray  # plain in, plain out


def test_declared_numbers_must_be_bars():
    @ind.indicator(lookback=lambda values, n: -n)
    def broken(values, n):
        return values

    with pytest.raises(ValueError, match="lookback= of broken must give an int of at least 0"):
        broken(_raw(np.ones(5)), 3)
