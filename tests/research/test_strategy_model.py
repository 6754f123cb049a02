"""``@strategy``: parameters from the signature, constraints parsed without eval, the target and
its panes, the look-back and history window read from the Lines (or declared), the errors that
name the fix, and strategies that travel to sweep workers."""

from __future__ import annotations

import pickle

import cloudpickle
import numpy as np
import pytest
from market_files import read_market_bars

import research
from research.checks import history_check, lookahead
from research.indicators import converged_warmup, ema, ema_alpha, rsi, shift, sma, wilder_alpha
from research.strategy_model import (
    ConstraintError,
    StrategySpec,
    UnknownHistoryError,
    parse_constraint,
    strategy,
)
from research.types import Bars, Stops


@pytest.fixture(scope="module")
def bars() -> Bars:
    return read_market_bars("binance_BTC-USDT_1h.csv.gz")


# the guide's example (docs/writing-a-strategy.md), as written there
@strategy(
    sweep={"fast": range(5, 30, 2), "slow": range(20, 120, 5), "ceiling": [60, 70, 80]},
    constraints=["fast < slow", "0 < ceiling <= 100"],
)
def trend_not_overbought(bars, fast: int = 12, slow: int = 26, ceiling: float = 70.0):
    """Long while the fast EMA is above the slow one and the RSI is below a ceiling."""
    fast_ema, slow_ema = ema(bars.close, fast), ema(bars.close, slow)
    strength = rsi(bars.close, 14)
    long = (fast_ema > slow_ema) & (strength < ceiling)
    return long, {"price": {"ema_fast": fast_ema, "ema_slow": slow_ema}, "rsi": {"rsi": strength}}


def test_the_guide_example_is_a_strategy(bars):
    spec = trend_not_overbought
    assert isinstance(spec, StrategySpec) and research.strategy is strategy
    assert spec.name == "trend_not_overbought"
    assert spec.description.startswith("Long while the fast EMA is above the slow one")
    assert spec.params._fields == ("fast", "slow", "ceiling")
    assert spec.make_params() == spec.params(12, 26, 70.0)
    assert spec.make_params({"ceiling": 60}).ceiling == 60.0  # an int for a float: converted
    assert [c.text for c in spec.constraints] == ["fast < slow", "0 < ceiling <= 100"]
    params = {"fast": 10}
    assert spec.lookback(params) == 25  # the slow EMA's first value (the RSI's is 14)
    history = max(converged_warmup(ema_alpha(26)) + 1, converged_warmup(wilder_alpha(14)) + 2)
    assert spec.history_window(params) == history == 842
    assert spec.panes() == {"price": ["ema_fast", "ema_slow"], "rsi": ["rsi"]}
    evaluation = spec.evaluate(bars, params)
    assert np.isnan(evaluation.target[:25]).all()
    assert set(np.unique(evaluation.target[25:])) == {0.0, 1.0}  # a boolean target: 1.0 / 0.0
    assert list(evaluation.indicators) == ["ema_fast", "ema_slow", "rsi"]
    assert lookahead(spec, bars, params, samples=10).ok
    assert history_check(spec, bars, params, samples=10).ok
    result = research.backtest(spec, bars, params)
    assert result.panes == {"price": ["ema_fast", "ema_slow"], "rsi": ["rsi"]}
    titles = [annotation.text for annotation in result.plot().layout.annotations]
    assert "rsi" in titles  # its own pane on the chart


def test_parameters_are_checked_and_converted():
    spec = trend_not_overbought
    with pytest.raises(
        ValueError,
        match=r"parameter 'fast' of strategy 'trend_not_overbought' "
        r"must be int, got 'ten'",
    ):
        spec.make_params({"fast": "ten"})
    with pytest.raises(ValueError, match=r"unknown parameter 'fsat'.*did you mean 'fast'\?"):
        spec.make_params({"fsat": 3})
    with pytest.raises(
        ConstraintError,
        match=r"constraint 'fast < slow' of strategy "
        r"'trend_not_overbought' does not hold for "
        r"fast=30, slow=26",
    ) as caught:
        spec.make_params(fast=30)
    assert caught.value.constraint == "fast < slow"
    with pytest.raises(ConstraintError, match=r"'0 < ceiling <= 100'.*ceiling=150.0"):
        spec.make_params(ceiling=150)
    assert spec.make_params(fast=8.0).fast == 8


@pytest.mark.parametrize(
    "text, fields, words",
    [
        ("fast", ("fast",), "must compare parameters and numbers"),
        ("fast < slow()", ("fast", "slow"), "may only hold parameter names and numbers"),
        ("fast < __import__('os').getpid()", ("fast",), "may only hold parameter names"),
        ("fast * 2 < slow", ("fast", "slow"), "may only hold parameter names"),
        ("fast < True", ("fast",), "may only hold parameter names"),
        ("fast in (1, 2)", ("fast",), "may only use <, <=, >, >=, == and !="),
        ("1 < 2", ("fast",), "names no parameter"),
        ("fats < 3", ("fast",), "did you mean 'fast'"),
        ("fast <", ("fast",), "is not a comparison"),
    ],
)
def test_constraints_are_comparisons_of_parameters_and_numbers_only(text, fields, words):
    with pytest.raises(ValueError, match=words):
        parse_constraint(text, fields, "x")


def test_chained_and_negative_constraints():
    constraint = parse_constraint("-1.5 <= lower < upper <= 100", ("lower", "upper"))
    params = type("P", (), {"lower": -1.0, "upper": 50})
    assert constraint.holds(params)
    params.lower = -2.0
    assert not constraint.holds(params)


@pytest.mark.parametrize(
    "define, words",
    [
        (lambda: strategy(lambda bars, fast: 1), "parameter 'fast' needs a default"),
        (lambda: strategy(lambda bars, *rest: 1), "no \\*args"),
        (lambda: strategy(lambda: 1), "must take the bars first"),
        (lambda: strategy(lambda bars, when=[1]: 1), "must be an int, float, bool or str"),
        (lambda: strategy(sweep={"fsat": [1]})(lambda bars, fast=1: 1), "did you mean 'fast'"),
        (lambda: strategy(constraints="fast < 3")(lambda bars, fast=1: 1), "a list of comparisons"),
        (
            lambda: strategy(constraints=["fast > 3"])(lambda bars, fast=1: 1),
            "constraint 'fast > 3'.*does not hold for fast=1",
        ),
        (lambda: strategy(lookback=-1)(lambda bars, fast=1: 1), "lookback= must be a number"),
        (lambda: strategy(stops=(0.1, 0.2, 0.3))(lambda bars, fast=1: 1), "research.types.Stops"),
    ],
)
def test_a_wrong_definition_is_refused_when_it_is_made(define, words):
    with pytest.raises((TypeError, ValueError), match=words):
        define()


def test_types_come_from_annotations_or_defaults():
    @strategy(long_only=True, stops=Stops(stop_loss=0.05), name="renamed")
    def typed(bars, window: float = 3, flag=False, label: str = "a"):
        return bars.close > 0

    assert typed.name == "renamed" and typed.long_only and typed.stops.stop_loss == 0.05
    assert typed.params.__annotations__ == {"window": float, "flag": bool, "label": str}
    assert typed.make_params() == typed.params(3.0, False, "a")
    with pytest.raises(ValueError, match="must be bool"):
        typed.make_params(flag=1)


# --------------------------------------------------------------------------- look-back and history


def test_a_plain_target_is_refused_with_the_three_fixes(bars):
    @strategy
    def rolled(bars, window: int = 3):
        return np.roll(np.asarray(bars.close), 1) < bars.close

    with pytest.raises(UnknownHistoryError) as caught:
        rolled.lookback()
    message = str(caught.value)
    assert "look-back and history window unknown" in message
    for fix in (
        "research.indicators.shift",
        "@indicator(lookback=..., history=...)",
        "declare lookback= and history= on @strategy",
    ):
        assert fix in message
    with pytest.raises(UnknownHistoryError):
        research.backtest(rolled, bars)


def test_a_plain_series_is_refused_by_name(bars):
    @strategy
    def plotted(bars, window: int = 3):
        level = sma(bars.close, window)
        return bars.close > level, {"price": {"level": level, "ratio": np.asarray(level) / 2}}

    with pytest.raises(UnknownHistoryError, match="history window unknown: its series 'ratio'"):
        plotted.evaluate(bars)


def test_shift_replaces_slicing_and_declared_numbers_override_the_lines(bars):
    @strategy
    def rising(bars, window: int = 3):
        return bars.close > shift(bars.close, window)

    assert (rising.lookback(), rising.history_window()) == (3, 4)
    np.testing.assert_array_equal(
        rising.target(bars)[3:], (bars.close[3:] > bars.close[:-3]).astype(float)
    )

    @strategy(lookback=lambda p: p.window, history=lambda p: 2 * p.window)
    def declared(bars, window: int = 3):
        return np.asarray(bars.close) > np.r_[np.full(window, np.inf), bars.close[:-window]]

    assert (declared.lookback({"window": 5}), declared.history_window({"window": 5})) == (5, 10)
    assert np.isnan(declared.target(bars, {"window": 5})[:5]).all()

    @strategy(history=1)
    def at_least_lookback_plus_one(bars, window: int = 3):
        return sma(bars.close, window) > 0

    assert at_least_lookback_plus_one.history_window() == 3  # max(declared, look-back + 1)


def test_the_numbers_are_read_once_per_parameter_set():
    calls = []

    @strategy
    def counted(bars, window: int = 3):
        calls.append(len(bars))
        return sma(bars.close, window) > 0

    counted.lookback({"window": 4})
    counted.history_window({"window": 4})
    counted.panes({"window": 4})
    counted.lookback({"window": 5})
    assert calls == [0, 0]


def test_what_a_strategy_returns_is_checked(bars):
    def returning(value):
        return strategy(name="returns", lookback=0, history=1)(lambda bars, w=1: value(bars))

    cases = [
        (lambda b: (b.close, {"p": {"a": b.close}}, 3), TypeError, "target or \\(target, panes\\)"),
        (lambda b: (b.close, {"p": b.close}), TypeError, "pane 'p' must map series names"),
        (
            lambda b: (b.close, {"p": {"a": b.close}, "q": {"a": b.close}}),
            ValueError,
            "series 'a' appears in two panes",
        ),
        (lambda b: b.close.astype(str), TypeError, "dtype <U"),
        (lambda b: list(b.close), TypeError, "must return numpy arrays"),
    ]
    for value, error, words in cases:
        with pytest.raises(error, match=words):
            returning(value).evaluate(bars)


# --------------------------------------------------------------------------- travelling


def test_strategies_travel_by_reference_and_by_value():
    from strategies.registry import get_strategy

    shipped = get_strategy("ema_cross")
    assert pickle.loads(pickle.dumps(shipped)) is shipped
    params = shipped.make_params(fast=5)
    assert pickle.loads(pickle.dumps(params)) == params
    assert pickle.loads(pickle.dumps(trend_not_overbought)) is trend_not_overbought

    @strategy(constraints=["fast < slow"])
    def local(bars, fast: int = 2, slow: int = 5):
        return sma(bars.close, fast) > sma(bars.close, slow)

    copy = cloudpickle.loads(cloudpickle.dumps(local))  # how sweep workers get a notebook's
    assert copy.name == "local" and copy.lookback() == 4
    bars_ = Bars.from_arrays(np.arange(1, 11) * 60_000, *([np.linspace(1, 2, 10)] * 4))
    np.testing.assert_array_equal(copy.target(bars_), local.target(bars_))
