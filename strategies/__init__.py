"""Candela's shipped strategies, one module each, found by name through
:mod:`strategies.registry` (``get_strategy("sma_cross")``, ``all_specs()``).

Each module defines ``Params`` (a NamedTuple with defaults), a vectorized causal ``target``,
its exact ``warmup``, ``indicators``, sweep ranges, a ``check`` and ``SPEC``; it imports only
numpy, :mod:`research.types` and :mod:`research.indicators`. Nothing is imported here, so
``import strategies`` stays light.
"""
