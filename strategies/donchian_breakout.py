"""Donchian (turtle) breakout: enter on a new N-bar extreme, exit on an M-bar opposite extreme.

Events at bar ``t``, against channels of the bars **before** ``t`` (so bar ``t`` can break
them): with ``entry_high[t] = max(high[t-entry_window : t])`` and so on,

* long entry ``close[t] > entry_high[t]``; long exit ``close[t] < exit_low[t]``
  (``exit_low[t] = min(low[t-exit_window : t])``);
* with ``allow_short``: short entry ``close[t] < entry_low[t]``; short exit
  ``close[t] > exit_high[t]``.

Position (decided at ``t``'s close, filled at ``t+1``'s open), by
:func:`research.indicators.event_position`: the side of the most recent entry event within the
last ``max_hold`` bars unless an exit event of that side came after it; flat otherwise (a
``max_hold``-bar time stop, re-armed by every new breakout).

Warm-up: ``warmup = max_hold - 1 + max(entry_window, exit_window)`` bars of ``nan`` (flat);
channels are exact window extremes, so the target on ``bars[t - warmup : t + 1]`` equals the
full-history target bit for bit.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from research.indicators import donchian, event_position, shift
from research.types import Bars, StrategySpec


class Params(NamedTuple):
    """Parameters: entry and exit channel lengths (bars), time stop, short side."""

    entry_window: int = 20
    exit_window: int = 10
    max_hold: int = 100
    allow_short: bool = False


def check(p: Params) -> None:
    """Raise ``ValueError`` for windows below 1 bar or ``exit_window > entry_window``."""
    for name in ("entry_window", "exit_window", "max_hold"):
        if getattr(p, name) < 1:
            raise ValueError(f"{name} ({getattr(p, name)}) must be at least 1 bar")
    if p.exit_window > p.entry_window:
        raise ValueError(
            f"exit_window ({p.exit_window}) must not exceed entry_window ({p.entry_window}): "
            "turtle exits use the shorter channel; swap them"
        )


def warmup(p: Params) -> int:
    """``max_hold - 1 + max(entry_window, exit_window)``."""
    return p.max_hold - 1 + max(p.entry_window, p.exit_window)


def indicators(bars: Bars, p: Params) -> dict[str, np.ndarray]:
    """Channels of the bars before each bar: ``entry_high``, ``entry_low``, ``exit_high``,
    ``exit_low``."""
    entry = donchian(bars.high, bars.low, p.entry_window)
    leave = donchian(bars.high, bars.low, p.exit_window)
    return {
        "entry_high": shift(entry.upper),
        "entry_low": shift(entry.lower),
        "exit_high": shift(leave.upper),
        "exit_low": shift(leave.lower),
    }


def evaluate(bars: Bars, p: Params) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Target and indicators in one pass."""
    values = indicators(bars, p)
    return _positions(bars, p, values), values


def target(bars: Bars, p: Params) -> np.ndarray:
    """``+1`` long, ``-1`` short, ``0`` flat by the rule above; ``nan`` in warm-up."""
    return evaluate(bars, p)[0]


def _positions(bars: Bars, p: Params, c: dict[str, np.ndarray]) -> np.ndarray:
    close = bars.close
    no_events = np.zeros(len(close), dtype=bool)
    out = event_position(
        close > c["entry_high"],
        close < c["exit_low"],
        (close < c["entry_low"]) if p.allow_short else no_events,
        (close > c["exit_high"]) if p.allow_short else no_events,
        max_hold=p.max_hold,
    )
    out[: warmup(p)] = np.nan
    return out


SPEC = StrategySpec(
    name="donchian_breakout",
    params=Params,
    target=target,
    warmup=warmup,
    indicators=indicators,
    overlays=("entry_high", "entry_low", "exit_high", "exit_low"),
    sweep={"entry_window": range(10, 61, 5), "exit_window": range(5, 31, 5)},
    check=check,
    evaluate=evaluate,
    long_only=False,
    description=(
        "Turtle-style breakout: long on a close above the previous entry_window-bar high, out "
        "on a close below the previous exit_window-bar low; shorts mirrored with allow_short. "
        "A position is held at most max_hold bars after its latest breakout."
    ),
)
