"""The look-ahead detector and the history-window check catch what they must, and pass every
registered strategy on real data."""

from __future__ import annotations

import numpy as np
import pytest
from market_files import read_market_bars
from reference import synthetic_bars

from research.checks import history_check, lookahead
from research.indicators import ema
from research.strategy_model import strategy
from research.types import Bars


def _rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    out = np.full(len(values), np.nan)
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    out[window - 1 :] = (cumulative[window:] - cumulative[:-window]) / window
    return out


def _declared(name, lookback, history=None):
    """A strategy of plain arrays, its look-back and history window declared by hand."""
    return strategy(name=name, lookback=lookback, history=history or (lambda p: lookback(p) + 1))


@_declared("causal", lambda p: p.window - 1)
def CAUSAL(bars, window: int = 20):
    mean = _rolling_mean(np.asarray(bars.close), window)
    return np.where(np.isnan(mean), np.nan, np.where(bars.close > mean, 1.0, 0.0))


@_declared("peeking", lambda p: p.window)
def PEEKING(bars, window: int = 20):
    """Long when the NEXT close is higher: one bar of look-ahead."""
    return np.sign(np.diff(np.asarray(bars.close), append=np.nan))


@_declared("centred", lambda p: p.window)
def CENTRED(bars, window: int = 20):
    """A centred moving average (a classic accidental leak: half a window of future)."""
    mean = _rolling_mean(np.asarray(bars.close), window)
    shifted = np.full(len(mean), np.nan)
    half = window // 2
    shifted[:-half] = mean[half:]
    return np.where(np.isnan(shifted), np.nan, np.where(bars.close > shifted, 1.0, -1.0))


@_declared("short_history", lambda p: p.window - 1, lambda p: p.window - 5)
def SHORT_HISTORY(bars, window: int = 20):
    """A recursive indicator whose declared history window is far too short to forget its
    seed (the look-back alone is right)."""
    close = np.asarray(bars.close)
    level = ema(close, window)
    return np.tanh((close - level) / level * 10.0)


@pytest.fixture(scope="module")
def bars() -> Bars:
    ts, o, h, l, c = synthetic_bars(600, 21)
    return Bars.from_arrays(ts, o, h, l, c, None, 3_600_000)


def test_causal_strategy_passes_both_checks(bars):
    report = lookahead(CAUSAL, bars, samples=40)
    assert report.ok and bool(report)
    assert len(report.sampled) == 40 and len(report.offending) == 0
    assert "OK" in str(report)
    history = history_check(CAUSAL, bars, samples=40)
    assert history.ok and history.window == 20
    assert "OK" in str(history)


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


def test_too_short_history_window_is_caught(bars):
    report = history_check(SHORT_HISTORY, bars, samples=25)
    assert not report.ok
    assert report.window == 20  # the declared 15 bars, at least look-back + 1
    # far from the first bar, a window of 20 bars has not forgotten the EMA's seed
    far = report.sampled[report.sampled >= 100]
    assert set(far) <= set(report.offending) and len(far) > 10
    assert all(m.series == "target" for m in report.mismatches)
    assert "history window is too short" in str(report)
    # the look-ahead check alone cannot see it: the strategy is causal
    assert lookahead(SHORT_HISTORY, bars, samples=10).ok


def test_windows_are_clamped_at_the_first_bar_so_short_series_are_checked(bars):
    """On fewer bars than the history window every window starts at the first bar, as the
    runner's does early in a series: the check runs and passes for a causal strategy."""
    from strategies.registry import get_strategy

    spec = get_strategy("ema_cross")
    short = bars[:200]
    assert spec.history_window(spec.make_params()) > len(short)
    report = history_check(spec, short, samples=30)
    assert report.ok and len(report.sampled) == 30, str(report)


def test_a_strategy_that_raises_on_short_windows_is_reported(bars):
    @_declared("fragile", lambda p: p.window - 1)
    def fragile(bars_, window: int = 20):
        if 0 < len(bars_) < 100:
            raise ValueError("needs 100 bars")
        return CAUSAL.function(bars_, window)

    report = history_check(fragile, bars, samples=5)
    assert not report.ok and len(report.errors) == 5
    assert "needs 100 bars" in str(report)


def test_bad_arguments_raise_helpful_errors(bars):
    with pytest.raises(ValueError, match="did you mean 'window'"):
        lookahead(CAUSAL, bars, {"windw": 5})
    with pytest.raises(ValueError, match="at least 21 bars"):
        lookahead(CAUSAL, bars[:15])
    with pytest.raises(ValueError, match="at least 20 bars"):
        history_check(CAUSAL, bars[:15])
    with pytest.raises(TypeError, match="Bars"):
        lookahead(CAUSAL, bars.close)


@pytest.fixture(
    scope="module", params=["binance_BTC-USDT_1h", "bittrex_LTC-BTC_5m", "binance_BTC-USDT_1d"]
)
def real_bars(request) -> Bars:
    return read_market_bars(f"{request.param}.csv.gz")


def _registered() -> list[str]:
    from strategies.registry import names

    return names()


@pytest.mark.parametrize("name", _registered())
def test_every_registered_strategy_passes(real_bars, name):
    """Every strategy of the registry, with its defaults, on real hourly, 5-minute and daily
    bars (the daily file is shorter than most history windows: clamped windows)."""
    from strategies.registry import get_strategy

    strategy_ = get_strategy(name)
    report = lookahead(strategy_, real_bars, samples=25, seed=7)
    assert report.ok, str(report)
    history = history_check(strategy_, real_bars, samples=25, seed=7)
    assert history.ok, str(history)
