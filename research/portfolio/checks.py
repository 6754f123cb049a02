"""Look-ahead and history-window checks of portfolio strategies (docs/architecture.md §3).

The same checks as :mod:`research.checks` does for one market, on a panel:

* :func:`portfolio_lookahead` recomputes the weights on truncated panels ``panel[:t+1]`` at
  sampled ``t`` and reports every grid bar ``i <= t`` (from the look-back on) where some
  market's weight differs from the full-history weights;
* :func:`portfolio_history_check` recomputes them on the window a portfolio bot loads when it
  decides bar ``t`` (:func:`research.panel.decision_window`: each market's last
  ``spec.history_window(params)`` bars, aligned) and reports every ``t`` whose last weights
  differ from the full-history ones.

Weights are compared exactly (``nan`` equals ``nan``). The reports are those of
:mod:`research.checks`; a mismatch's ``series`` names the market.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from research.checks import HistoryReport, LookaheadReport, Mismatch, _differs, _sample
from research.panel import Panel, decision_window
from research.portfolio_model import PortfolioEvaluation, PortfolioSpec

MAX_LISTED = 10


def portfolio_lookahead(
    spec: PortfolioSpec, panel: Panel, params: Any = None, samples: int = 50, seed: int = 0
) -> LookaheadReport:
    """Recompute the weights on ``panel[:t+1]`` at ``samples`` random ``t`` from the
    look-back on; ``ok`` when no past weight changes (see the module docstring)."""
    params, full = _prepare(spec, panel, params, extra=1)
    first = full.lookback
    sampled = _sample(first, len(panel) - 2, samples, seed)
    offending: set[int] = set()
    mismatches: list[Mismatch] = []
    errors: dict[int, str] = {}
    for t in sampled:
        try:
            truncated = spec.evaluate(panel[: t + 1], params).weights
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            errors[int(t)] = f"{type(exc).__name__}: {exc}"
            continue
        differs = _differs(truncated[first:], full.weights[first : t + 1])
        for i, j in np.argwhere(differs)[:MAX_LISTED]:
            mismatches.append(
                Mismatch(
                    int(t),
                    int(i) + first,
                    float(truncated[i + first, j]),
                    float(full.weights[i + first, j]),
                    panel.markets[j],
                )
            )
        offending.update(int(i) + first for i in np.flatnonzero(differs.any(axis=1)))
    return LookaheadReport(
        spec.name, params, sampled, np.array(sorted(offending), dtype=np.int64), mismatches, errors
    )


def portfolio_history_check(
    spec: PortfolioSpec, panel: Panel, params: Any = None, samples: int = 50, seed: int = 0
) -> HistoryReport:
    """Check that the window a portfolio bot loads for bar ``t`` gives the full-history
    weights at ``t``, at ``samples`` random ``t`` (see the module docstring)."""
    params, full = _prepare(spec, panel, params)
    window = full.history_window
    sampled = _sample(full.lookback, len(panel) - 1, samples, seed)
    offending: list[int] = []
    mismatches: list[Mismatch] = []
    errors: dict[int, str] = {}
    for t in sampled:
        try:
            last = spec.evaluate(decision_window(panel, int(t), window), params).weights[-1]
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            errors[int(t)] = f"{type(exc).__name__}: {exc}"
            continue
        differs = _differs(last, full.weights[t])
        if differs.any():
            offending.append(int(t))
            mismatches += [
                Mismatch(
                    int(t), int(t), float(last[j]), float(full.weights[t, j]), panel.markets[j]
                )
                for j in np.flatnonzero(differs)
            ]
    return HistoryReport(
        spec.name, params, window, sampled, np.array(offending, dtype=np.int64), mismatches, errors
    )


def _prepare(
    spec: PortfolioSpec, panel: Panel, params: Any, extra: int = 0
) -> tuple[Any, PortfolioEvaluation]:
    if not isinstance(spec, PortfolioSpec):
        raise TypeError(f"spec must be a portfolio strategy, got {type(spec).__name__}")
    if not isinstance(panel, Panel):
        raise TypeError(
            f"a portfolio check takes a research.panel.Panel, got {type(panel).__name__}"
        )
    params = spec.make_params(params)
    needed = spec.lookback(params) + 1 + extra
    if len(panel) < needed:
        raise ValueError(
            f"checking {spec.name!r} with {params} needs at least {needed} grid "
            f"bars (look-back + {1 + extra}), got {len(panel)}: pass a longer "
            "history"
        )
    return params, spec.evaluate(panel, params)
