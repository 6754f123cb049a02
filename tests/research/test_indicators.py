"""Indicators against pandas oracles on real market data, plus causality/window properties.

The oracles are written here in plain pandas (``rolling``/``ewm``), not derived from the
implementation: the same NaN positions and values within 1e-9 relative are required.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from market_files import market_file

from candela.core.paths import SAMPLE_DIR
from research import indicators as ind
from research.kernels.window_sums import window_sums

REAL_FILES = [
    "bittrex_ADA-BTC_1m.csv.gz",  # 26,703 bars of satoshi prices, flat runs
    "coinbase_BTC-USD_1m.csv.gz",
    "binance_ETH-USDT_4h.csv.gz",
    "bittrex_XVG-BTC_1d.csv.gz",  # 35-bar flat run
    "binance_NEO-BTC_1h.csv.gz",
]
SAMPLE_FILES = (
    sorted(p.name for p in (SAMPLE_DIR / "ohlcv").glob("*.csv*"))
    if (SAMPLE_DIR / "ohlcv").is_dir()
    else []
)


def read_frame(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    return frame[["open", "high", "low", "close", "volume"]].astype("float64")


@pytest.fixture(scope="module", params=REAL_FILES)
def real(request) -> pd.DataFrame:
    return read_frame(market_file(f"ohlcv/{request.param}"))


@pytest.fixture(
    scope="module",
    params=SAMPLE_FILES
    or [
        pytest.param(
            None, marks=pytest.mark.skip(reason="no bundled sample in data/sample/ohlcv yet")
        )
    ],
)
def sample(request) -> pd.DataFrame:
    return read_frame(SAMPLE_DIR / "ohlcv" / request.param)


def assert_matches(
    actual: np.ndarray, expected, rtol: float = 1e-9, atol: float | None = None
) -> None:
    """Same NaN positions, values within ``rtol`` relative (absolute floor ``atol``, by default
    ``rtol * 1e-6 *`` the largest magnitude, for values that cancel to about zero)."""
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.dtype == np.float64 and actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    finite = ~np.isnan(expected)
    scale = np.nanmax(np.abs(expected)) if finite.any() else 1.0
    if atol is None:
        atol = rtol * scale * 1e-6
    np.testing.assert_allclose(actual[finite], expected[finite], rtol=rtol, atol=atol)


# --------------------------------------------------------------------------- pandas oracles


def oracle_rsi(close: pd.Series, n: int) -> pd.Series:
    delta = close.diff()
    gain = delta.clip(lower=0).ewm(alpha=1 / n, adjust=False, min_periods=n).mean()
    loss = (-delta.clip(upper=0)).ewm(alpha=1 / n, adjust=False, min_periods=n).mean()
    rsi = 100 - 100 / (1 + gain / loss)
    rsi = rsi.mask((loss == 0) & (gain > 0), 100.0)
    return rsi.mask((loss == 0) & (gain == 0), 50.0)


def oracle_true_range(f: pd.DataFrame) -> pd.Series:
    prev = f.close.shift()
    parts = pd.concat([f.high - f.low, (f.high - prev).abs(), (f.low - prev).abs()], axis=1)
    return parts.max(axis=1)  # skips the NaN of the first bar: high - low


def window_moments(x: pd.Series, n: int, ddof: int) -> tuple[pd.Series, pd.Series]:
    """Per-window numpy two-pass ``(x[t] - mean, std)``, shifted by each window's first value.

    pandas' own ``rolling(n).std()`` is an online add/remove algorithm whose rounding error
    grows with the history: on satoshi-priced data (ADA-BTC, std ~1e-8 of prices ~1e-5) it is
    off by up to ~1e-7 relative, and ``x - rolling mean`` cancels catastrophically when prices
    move by a tick. So pandas pins the convention (ddof, NaN placement) at 1e-6, and this
    per-window formulation is the 1e-9 oracle. Constant windows have std 0 (as in pandas).
    """
    values = x.to_numpy()
    deviation = np.full(len(values), np.nan)
    std = np.full(len(values), np.nan)
    if len(values) >= n:
        windows = np.lib.stride_tricks.sliding_window_view(values, n)
        shifted = windows - windows[:, :1]
        spread = shifted.std(axis=1, ddof=ddof)
        spread[windows.max(axis=1) == windows.min(axis=1)] = 0.0
        std[n - 1 :] = spread
        deviation[n - 1 :] = shifted[:, -1] - shifted.mean(axis=1)
    return pd.Series(deviation, index=x.index), pd.Series(std, index=x.index)


def oracle_std(x: pd.Series, n: int, ddof: int) -> pd.Series:
    return window_moments(x, n, ddof)[1]


def check_all_indicators(f: pd.DataFrame) -> None:
    close = f.close
    for n in (1, 2, 10, 50):
        assert_matches(ind.sma(close.values, n), close.rolling(n).mean())
        assert_matches(
            ind.ema(close.values, n), close.ewm(span=n, adjust=False, min_periods=n).mean()
        )
    for n in (2, 14, 30):
        assert_matches(ind.rsi(close.values, n), oracle_rsi(close, n))
        assert_matches(
            ind.atr(f.high.values, f.low.values, close.values, n),
            oracle_true_range(f).ewm(alpha=1 / n, adjust=False, min_periods=n).mean(),
        )
    line = (
        close.ewm(span=12, adjust=False, min_periods=12).mean()
        - close.ewm(span=26, adjust=False, min_periods=26).mean()
    )
    signal = line.ewm(span=9, adjust=False, min_periods=9).mean()
    macd = ind.macd(close.values, 12, 26, 9)
    assert_matches(macd.line, line)
    assert_matches(macd.signal, signal)
    assert_matches(macd.histogram, line - signal)
    for n, k, ddof in ((20, 2.0, 0), (10, 1.5, 1)):
        mid = close.rolling(n).mean()
        std = oracle_std(close, n, ddof)
        pandas_std = close.rolling(n).std(ddof=ddof)  # pins ddof and NaN placement
        np.testing.assert_array_equal(std.isna(), pandas_std.isna())
        # pandas' online update errs by up to ~3e-8 of the price level on nearly flat windows
        np.testing.assert_allclose(std, pandas_std, rtol=1e-6, atol=1e-7 * close.abs().max())
        bands = ind.bollinger(close.values, n, k, ddof=ddof)
        assert_matches(bands.middle, mid)
        assert_matches(bands.upper, mid + k * std)
        assert_matches(bands.lower, mid - k * std)
        assert_matches(ind.rolling_std(close.values, n, ddof), std)
        deviation, _ = window_moments(close, n, ddof)
        z = (deviation / std).where(std > 0)

        # z is dimensionless and x - mean cancels: absolute 1e-9 where it is about 0
        assert_matches(ind.rolling_zscore(close.values, n, ddof), z, atol=1e-9)
    for n in (1, 5, 20):
        channel = ind.donchian(f.high.values, f.low.values, n)
        assert_matches(channel.upper, f.high.rolling(n).max(), rtol=0)
        assert_matches(channel.lower, f.low.rolling(n).min(), rtol=0)
    fast, slow = close.rolling(5).mean(), close.rolling(20).mean()
    above = (fast > slow) & (fast.shift() <= slow.shift())
    below = (fast < slow) & (fast.shift() >= slow.shift())
    np.testing.assert_array_equal(ind.crossed_above(fast.values, slow.values), above.values)
    np.testing.assert_array_equal(ind.crossed_below(fast.values, slow.values), below.values)
    assert above.any() and below.any()


def test_indicators_match_pandas_on_real_data(real):
    check_all_indicators(real)


def test_indicators_match_pandas_on_bundled_sample(sample):
    check_all_indicators(sample)


def test_ema_skips_leading_nans_like_pandas(real):
    x = real.close.copy()
    x.iloc[:7] = np.nan
    assert_matches(ind.ema(x.values, 10), x.ewm(span=10, adjust=False, min_periods=10).mean())


def test_window_indicators_are_nan_where_the_window_holds_a_nan(real):
    x = real.close.copy()
    x.iloc[[30, 31, 100]] = np.nan
    for n in (3, 20):
        assert_matches(ind.sma(x.values, n), x.rolling(n).mean())
        assert_matches(ind.rolling_std(x.values, n), oracle_std(x, n, 0))
        assert_matches(ind.donchian(x.values, x.values, n).upper, x.rolling(n).max(), rtol=0)
        assert_matches(ind.donchian(x.values, x.values, n).lower, x.rolling(n).min(), rtol=0)


def test_constant_window_gives_exact_mean_and_zero_std():
    x = np.r_[np.linspace(1.0, 2.0, 10), np.full(30, 0.1)]
    assert np.all(ind.sma(x, 20)[-11:] == 0.1)
    assert np.all(ind.rolling_std(x, 20)[-11:] == 0.0)
    assert np.all(np.isnan(ind.rolling_zscore(x, 20)[-11:]))
    assert ind.rsi(np.full(40, 3.0), 14)[-1] == 50.0


# --------------------------------------------------------------------------- exactness on windows


def test_window_indicators_on_a_window_equal_full_history_bit_for_bit(real):
    close, high, low = real.close.values, real.high.values, real.low.values
    n = 20
    full_sma, full_bands = ind.sma(close, n), ind.bollinger(close, n, 2.0)
    full_channel = ind.donchian(high, low, n)
    for t in range(n - 1, len(close), max(1, len(close) // 300)):
        window = slice(t - n + 1, t + 1)
        assert ind.sma(close[window], n)[-1] == full_sma[t]
        bands = ind.bollinger(close[window], n, 2.0)
        assert bands.upper[-1] == full_bands.upper[t] and bands.lower[-1] == full_bands.lower[t]
        channel = ind.donchian(high[window], low[window], n)
        assert channel.upper[-1] == full_channel.upper[t]
        assert channel.lower[-1] == full_channel.lower[t]


@pytest.mark.parametrize("n", [5, 26, 50])
def test_recursive_indicators_forget_their_seed_bit_for_bit(real, n):
    """After ``converged_warmup`` bars, a recursion started later gives identical floats."""
    close, high, low = real.close.values, real.high.values, real.low.values
    ema_bars = ind.converged_warmup(ind.ema_alpha(n))
    wilder_bars = ind.converged_warmup(ind.wilder_alpha(n)) + 1
    full_ema, full_rsi, full_atr = (
        ind.ema(close, n),
        ind.rsi(close, n),
        ind.atr(high, low, close, n),
    )
    checked = 0
    for t in range(wilder_bars, len(close), max(1, len(close) // 200)):
        assert ind.ema(close[t - ema_bars : t + 1], n)[-1] == full_ema[t]
        window = slice(t - wilder_bars, t + 1)
        assert ind.rsi(close[window], n)[-1] == full_rsi[t]
        assert ind.atr(high[window], low[window], close[window], n)[-1] == full_atr[t]
        checked += 1
    if len(close) > wilder_bars:
        assert checked > 0


def test_converged_warmup_formula():
    assert ind.converged_warmup(1.0) == 60
    assert ind.converged_warmup(ind.wilder_alpha(14)) == 840
    assert ind.converged_warmup(ind.ema_alpha(26)) == 810
    assert (1 - ind.ema_alpha(26)) ** ind.converged_warmup(ind.ema_alpha(26)) < math.exp(-60)


# --------------------------------------------------------------------------- hypothesis properties

prices = hnp.arrays(
    np.float64,
    st.integers(2, 120),
    elements=st.floats(0.5, 2.0, allow_nan=False, allow_infinity=False),
)


def all_outputs(x: np.ndarray, n: int) -> list[np.ndarray]:
    high, low = x * 1.01, x * 0.99
    return [
        ind.sma(x, n),
        ind.ema(x, n),
        ind.rsi(x, n),
        ind.atr(high, low, x, n),
        *ind.macd(x, n, n + 3, 4),
        *ind.bollinger(x, n),
        ind.rolling_zscore(x, n),
        *ind.donchian(high, low, n),
    ]


@settings(max_examples=60, deadline=None)
@given(prices, st.integers(1, 30), st.data())
def test_every_indicator_is_causal(x, n, data):
    """Appending later bars never changes an earlier value: f(x[:t+1])[-1] is f(x)[t]."""
    t = data.draw(st.integers(0, len(x) - 1))
    for whole, truncated in zip(all_outputs(x, n), all_outputs(x[: t + 1], n)):
        assert len(whole) == len(x)
        np.testing.assert_array_equal(truncated, whole[: t + 1])


wide_floats = st.one_of(
    st.floats(-1e200, 1e200, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, 1e-5, 1e-5 + 1e-13, 2.0**53 + 2, -1.0, 5e-324, 0.1]),
)


price_like = st.floats(1e-6, 1e5, allow_nan=False).map(lambda v: float(np.float32(v)) + v * 1e-9)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        hnp.arrays(np.float64, st.integers(1, 80), elements=wide_floats),
        hnp.arrays(np.float64, st.integers(1, 80), elements=price_like),
    ),
    st.integers(1, 25),
)
def test_window_sum_is_the_correctly_rounded_sum_of_each_window(x, n):
    """Sliding exact accumulation equals math.fsum (correct rounding) of every window, with
    the fixed-point accumulators (price-like ranges) and the limb one (exponents far apart)."""
    got = window_sums(x, n)
    assert np.isnan(got[: n - 1]).all()
    for t in range(n - 1, len(x)):
        assert got[t] == math.fsum(x[t - n + 1 : t + 1])


@settings(max_examples=60, deadline=None)
@given(prices, st.integers(1, 30))
def test_crossings_are_exclusive_and_need_a_change_of_side(x, n):
    slow = ind.sma(x, n)
    above, below = ind.crossed_above(x, slow), ind.crossed_below(x, slow)
    assert not (above & below).any()
    ok = ~np.isnan(slow)
    for t in np.flatnonzero(above):
        assert ok[t - 1] and x[t] > slow[t] and x[t - 1] <= slow[t - 1]


def reference_event_position(le, lx, se, sx, max_hold):
    """The windowed most-recent-event rule, literally, in plain Python."""
    out = []
    for t in range(len(le)):
        window = range(max(0, t - max_hold + 1), t + 1)
        entries = [(s, +1) for s in window if le[s]] + [
            (s, -1) for s in window if se[s] and not le[s]
        ]
        if not entries:
            out.append(0.0)
            continue
        s, side = max(entries, key=lambda e: (e[0], e[1]))
        exits = lx if side > 0 else sx
        out.append(0.0 if any(exits[u] for u in range(s + 1, t + 1)) else float(side))
    return out


bool_arrays = st.integers(1, 80).flatmap(
    lambda n: st.tuples(*[hnp.arrays(np.bool_, n, elements=st.booleans()) for _ in range(4)])
)


@settings(max_examples=150, deadline=None)
@given(bool_arrays, st.integers(1, 20))
def test_event_position_follows_the_windowed_rule(events, max_hold):
    le, lx, se, sx = events
    got = ind.event_position(le, lx, se, sx, max_hold=max_hold)
    assert got.tolist() == reference_event_position(le, lx, se, sx, max_hold)


def reference_trailing(entry, close, distance, max_hold):
    position, level = [], []
    for t in range(len(entry)):
        starts = [s for s in range(max(0, t - max_hold + 1), t + 1) if entry[s]]
        held = False
        if starts:
            s = starts[-1]
            held = all(close[u] >= max(close[s : u + 1]) - distance[u] for u in range(s + 1, t + 1))
        position.append(1.0 if held else 0.0)
        level.append(max(close[starts[-1] : t + 1]) - distance[t] if held else math.nan)
    return position, level


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 60).flatmap(
        lambda n: st.tuples(
            hnp.arrays(np.bool_, n, elements=st.booleans()),
            hnp.arrays(np.float64, n, elements=st.floats(1, 2)),
            hnp.arrays(np.float64, n, elements=st.floats(0, 0.5)),
        )
    ),
    st.integers(1, 20),
)
def test_trailing_exit_follows_the_windowed_rule(arrays, max_hold):
    entry, close, distance = arrays
    position, level = ind.trailing_exit_position(entry, close, distance, max_hold)
    ref_position, ref_level = reference_trailing(entry, close, distance, max_hold)
    assert position.tolist() == ref_position
    np.testing.assert_array_equal(level, np.array(ref_level))


# --------------------------------------------------------------------------- boundary errors


def test_wrappers_reject_bad_input_with_a_fix():
    x = np.arange(1.0, 30.0)
    with pytest.raises(ValueError, match="at least 1 bar"):
        ind.sma(x, 0)
    with pytest.raises(TypeError, match="int number of bars"):
        ind.ema(x, 2.5)
    with pytest.raises(TypeError, match="1-D"):
        ind.rsi(x.reshape(1, -1), 14)
    with pytest.raises(ValueError, match="swap them"):
        ind.macd(x, 26, 12)
    with pytest.raises(ValueError, match="same length"):
        ind.atr(x, x[:-1], x, 14)
    with pytest.raises(ValueError, match="ddof"):
        ind.bollinger(x, 10, 2.0, ddof=2)
    with pytest.raises(TypeError, match="numeric"):
        ind.sma(np.array(["a", "b"]), 1)
