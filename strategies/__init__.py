"""Candela's shipped strategies, one module each, found by name through
:mod:`strategies.registry` (``get_strategy("sma_cross")``, ``all_specs()``).

Each module defines one function decorated with ``@strategy``
(:mod:`research.strategy_model`), named like the strategy; it imports only numpy and the
research core. Nothing is imported here, so ``import strategies`` stays light.
"""
