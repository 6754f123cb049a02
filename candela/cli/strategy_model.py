"""What the commands need to know of a strategy, behind small functions.

``candela strategies``, ``candela bots create`` and ``candela backtest --bot`` describe, check
and backtest strategies through these functions only, so that they follow the strategy model
(look-back, history window, constraints, checks, a backtest that starts at a given bar) from
this one module.

Terms (docs/writing-a-strategy.md):

* **look-back**: bars before the strategy's first defined target (it trades from there);
* **history window**: bars the runner loads for each decision so that it equals the
  full-history decision bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Parameter:
    """One strategy parameter as ``candela strategies show`` prints it."""

    name: str
    type: str
    default: Any
    sweep: Any  # the default sweep values (a range, a list, ...) or None


def parameters(spec) -> list[Parameter]:
    """The strategy's parameters in declaration order: name, type, default, sweep range."""
    annotations = getattr(spec.params, "__annotations__", {})
    defaults = spec.params._field_defaults
    out = []
    for name in spec.params._fields:
        kind = annotations.get(name, type(defaults.get(name)))
        kind = getattr(kind, "__forward_arg__", kind)  # a postponed annotation: its text
        out.append(Parameter(name, kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind)),
                             defaults.get(name), spec.sweep.get(name)))
    return out


def constraints(spec) -> list[str]:
    """The strategy's constraints between parameters, as text (e.g. ``"fast < slow"``).

    Today's model has a ``check(params)`` function: its docstring's first line stands for it.
    """
    if spec.check is None:
        return []
    doc = (spec.check.__doc__ or "").strip()
    return [doc.splitlines()[0] if doc else f"checked by {spec.check.__name__}()"]


def lookback(spec, params) -> int:
    """Bars before the first defined target for ``params`` (today's model: ``warmup``)."""
    return int(spec.warmup(params))


def history_window(spec, params) -> int:
    """Bars the runner loads per decision for ``params`` (today's model: ``required_bars``)."""
    return int(spec.required_bars(params))


def bars_for_checks(spec, params) -> int:
    """The fewest bars on which the look-ahead and history-window checks can run."""
    return history_window(spec, params) + 1


def lookahead_check(spec, bars, params):
    """The look-ahead check (:func:`research.checks.lookahead`); its report has ``ok``."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from research.checks import lookahead

    return lookahead(spec, bars, params)


def history_check(spec, bars, params):
    """The history-window check (today :func:`research.checks.warmup_check`); its report has ``ok``."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from research.checks import warmup_check

    return warmup_check(spec, bars, params)


def backtest_from(spec, bars, params, costs, *, stops, risk, initial_cash, start_ts=None):
    """Backtest ``spec`` on ``bars`` trading from the first bar closing at or after ``start_ts``,
    the earlier bars serving as history only: what a bot with that ``start`` does.

    Today's model: the bars before the first traded one are cut to the history window the
    runner gives the bot there; the strategy's own warm-up mask keeps them flat.
    """
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from research.backtesting import backtest

    params = spec.make_params(params)
    if start_ts is not None:
        first = int(np.searchsorted(bars.ts, start_ts, side="left"))
        bars = bars[max(0, first - history_window(spec, params) + 1):]
    return backtest(spec, bars, params, costs, stops=stops, risk=risk, initial_cash=initial_cash)
