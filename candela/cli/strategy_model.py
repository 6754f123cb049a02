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
        out.append(
            Parameter(
                name,
                kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind)),
                defaults.get(name),
                spec.sweep.get(name),
            )
        )
    return out


def constraints(spec) -> list[str]:
    """The strategy's constraints between parameters, as text (e.g. ``"fast < slow"``)."""
    return [constraint.text for constraint in spec.constraints]


def lookback(spec, params) -> int:
    """Bars before the first defined target for ``params``."""
    return spec.lookback(params)


def history_window(spec, params) -> int:
    """Bars the runner loads per decision for ``params``."""
    return spec.history_window(params)


def bars_for_checks(spec, params) -> int:
    """The fewest bars on which the look-ahead and history-window checks can run: the look-back
    and two bars (one cut point). Fewer bars than the history window are fine: the windows are
    clamped at the first bar, as the runner's are."""
    return lookback(spec, params) + 2


def lookahead_check(spec, bars, params):
    """The look-ahead check (:func:`research.checks.lookahead`); its report has ``ok``."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from research.checks import lookahead

    return lookahead(spec, bars, params)


def history_check(spec, bars, params):
    """The history-window check (:func:`research.checks.history_check`); its report has ``ok``."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from research.checks import history_check as check

    return check(spec, bars, params)


def backtest_from(spec, bars, params, costs, *, stops, risk, initial_cash, start_ts=None):
    """Backtest ``spec`` on ``bars`` trading from the first bar closing at or after ``start_ts``
    (ms UTC), the earlier bars serving as history only: what a bot with that ``start`` does
    (:func:`research.backtest` with ``start``)."""
    # imported when the command runs, not at start-up: keeps `candela --help` light
    import pandas as pd

    from research.backtesting import backtest

    start = None if start_ts is None else pd.Timestamp(int(start_ts), unit="ms", tz="UTC")
    return backtest(
        spec, bars, params, costs, stops=stops, risk=risk, initial_cash=initial_cash, start=start
    )
