"""The shipped portfolio strategies by name: ``all_portfolios()`` and ``get_portfolio(name)``.

Each lives in its own module of this package as a
:class:`~research.portfolio_model.PortfolioSpec` under its registry name (``@portfolio`` or
:func:`~research.portfolio_model.allocate`); the registry imports them on first use.
"""

from __future__ import annotations

import difflib
import importlib

from research.portfolio_model import PortfolioSpec

#: Registry name -> module that defines the portfolio strategy (under that name).
PORTFOLIO_MODULES: dict[str, str] = {
    "momentum_rotation": "strategies.momentum_rotation",
    "inverse_vol_trend": "strategies.inverse_vol_trend",
    "hrp": "strategies.hrp",
}


def portfolio_names() -> list[str]:
    """Registry names of the shipped portfolio strategies, sorted."""
    return sorted(PORTFOLIO_MODULES)


def get_portfolio(name: str) -> PortfolioSpec:
    """The :class:`~research.portfolio_model.PortfolioSpec` registered as ``name``.

    Raises
    ------
    ValueError
        If none has that name; the message suggests the closest and lists all.
    """
    module_name = PORTFOLIO_MODULES.get(name) if isinstance(name, str) else None
    if module_name is None:
        close = difflib.get_close_matches(str(name), portfolio_names(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown portfolio strategy {name!r}{hint} (available: {', '.join(portfolio_names())})"
        )
    spec = getattr(importlib.import_module(module_name), name)
    if not isinstance(spec, PortfolioSpec) or spec.name != name:  # pragma: no cover - the table
        raise RuntimeError(f"{module_name}.{name} is not the portfolio registered as {name!r}")
    return spec


def all_portfolios() -> dict[str, PortfolioSpec]:
    """Every shipped portfolio strategy, ``{name: spec}`` in name order."""
    return {name: get_portfolio(name) for name in portfolio_names()}
