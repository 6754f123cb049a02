"""Find a strategy by name: a registry name (``sma_cross``) or ``module:ATTRIBUTE``.

The ``module:ATTRIBUTE`` form lets a bot config point at a strategy outside the registry, e.g.
one defined in a test module; the attribute must be a :class:`~research.types.StrategySpec`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from research.types import StrategySpec
from strategies.registry import get_strategy

StrategyResolver = Callable[[str], StrategySpec]


def resolve_strategy(name: str) -> StrategySpec:
    """Return the :class:`StrategySpec` called ``name``.

    Raises
    ------
    ValueError
        If no registered strategy has that name (the registry suggests close names) or the
        ``module:ATTRIBUTE`` target cannot be imported or is not a ``StrategySpec``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"strategy must be a non-empty string, got {name!r}")
    if ":" in name:
        module_name, _, attribute = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(
                f"cannot import strategy module {module_name!r} ({exc}): check the "
                "'module:ATTRIBUTE' name and that the module is on the Python path"
            ) from exc
        spec = getattr(module, attribute, None)
        if not isinstance(spec, StrategySpec):
            raise ValueError(
                f"{name!r} is not a StrategySpec: point 'strategy' at a module attribute that "
                "holds one, e.g. 'my_package.my_module:SPEC'"
            )
        return spec
    return get_strategy(name)
