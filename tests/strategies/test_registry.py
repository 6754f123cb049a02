"""The registry of shipped strategies and the contract every one of them fulfils."""

from __future__ import annotations

import numpy as np
import pytest

from research.strategy_model import StrategySpec
from strategies import registry

SHIPPED = [
    "bollinger_breakout",
    "donchian_breakout",
    "ema_cross",
    "macd_rsi",
    "rsi_reversion",
    "sma_cross",
]


def test_all_specs_lists_every_shipped_strategy_by_its_own_name():
    specs = registry.all_specs()
    assert sorted(specs) == SHIPPED
    for name, spec in specs.items():
        assert isinstance(spec, StrategySpec) and spec.name == name
        assert registry.get_strategy(name) is spec


def test_unknown_name_suggests_the_closest_and_lists_all():
    with pytest.raises(ValueError, match=r"did you mean 'ema_cross'\?.*available: .*sma_cross"):
        registry.get_strategy("ema_cros")
    with pytest.raises(ValueError, match="available: bollinger_breakout, donchian_breakout"):
        registry.get_strategy("zzz")
    with pytest.raises(TypeError, match="string"):
        registry.get_strategy(3)


@pytest.mark.parametrize("name", SHIPPED)
def test_spec_declarations_are_consistent(name, real_bars):
    spec = registry.get_strategy(name)
    params = spec.make_params()  # defaults satisfy the constraints
    assert set(spec.sweep) <= set(spec.params._fields)
    for field, values in spec.sweep.items():
        for value in list(values)[:3]:
            spec.make_params({field: value})  # sweep values have the declared types
    evaluation = spec.evaluate(real_bars, params)
    assert evaluation.panes == spec.panes(params) and evaluation.indicators
    assert [name for names in evaluation.panes.values() for name in names] == list(
        evaluation.indicators
    )
    for array in evaluation.indicators.values():
        assert array.dtype == np.float64 and len(array) == len(real_bars)
    assert spec.description and spec.__class__ is StrategySpec
    if spec.long_only:
        assert np.nanmin(evaluation.target) >= 0.0


@pytest.mark.parametrize("name", SHIPPED)
def test_too_few_bars_for_the_lookback_is_refused_with_a_fix(name):
    spec = registry.get_strategy(name)
    params = spec.make_params()
    spec.check_enough_bars(spec.lookback(params) + 1, params)
    with pytest.raises(ValueError, match="load a longer history"):
        spec.check_enough_bars(spec.lookback(params), params)


@pytest.mark.parametrize("name", SHIPPED)
def test_one_pass_evaluation_equals_target_and_indicators(name, real_bars):
    """The runner decides with ``target_and_indicators``; the backtest uses ``evaluate``."""
    spec = registry.get_strategy(name)
    params = spec.make_params()
    target, values = spec.target_and_indicators(real_bars, params)
    np.testing.assert_array_equal(target, spec.target(real_bars, params))
    separate = spec.indicators(real_bars, params)
    assert sorted(values) == sorted(separate)
    for key, array in separate.items():
        np.testing.assert_array_equal(values[key], array)
