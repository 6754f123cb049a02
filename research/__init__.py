"""Candela research: what notebooks import.

The pure core (:mod:`research.types`, :mod:`research.indicators`, :mod:`research.kernels`)
depends only on numpy and numba, so the paper-trading runner can import it without pandas,
plotly or joblib. The upper layers (data access, backtests, sweeps, metrics, charts, checks,
reports) are loaded lazily on first use::

    import research
    result = research.backtest(spec, bars, params, costs)   # imports research.backtesting
    table = research.sweep(spec, bars, grid, costs)         # imports research.sweeps

``research.strategy`` (the ``@strategy`` decorator, :mod:`research.strategy_model`) and
``research.indicator`` (:func:`research.indicators.indicator`) belong to the pure core.

Imported in an IPython session (a notebook), it prepares the first backtest in the background
once the importing cell has finished (:mod:`research.notebook_start`).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

_LAZY = {
    "backtest": ("research.backtesting", "backtest"),
    "Result": ("research.result", "Result"),
    "sweep": ("research.sweeps", "sweep"),
    "load_bars": ("research.data", "load_bars"),
    "load_frame": ("research.data", "load_frame"),
    "inventory": ("research.data", "inventory"),
    "resample": ("research.data", "resample"),
    "lookahead": ("research.checks", "lookahead"),
    "history_check": ("research.checks", "history_check"),
    "strategy": ("research.strategy_model", "strategy"),
    "StrategySpec": ("research.strategy_model", "StrategySpec"),
    "indicator": ("research.indicators", "indicator"),
    "Line": ("research.lines", "Line"),
    "Panel": ("research.panel", "Panel"),
    "align": ("research.panel", "align"),
    "load_universe": ("research.portfolio.universe", "load_universe"),
    "universe_symbols": ("research.portfolio.universe", "universe_symbols"),
    "coverage": ("research.portfolio.universe", "coverage"),
    "portfolio": ("research.portfolio_model", "portfolio"),
    "allocate": ("research.portfolio_model", "allocate"),
    "inverse_volatility": ("research.portfolio_model", "inverse_volatility"),
    "EQUAL_WEIGHT": ("research.portfolio_model", "EQUAL_WEIGHT"),
    "Rebalance": ("research.kernels.portfolio_records", "Rebalance"),
    "BookLimits": ("research.kernels.portfolio_records", "BookLimits"),
    "sweep_portfolio": ("research.portfolio.sweeps", "sweep_portfolio"),
    "sweep_universes": ("research.portfolio.sweeps", "sweep_universes"),
    "pairs_table": ("research.portfolio.sweeps", "pairs_table"),
    "load_run": ("research.storage", "load_run"),
    "save_result": ("research.storage", "save_result"),
    "walk_forward": ("research.validation.walkforward", "walk_forward"),
    "cross_validate": ("research.validation.crossval", "cross_validate"),
    "search": ("research.validation.search", "search"),
    "list_sweeps": ("research.validation.store", "list_sweeps"),
    "load_sweep": ("research.validation.store", "load_sweep"),
}

__all__ = sorted(_LAZY)

if "IPython" in sys.modules:  # maybe a notebook: no other process pays for the check
    from research import notebook_start as _notebook_start

    _notebook_start.prepare_after_cell()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module_name, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module_name), attribute)
    elif name in _submodules():  # research.indicators etc. without importing them first
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module 'research' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The lazy API and the submodules (tab completion in a notebook offers ``research.backtest``,
    ``research.indicators``, ...), with the module's dunder names."""
    dunders = {name for name in globals() if name.startswith("__")}
    return sorted(set(_LAZY) | _submodules() | dunders)


def _submodules() -> set[str]:
    import pkgutil

    return {module.name for module in pkgutil.iter_modules(__path__)}
