"""Candela research: what notebooks import.

The pure core (:mod:`research.types`, :mod:`research.indicators`, :mod:`research.kernels`)
depends only on numpy and numba, so the paper-trading runner can import it without pandas,
plotly or joblib. The upper layers (data access, backtests, sweeps, metrics, charts, checks,
reports) are loaded lazily on first use::

    import research
    result = research.backtest(spec, bars, params, costs)   # imports research.backtesting
    table = research.sweep(spec, bars, grid, costs)         # imports research.sweeps
"""

from __future__ import annotations

import importlib
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
    "warmup_check": ("research.checks", "warmup_check"),
    "load_run": ("research.storage", "load_run"),
    "save_result": ("research.storage", "save_result"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'research' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value
    return value
