"""The exact moving sums behind ``sma`` (:mod:`research.kernels.window_sums`), bit for bit
against a reference.

The reference is written here from the documented semantics, not from the implementation: a
window's sum is the correctly rounded sum of its values (``math.fsum``, or exact fractions
where fsum overflows midway), ``nan`` if the window holds an inf or a nan; the SMA is that sum
over ``n``, except that a window of ``n`` equal values gives that value. The kernels pick an
accumulator per block of windows from the values' binary exponents (one int64 per window, two,
or base-2**32 limbs); the data below is chosen to take each of them, and long series cross
several blocks.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from research import indicators as ind
from research.kernels import window_sums as ws


def exact_sum(values: np.ndarray) -> float:
    """The correctly rounded sum of finite floats (``+0.0`` when it is zero)."""
    try:
        return math.fsum(values) + 0.0
    except OverflowError:  # fsum's partial sums overflowed: add exactly instead
        total = sum(map(Fraction, values.tolist()), Fraction(0))
        try:
            return float(total)
        except OverflowError:
            return math.inf if total > 0 else -math.inf


def reference_window_sums(x: np.ndarray, n: int, at=None) -> np.ndarray:
    out = np.full(len(x), np.nan)
    for t in range(n - 1, len(x)) if at is None else at:
        window = x[t - n + 1 : t + 1]
        if np.isfinite(window).all():
            out[t] = exact_sum(window)
    return out


def reference_sma(x: np.ndarray, n: int, at=None) -> np.ndarray:
    out = reference_window_sums(x, n, at) / n
    for t in range(n - 1, len(x)) if at is None else at:
        window = x[t - n + 1 : t + 1]
        if not np.isnan(window[0]) and (window[1:] == window[:-1]).all():
            out[t] = x[t]
    return out


def assert_same_bits(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal as IEEE-754 bit patterns (``-0.0`` is not ``0.0``), any nan matching any nan."""
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    kept = ~np.isnan(expected)
    np.testing.assert_array_equal(actual[kept].view(np.int64), expected[kept].view(np.int64))


def check_against_reference(x: np.ndarray, n: int, at=None) -> None:
    x = np.ascontiguousarray(x, dtype=np.float64)
    sums, means = ws.window_sums(x, n), ind.sma(x, n)
    if at is None:
        assert_same_bits(sums, reference_window_sums(x, n))
        assert_same_bits(means, reference_sma(x, n))
    else:
        at = np.asarray(at)
        assert_same_bits(sums[at], reference_window_sums(x, n, at)[at])
        assert_same_bits(means[at], reference_sma(x, n, at)[at])
    assert np.isnan(sums[: n - 1]).all() and np.isnan(means[: n - 1]).all()


# --------------------------------------------------------------------------- hypothesis

special = st.sampled_from(
    [
        math.nan,
        math.inf,
        -math.inf,
        0.0,
        -0.0,
        5e-324,
        -2.5e-310,
        1.7976931348623157e308,
        0.1,
        1e-5 + 1e-13,
        2.0**53 + 2,
    ]
)
value_kinds = [
    st.floats(100.0, 1600.0),  # prices: one word, or two for long windows
    st.integers(900_000, 900_400).map(lambda c: c / 100),  # cent ticks: flat runs, ties
    st.floats(-1e3, 1e3, allow_subnormal=True),  # signed, with values near zero
    st.floats(-1e300, 1e300),  # exponents far apart: limbs
    st.floats(-1e-300, 1e-300, allow_subnormal=True),  # tiny and subnormal values
    special,
]


@st.composite
def series_with_runs(draw) -> np.ndarray:
    """Values of one or two kinds, each repeated 1 to 40 times (constant windows)."""
    kinds = draw(st.lists(st.sampled_from(value_kinds), min_size=1, max_size=2))
    runs = draw(st.lists(st.tuples(st.one_of(kinds), st.integers(1, 40)), min_size=1, max_size=12))
    return np.array([value for value, repeat in runs for _ in range(repeat)], dtype=np.float64)


@settings(max_examples=400, deadline=None)
@given(series_with_runs(), st.integers(1, 130))
def test_window_sums_and_sma_equal_the_exact_reference_bit_for_bit(x, n):
    check_against_reference(x, n)


# --------------------------------------------------------------------------- each accumulator

RNG_SEED = 20240601


def price_walk(size: int, start: float, end: float, seed: int = RNG_SEED) -> np.ndarray:
    """A noisy geometric path from ``start`` to ``end`` rounded to cents, with flat stretches."""
    rng = np.random.default_rng(seed)
    path = np.geomspace(start, end, size) * np.exp(rng.normal(0.0, 0.002, size))
    path = np.round(path, 2)
    flat = rng.integers(0, size - 60, 20)
    for begin in flat:
        path[begin : begin + rng.integers(2, 60)] = path[begin]
    return path


def regimes() -> dict[str, tuple[np.ndarray, int, int]]:
    """name -> (series, window, accumulator that all its blocks take)."""
    rng = np.random.default_rng(RNG_SEED)
    size = 6000
    return {
        "prices, one word": (price_walk(size, 9000.0, 9500.0), 50, ws._ONE_WORD),
        "prices around 1024, long window, two words": (
            price_walk(size, 1024.0, 1024.0),
            700,
            ws._TWO_WORDS,
        ),
        "exponents 20 apart, limbs": (
            rng.uniform(1, 2, size) * 2.0 ** rng.integers(0, 20, size),
            30,
            ws._LIMBS,
        ),
        "exponents far apart, limbs": (
            rng.normal(0, 1, size) * 10.0 ** rng.integers(-200, 200, size),
            30,
            ws._LIMBS,
        ),
        "subnormal values, limbs": (rng.normal(0, 1, size) * 2.0**-1070, 40, ws._LIMBS),
        "constant 0.1 (0.1 * 3 / 3 != 0.1)": (np.full(size, 0.1), 3, ws._ONE_WORD),
    }


def block_modes(x: np.ndarray, n: int) -> set[int]:
    """The accumulators the blocks of ``x`` take."""
    return set(ws.block_accumulators(x, n).tolist())


@pytest.mark.parametrize("name", list(regimes()))
def test_each_accumulator_matches_the_reference_across_blocks(name):
    x, n, mode = regimes()[name]
    assert block_modes(x, n) == {mode}  # the data really takes that path
    at = np.r_[np.arange(n - 1, n + 40), np.linspace(n - 1, len(x) - 1, 300).astype(int)]
    check_against_reference(x, n, at)
    with_gaps = x.copy()
    with_gaps[[n + 5, 2500, 2501, 4000]] = [np.nan, np.inf, -np.inf, np.nan]
    check_against_reference(with_gaps, n, at)


@pytest.mark.parametrize("name", list(regimes()))
def test_a_window_gives_the_same_bits_as_the_full_history(name):
    x, n, _ = regimes()[name]
    full_sums, full_means = ws.window_sums(x, n), ind.sma(x, n)
    for t in range(n - 1, len(x), 97):
        window = x[t - n + 1 : t + 1]
        assert_same_bits(ws.window_sums(window, n)[-1:], full_sums[t : t + 1])
        assert_same_bits(ind.sma(window, n)[-1:], full_means[t : t + 1])


def test_a_long_price_history_takes_the_integer_accumulators_block_by_block():
    """Prices from 1,000 to 100,000 span 7 binary exponents, too many for one int64 per window
    over the whole series; each block only sees nearby prices."""
    x = price_walk(40_000, 1000.0, 100_000.0)
    assert block_modes(x, 200) <= {ws._ONE_WORD, ws._TWO_WORDS}
    check_against_reference(x, 200, np.linspace(199, len(x) - 1, 400).astype(int))


def test_windows_of_two_million_values_take_the_limbs_and_stay_exact():
    """From 2**21 values on, the two words' sums could exceed 2**53: such windows take the
    limbs, whose lazy carries are also normalised during the long first window."""
    n = 2**21
    x = price_walk(n + 3000, 9000.0, 9500.0)
    assert block_modes(x, n) == {ws._LIMBS}
    check_against_reference(x, n, [n - 1, n, n + 1234, n + 2999])


# --------------------------------------------------------------------------- special windows


def test_constant_windows_give_their_value_and_nonfinite_windows_nan():
    assert (0.1 * 3) / 3 != 0.1
    assert ind.sma(np.full(5, 0.1), 3)[-1] == 0.1
    assert np.signbit(ind.sma(np.full(4, -0.0), 2)[-1])
    assert np.signbit(ind.sma(np.array([0.0, -0.0]), 2)[-1])  # 0.0 == -0.0: the last one
    assert not np.signbit(ws.window_sums(np.full(4, -0.0), 2)[-1])  # a zero sum is +0.0
    inf_run = ind.sma(np.array([1.0, np.inf, np.inf]), 2)
    assert np.isnan(inf_run[1]) and inf_run[2] == np.inf
    assert np.isnan(ws.window_sums(np.array([np.inf, np.inf]), 2)[-1])
    assert np.isnan(ind.sma(np.array([np.nan, np.nan, 1.0]), 2)).all()
    assert ind.sma(np.array([3.0, 4.0, np.nan, 5.0]), 1).tolist()[:2] == [3.0, 4.0]
    assert np.isnan(ws.window_means(np.arange(4.0), 0)).all()
    assert np.isnan(ind.sma(np.arange(4.0), 5)).all()


def test_overflowing_window_sums_round_to_infinity():
    big = np.finfo(np.float64).max
    x = np.array([big, big, -big, -big, -big])
    assert ws.window_sums(x, 2).tolist()[1:] == [np.inf, 0.0, -np.inf, -np.inf]
    assert ws.window_sums(x, 3).tolist()[2:] == [big, -big, -np.inf]
