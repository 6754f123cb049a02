"""The look-ahead detector and the warm-up check catch what they must, and pass the shipped
strategies on real data."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest

from reference import synthetic_bars
from market_files import read_market_bars
from research.checks import lookahead, warmup_check
from research.types import Bars, StrategySpec


class Window(NamedTuple):
    window: int = 20


def _rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    out = np.full(len(values), np.nan)
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    out[window - 1:] = (cumulative[window:] - cumulative[:-window]) / window
    return out


def _causal(bars: Bars, p: Window) -> np.ndarray:
    mean = _rolling_mean(bars.close, p.window)
    return np.where(np.isnan(mean), np.nan, np.where(bars.close > mean, 1.0, 0.0))


def _peeking(bars: Bars, p: Window) -> np.ndarray:
    """Long when the NEXT close is higher: one bar of look-ahead."""
    out = np.sign(np.diff(bars.close, append=np.nan))
    out[: p.window] = np.nan
    return out


def _centred(bars: Bars, p: Window) -> np.ndarray:
    """A centred moving average (a classic accidental leak: half a window of future)."""
    mean = _rolling_mean(bars.close, p.window)
    shifted = np.full(len(mean), np.nan)
    half = p.window // 2
    shifted[:-half] = mean[half:]
    return np.where(np.isnan(shifted), np.nan, np.where(bars.close > shifted, 1.0, -1.0))


def spec(name, target, warmup):
    return StrategySpec(name=name, params=Window, target=target, warmup=warmup,
                        indicators=lambda bars, p: {})


CAUSAL = spec("causal", _causal, lambda p: p.window - 1)
PEEKING = spec("peeking", _peeking, lambda p: p.window)
CENTRED = spec("centred", _centred, lambda p: p.window)
SHORT_WARMUP = spec("short_warmup", _causal, lambda p: p.window - 6)


@pytest.fixture(scope="module")
def bars() -> Bars:
    ts, o, h, l, c = synthetic_bars(600, 21)
    return Bars.from_arrays(ts, o, h, l, c, None, 3_600_000)


def test_causal_strategy_passes_both_checks(bars):
    report = lookahead(CAUSAL, bars, samples=40)
    assert report.ok and bool(report)
    assert len(report.sampled) == 40 and len(report.offending) == 0
    assert "OK" in str(report)
    warm = warmup_check(CAUSAL, bars, samples=40)
    assert warm.ok and warm.window == 20
    assert "OK" in str(warm)


def test_one_bar_peek_is_caught_at_every_cut(bars):
    report = lookahead(PEEKING, bars, {"window": 10}, samples=30, seed=3)
    assert not report.ok
    # with the future cut at t, the last target (bar t) can no longer see bar t+1
    np.testing.assert_array_equal(report.offending, report.sampled)
    assert all(m.index == m.t and np.isnan(m.truncated) for m in report.mismatches)
    text = str(report)
    assert "FAILED" in text and "depends on later bars" in text
    assert str(report.sampled[0]) in text


def test_centred_average_leak_is_caught_with_the_bars_it_touches(bars):
    report = lookahead(CENTRED, bars, samples=10, seed=1)
    assert not report.ok
    half = 10
    for t in report.sampled:  # the last half-window of every truncated history changed
        expected = set(range(t - half + 1, t + 1))
        assert expected <= set(report.offending)


def test_too_short_warmup_is_caught(bars):
    report = warmup_check(SHORT_WARMUP, bars, samples=25)
    assert not report.ok
    assert report.window == 15
    # every window ending where the full-history mean exists (t >= 19) lacks bars for it
    np.testing.assert_array_equal(report.offending, report.sampled[report.sampled >= 19])
    assert "declare a longer warm-up" in str(report)
    # the look-ahead check alone cannot see it: the strategy is causal
    assert lookahead(SHORT_WARMUP, bars, samples=10).ok


def test_a_strategy_that_raises_on_short_windows_is_reported(bars):
    def fragile(bars_, p):
        if len(bars_) < 100:
            raise ValueError("needs 100 bars")
        return _causal(bars_, p)

    report = warmup_check(spec("fragile", fragile, lambda p: p.window), bars, samples=5)
    assert not report.ok and len(report.errors) == 5
    assert "needs 100 bars" in str(report)


def test_bad_arguments_raise_helpful_errors(bars):
    with pytest.raises(ValueError, match="did you mean 'window'"):
        lookahead(CAUSAL, bars, {"windw": 5})
    with pytest.raises(ValueError, match="at least"):
        warmup_check(CAUSAL, bars[:15])
    with pytest.raises(TypeError, match="Bars"):
        lookahead(CAUSAL, bars.close)


SHIPPED = ["bollinger_breakout", "donchian_breakout", "ema_cross", "rsi_reversion", "sma_cross"]


@pytest.fixture(scope="module", params=["binance_BTC-USDT_1h", "bittrex_LTC-BTC_5m"])
def real_bars(request) -> Bars:
    return read_market_bars(f"{request.param}.csv.gz")


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_strategy_passes(real_bars, name):
    from strategies.registry import all_specs, get_strategy

    assert set(all_specs()) >= set(SHIPPED)
    strategy = get_strategy(name)
    report = lookahead(strategy, real_bars, samples=25, seed=7)
    assert report.ok, str(report)
    warm = warmup_check(strategy, real_bars, samples=25, seed=7)
    assert warm.ok, str(warm)


def test_every_registered_strategy_passes(real_bars):
    """Strategies added to the registry later are checked too (with their defaults)."""
    from strategies.registry import all_specs

    for name, strategy in all_specs().items():
        if name in SHIPPED:
            continue
        assert lookahead(strategy, real_bars, samples=10).ok, name
        assert warmup_check(strategy, real_bars, samples=10).ok, name
