"""The portfolio strategy model (``research.portfolio_model``) and the shipped portfolio
strategies: allocation of single-market strategies, cross-sectional ``@portfolio`` strategies,
the panel helpers against pandas and plain loops, skfolio's HRP, and the look-ahead and
history-window checks of every shipped portfolio strategy on real data."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
from market_files import read_market_bars

import research
from research.indicators import sma
from research.kernels.portfolio_records import Rebalance
from research.panel import align
from research.portfolio_model import (
    EQUAL_WEIGHT,
    allocate,
    inverse_volatility,
    log_returns,
    period_anchors,
    portfolio,
    top_k,
    trailing_return,
)
from research.strategy_model import strategy
from strategies.portfolio_registry import all_portfolios, get_portfolio, portfolio_names

PAIRS = ["BTC-USDT", "ETH-USDT", "NEO-USDT", "XRP-USDT"]


@functools.cache
def usdt_panel():
    """The bundled Binance 1h pairs: BTC and ETH from April 2018, NEO and XRP from May."""
    return align(
        {name.replace("-", "/"): read_market_bars(f"binance_{name}_1h.csv.gz") for name in PAIRS}
    )


@strategy(long_only=True)
def above_average(bars, n: int = 20):
    """Long while the close is above its n-bar average."""
    return bars.close > sma(bars.close, n)


# ----------------------------------------------------------------------------- allocate


def test_equal_weight_is_each_markets_own_target_over_the_number_of_markets():
    panel = usdt_panel()
    spec = allocate(above_average, EQUAL_WEIGHT)
    weights = spec.weights(panel, {"n": 30})
    for j, market in enumerate(panel.markets):
        own = above_average.evaluate(panel.bars(market), {"n": 30}).target
        rows = panel.rows(market)
        # on the market's own bars: its own target over four slots
        np.testing.assert_array_equal(
            weights[rows[rows >= 29], j], np.nan_to_num(own[rows >= 29]) / 4
        )
        # where it is absent its last target holds; before its first bar it is 0
        expected = pd.Series(np.nan, index=range(len(panel)))
        expected[rows] = np.nan_to_num(own) / 4
        expected = expected.ffill().fillna(0.0).to_numpy()
        np.testing.assert_array_equal(weights[29:, j], expected[29:])
    assert spec.lookback({"n": 30}) == 29 and spec.history_window({"n": 30}) == 30


def test_inverse_volatility_weights_against_pandas():
    panel = usdt_panel()
    spec = allocate(above_average, inverse_volatility(vol_window=48))
    weights = spec.weights(panel, {"n": 30, "vol_window": 48})
    signal, vol = {}, {}
    for market in panel.markets:
        rows = panel.rows(market)
        close = pd.Series(panel.close[rows, panel.column(market)], index=rows)
        signal[market] = (close > close.rolling(30).mean()).astype(float)
        vol[market] = np.log(close / close.shift(1)).rolling(48).std(ddof=0)
    index = range(len(panel))
    signal = pd.DataFrame(signal).reindex(index).ffill().fillna(0.0)
    inverse = 1.0 / pd.DataFrame(vol).reindex(index).ffill()
    expected = signal * inverse.div(inverse.sum(axis=1), axis=0).fillna(0.0)
    lookback = spec.lookback({"n": 30, "vol_window": 48})
    assert lookback == 48
    np.testing.assert_allclose(
        weights[lookback:], expected.to_numpy()[lookback:], rtol=1e-9, atol=1e-12
    )
    full = np.nansum(weights, axis=1)
    assert full.max() <= 1.0 + 1e-12


def test_a_user_allocation_rule():
    """A rule of your own: the targets of the markets that are long, shared equally among them
    (not a fixed slot), capped at half the book per market."""
    from research.portfolio_model import Allocation

    def share_among_longs(targets, measures, cap):
        longs = (targets > 0).sum(axis=1, keepdims=True)
        return np.where(targets > 0, np.minimum(1.0 / np.maximum(longs, 1), cap), 0.0)

    rule = Allocation("share among longs", {"cap": 0.5}, share_among_longs)
    spec = allocate(above_average, rule)
    weights = spec.weights(usdt_panel(), {"n": 30, "cap": 0.5})
    equal = allocate(above_average, EQUAL_WEIGHT).weights(usdt_panel(), {"n": 30})
    longs = (equal[30:] > 0).sum(axis=1)
    expected = np.where(equal[30:] > 0, np.minimum(1.0 / np.maximum(longs, 1), 0.5)[:, None], 0.0)
    np.testing.assert_array_equal(weights[30:], expected)
    assert spec.params._fields == ("n", "cap") and spec.lookback({"n": 30}) == 29


def test_an_allocation_parameter_named_like_the_strategys_is_refused():
    rule = inverse_volatility()._replace(params={"n": 10})
    with pytest.raises(
        ValueError,
        match="the allocation's parameter 'n' has the name of a "
        "parameter of strategy 'above_average'",
    ):
        allocate(above_average, rule)


def test_allocated_parameters_are_validated_like_a_strategys():
    spec = allocate(above_average, inverse_volatility())
    assert spec.params._fields == ("n", "vol_window")
    with pytest.raises(
        ValueError, match="unknown parameter 'vol_windw'.*did you mean 'vol_window'"
    ):
        spec.make_params(vol_windw=5)


# ----------------------------------------------------------------------------- @portfolio


@portfolio(
    lookback=lambda p: p.window,
    rebalance=lambda p: Rebalance(every=p.every),
    constraints=["window >= 1"],
)
def leaders(panel, window: int = 24, every: int = 12):
    """Long the best market over the window."""
    return top_k(trailing_return(panel.close, window), 1)


def test_a_cross_sectional_strategy_declares_its_numbers():
    assert leaders.lookback({"window": 10}) == 10
    assert leaders.history_window({"window": 10}) == 11
    assert leaders.rebalance({"every": 6}) == Rebalance(every=6)
    assert leaders.description == "Long the best market over the window."
    with pytest.raises(ValueError, match="constraint 'window >= 1'"):
        leaders.make_params(window=0)


@pytest.mark.parametrize(
    "body, message",
    [
        (lambda panel: np.zeros(3), "must return an array of shape"),
        (
            lambda panel: np.full(panel.close.shape, np.nan),
            "gave the weight nan for BTC/USDT at 2018-04-07T16:00:00.000Z",
        ),
        (lambda panel: np.full(panel.close.shape, np.inf), "gave the weight inf"),
    ],
)
def test_weights_a_book_cannot_trade_are_refused(body, message):
    spec = portfolio(lambda panel, x=1: body(panel), lookback=0, name="bad")
    with pytest.raises((TypeError, ValueError), match=message):
        spec.evaluate(usdt_panel())


def test_nan_is_allowed_for_a_market_not_yet_listed():
    panel = usdt_panel()
    spec = portfolio(
        lambda panel, x=1: np.where(np.maximum.accumulate(panel.present, axis=0), 0.1, np.nan),
        lookback=0,
        name="listed",
    )
    weights = spec.weights(panel)
    assert np.isnan(weights[0, 2]) and weights[-1, 2] == 0.1


# ----------------------------------------------------------------------------- helpers


def test_helpers_against_pandas_and_loops():
    panel = usdt_panel()
    close = pd.DataFrame(panel.close)
    np.testing.assert_array_equal(trailing_return(panel.close, 24), (close / close.shift(24) - 1))
    np.testing.assert_allclose(log_returns(panel.close), np.log(close / close.shift(1)), rtol=1e-15)
    scores = trailing_return(panel.close, 24)
    chosen = top_k(scores, 2)
    for i in range(len(scores)):
        finite = [j for j in range(4) if np.isfinite(scores[i, j])]
        best = sorted(finite, key=lambda j: (-scores[i, j], j))[:2]
        assert [j for j in range(4) if chosen[i, j] > 0] == sorted(best)
        assert all(chosen[i, j] == 0.5 for j in best)
    ts = panel.ts
    anchors = period_anchors(ts, 86_400_000)
    for i in range(len(ts)):
        day = ts[i] // 86_400_000
        first = min(k for k in range(i + 1) if ts[k] // 86_400_000 == day)
        starts = first > 0 and ts[first - 1] // 86_400_000 < day
        assert anchors[i] == (first if starts else -1)


# ----------------------------------------------------------------------------- shipped


def test_the_registry_lists_the_shipped_portfolios():
    assert portfolio_names() == ["hrp", "inverse_vol_trend", "momentum_rotation"]
    with pytest.raises(
        ValueError, match="unknown portfolio strategy 'momentum'; did you mean 'momentum_rotation'"
    ):
        get_portfolio("momentum")


def test_momentum_rotation_holds_the_top_markets_by_trailing_return():
    panel = usdt_panel()
    spec = get_portfolio("momentum_rotation")
    weights = spec.weights(panel, {"top": 2, "window": 72})
    close = pd.DataFrame(panel.close, columns=list(panel.markets))
    trailing = close / close.shift(72) - 1
    rank = trailing.rank(axis=1, ascending=False, method="first")
    expected = ((rank <= 2) & trailing.notna()).astype(float) / 2
    np.testing.assert_array_equal(weights[72:], expected.to_numpy()[72:])
    assert spec.rebalance({"every_hours": 24}) == Rebalance(period=86_400_000)


@pytest.mark.slow
def test_hrp_weights_are_skfolios_estimate_of_each_periods_first_bar():
    from skfolio.optimization import HierarchicalRiskParity

    panel = usdt_panel()
    spec = get_portfolio("hrp")
    params = {"window": 96, "every_hours": 24}
    weights = spec.weights(panel, params)
    returns = np.log(pd.DataFrame(panel.close) / pd.DataFrame(panel.close).shift(1)).to_numpy()
    anchors = period_anchors(panel.ts, 86_400_000)
    checked = 0
    for anchor in sorted(set(anchors[anchors >= 96]))[::7]:
        window = returns[anchor - 95 : anchor + 1]
        usable = (np.isfinite(window).sum(axis=0) >= 48) & (np.nan_to_num(window).std(axis=0) > 0)
        expected = np.zeros(4)
        if usable.sum() > 1:
            expected[usable] = (
                HierarchicalRiskParity().fit(np.nan_to_num(window[:, usable])).weights_
            )
        elif usable.sum() == 1:
            expected[usable] = 1.0
        for t in np.flatnonzero(anchors == anchor):
            np.testing.assert_allclose(weights[t], expected, rtol=1e-12, atol=1e-15)
        checked += 1
    assert checked > 5
    assert spec.history_window(params, panel.timeframe_ms) == 96 + 24 + 1


@pytest.mark.slow
@pytest.mark.parametrize("name", ["momentum_rotation", "inverse_vol_trend", "hrp"])
def test_every_shipped_portfolio_passes_the_lookahead_and_history_checks(name):
    spec, panel = get_portfolio(name), usdt_panel()
    assert research.lookahead(spec, panel, samples=12).ok
    report = research.history_check(spec, panel, samples=40)
    assert report.ok, str(report)


@portfolio(lookback=0, history=lambda p: p.window, name="short")
def one_bar_short(panel, window: int = 24):
    """The leader over the window, but its history window is one bar short: the return over
    ``window`` bars needs ``window + 1`` of them."""
    return top_k(np.nan_to_num(trailing_return(panel.close, window), nan=-1.0), 1)


def test_a_history_window_one_bar_short_fails_the_check():
    report = research.history_check(one_bar_short, usdt_panel(), samples=40)
    assert not report.ok
    assert "the history window is too short" in str(report)
    assert research.lookahead(one_bar_short, usdt_panel(), samples=10).ok  # still causal


def test_all_shipped_portfolios_are_long_only_and_within_the_book():
    panel = usdt_panel()
    for name, spec in all_portfolios().items():
        weights = spec.weights(panel)
        body = weights[spec.lookback() :]
        assert spec.long_only and (np.nan_to_num(body) >= 0).all(), name
        assert np.nansum(body, axis=1).max() <= 1.0 + 1e-9, name
        assert np.isfinite(body).all(), name
