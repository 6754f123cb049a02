"""The shipped strategies by name: ``all_specs()`` and ``get_strategy(name)``.

Each strategy lives in its own module of this package, as a function made a
:class:`~research.strategy_model.StrategySpec` by ``@strategy`` under its registry name; the
registry imports them on first use (importing :mod:`strategies.registry` itself is cheap).
"""

from __future__ import annotations

import difflib
import importlib

from research.strategy_model import StrategySpec

#: Registry name -> module that defines the strategy (under that name).
STRATEGY_MODULES: dict[str, str] = {
    "sma_cross": "strategies.sma_cross",
    "ema_cross": "strategies.ema_cross",
    "rsi_reversion": "strategies.rsi_reversion",
    "bollinger_breakout": "strategies.bollinger_breakout",
    "donchian_breakout": "strategies.donchian_breakout",
    "macd_rsi": "strategies.macd_rsi",
}


def names() -> list[str]:
    """Registry names of the shipped strategies, sorted."""
    return sorted(STRATEGY_MODULES)


def get_strategy(name: str) -> StrategySpec:
    """Return the :class:`~research.strategy_model.StrategySpec` registered as ``name``.

    Raises
    ------
    TypeError
        If ``name`` is not a string.
    ValueError
        If no strategy has that name; the message suggests the closest name and lists all.
    """
    if not isinstance(name, str):
        raise TypeError(f"strategy name must be a string such as 'sma_cross', got {name!r}")
    module_name = STRATEGY_MODULES.get(name)
    if module_name is None:
        close = difflib.get_close_matches(name, names(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown strategy {name!r}{hint} (available: {', '.join(names())})")
    spec = getattr(importlib.import_module(module_name), name)
    if not isinstance(spec, StrategySpec) or spec.name != name:  # pragma: no cover - the table
        raise RuntimeError(f"{module_name}.{name} is not the strategy registered as {name!r}")
    return spec


def all_specs() -> dict[str, StrategySpec]:
    """Every shipped strategy, ``{name: spec}`` in name order."""
    return {name: get_strategy(name) for name in names()}
