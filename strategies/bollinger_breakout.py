"""Bollinger breakout with an ATR trailing stop on closes (long only).

Rules, decided at bar ``t``'s close and filled at ``t+1``'s open:

* entry event at ``s``: ``close[s] > upper[s]``, the upper Bollinger band
  (``sma(close, window) + num_std * population std``, current close included);
* the position opened by the most recent entry event ``s`` within the last ``max_hold`` bars
  is held while, for every later bar ``u <= t``,
  ``close[u] >= max(close[s..u]) - atr_multiplier * atr(window=atr_window)[u]`` (Wilder ATR);
  the first close below that trailing level exits, and stays out until the next entry event.
  Each entry event re-arms the trailing high and the ``max_hold``-bar time stop
  (:func:`research.indicators.trailing_exit_position`).

Warm-up: ``warmup = max_hold - 1 + max(window - 1, converged_warmup(1 / atr_window) + 1)``
bars of ``nan`` (flat): every band and ATR value the rule reads is then an exact window value
or has forgotten its seed, so the target on ``bars[t - warmup : t + 1]`` equals the
full-history target bit for bit.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from research.indicators import (
    atr,
    bollinger,
    converged_warmup,
    trailing_exit_position,
    wilder_alpha,
)
from research.types import Bars, StrategySpec


class Params(NamedTuple):
    """Parameters: band window (bars) and width (std), ATR window and multiple, time stop."""

    window: int = 20
    num_std: float = 2.0
    atr_window: int = 14
    atr_multiplier: float = 3.0
    max_hold: int = 100


def check(p: Params) -> None:
    """Raise ``ValueError`` for windows below 2 bars, ``max_hold < 1`` or negative widths."""
    for name in ("window", "atr_window"):
        if getattr(p, name) < 2:
            raise ValueError(f"{name} ({getattr(p, name)}) must be at least 2 bars")
    if p.max_hold < 1:
        raise ValueError(f"max_hold ({p.max_hold}) must be at least 1 bar")
    if not p.num_std > 0:
        raise ValueError(f"num_std ({p.num_std}) must be positive, e.g. 2.0")
    if not p.atr_multiplier > 0:
        raise ValueError(f"atr_multiplier ({p.atr_multiplier}) must be positive, e.g. 3.0")


def warmup(p: Params) -> int:
    """``max_hold - 1 + max(window - 1, ceil(60 * atr_window) + 1)``."""
    atr_bars = converged_warmup(wilder_alpha(p.atr_window)) + 1
    return p.max_hold - 1 + max(p.window - 1, atr_bars)


def _compute(bars: Bars, p: Params) -> dict[str, np.ndarray]:
    bands = bollinger(bars.close, p.window, p.num_std)
    average_range = atr(bars.high, bars.low, bars.close, p.atr_window)
    position, stop_level = trailing_exit_position(
        bars.close > bands.upper, bars.close, p.atr_multiplier * average_range, p.max_hold
    )
    return {
        "bb_middle": bands.middle,
        "bb_upper": bands.upper,
        "bb_lower": bands.lower,
        "trailing_stop": stop_level,
        "atr": average_range,
        "position": position,
    }


def evaluate(bars: Bars, p: Params) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Target and indicators in one pass."""
    values = _compute(bars, p)
    out = values.pop("position")
    out[: warmup(p)] = np.nan
    return out, values


def indicators(bars: Bars, p: Params) -> dict[str, np.ndarray]:
    """Bands (``bb_middle``, ``bb_upper``, ``bb_lower``), ``trailing_stop`` (the exit level
    while long, else ``nan``) and ``atr``."""
    return evaluate(bars, p)[1]


def target(bars: Bars, p: Params) -> np.ndarray:
    """``1.0`` while long by the rule above, ``0.0`` flat, ``nan`` in warm-up."""
    return evaluate(bars, p)[0]


SPEC = StrategySpec(
    name="bollinger_breakout",
    params=Params,
    target=target,
    warmup=warmup,
    indicators=indicators,
    overlays=("bb_middle", "bb_upper", "bb_lower", "trailing_stop"),
    sweep={"window": range(10, 61, 5), "num_std": (1.5, 2.0, 2.5, 3.0),
           "atr_multiplier": (1.5, 2.0, 2.5, 3.0, 4.0)},
    check=check,
    long_only=True,
    description=(
        "Long when the close breaks above the upper Bollinger band; out when a close falls "
        "more than atr_multiplier ATRs below the highest close since the latest breakout, or "
        "max_hold bars after it."
    ),
)
