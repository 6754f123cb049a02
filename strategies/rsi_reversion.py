"""RSI mean reversion: buy oversold, sell when the RSI has recovered; optional mirrored shorts.

Events at bar ``t`` (``r = rsi(close, window)[t]``, Wilder smoothing):

* long entry ``r < lower``; long exit ``r > exit_level``;
* with ``allow_short``: short entry ``r > upper``; short exit ``r < exit_level``.

While the close has been unchanged for ``window`` bars or more (``unchanged_run >= window``)
the RSI is **stale** and bar ``t`` has no event. (With no price change both Wilder averages
decay towards zero together, and their ratio would keep echoing whatever moved before,
however long ago: no decision is drawn from it, which also keeps the warm-up exact.)

Position (decided at ``t``'s close, filled at ``t+1``'s open), by
:func:`research.indicators.event_position`: the side of the most recent entry event within the
last ``max_hold`` bars, unless an exit event of that side came after it; flat otherwise. A
position is therefore held at most ``max_hold`` bars after its latest entry event (a time
stop), and every bar that is still oversold re-arms it. Since ``lower < exit_level < upper``,
a short entry is always also a long exit and vice versa.

Warm-up: ``warmup = converged_warmup(1 / window) + 1 + max_hold - 1`` bars of ``nan`` (flat):
the RSI values the rule reads (the last ``max_hold``) have then forgotten their seed, so the
target on ``bars[t - warmup : t + 1]`` equals the full-history target bit for bit.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from research.indicators import converged_warmup, event_position, rsi, unchanged_run, wilder_alpha
from research.types import Bars, StrategySpec


class Params(NamedTuple):
    """Parameters: RSI window (bars), thresholds (RSI points), time stop, short side."""

    window: int = 14
    lower: float = 30.0
    exit_level: float = 50.0
    upper: float = 70.0
    max_hold: int = 100
    allow_short: bool = False


def check(p: Params) -> None:
    """Raise ``ValueError`` unless ``window >= 2``, ``max_hold >= 1`` and
    ``0 <= lower < exit_level < upper <= 100``."""
    if p.window < 2:
        raise ValueError(f"window ({p.window}) must be at least 2 bars")
    if p.max_hold < 1:
        raise ValueError(f"max_hold ({p.max_hold}) must be at least 1 bar")
    if not 0.0 <= p.lower < p.exit_level < p.upper <= 100.0:
        raise ValueError(
            f"thresholds must satisfy 0 <= lower ({p.lower}) < exit_level ({p.exit_level}) "
            f"< upper ({p.upper}) <= 100: reorder them"
        )


def warmup(p: Params) -> int:
    """``ceil(60 * window) + 1`` bars for the RSI to forget its seed, plus ``max_hold - 1``."""
    return converged_warmup(wilder_alpha(p.window)) + 1 + p.max_hold - 1


def indicators(bars: Bars, p: Params) -> dict[str, np.ndarray]:
    """``rsi`` of the closes."""
    return {"rsi": rsi(bars.close, p.window)}


def evaluate(bars: Bars, p: Params) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Target and indicators in one pass."""
    values = indicators(bars, p)
    return _positions(bars, p, values["rsi"]), values


def target(bars: Bars, p: Params) -> np.ndarray:
    """``+1`` long, ``-1`` short, ``0`` flat by the rule above; ``nan`` in warm-up."""
    return evaluate(bars, p)[0]


def _positions(bars: Bars, p: Params, r: np.ndarray) -> np.ndarray:
    live = unchanged_run(bars.close) < p.window  # a stale RSI makes no event
    no_events = np.zeros(len(r), dtype=bool)
    out = event_position(
        live & (r < p.lower),
        live & (r > p.exit_level),
        (live & (r > p.upper)) if p.allow_short else no_events,
        (live & (r < p.exit_level)) if p.allow_short else no_events,
        max_hold=p.max_hold,
    )
    out[: warmup(p)] = np.nan
    return out


SPEC = StrategySpec(
    name="rsi_reversion",
    params=Params,
    target=target,
    warmup=warmup,
    indicators=indicators,
    overlays=(),
    sweep={"window": range(5, 31), "lower": range(15, 41, 5), "exit_level": range(45, 66, 5)},
    check=check,
    evaluate=evaluate,
    long_only=False,
    description=(
        "Mean reversion on the Wilder RSI: long when RSI < lower, out when RSI > exit_level; "
        "with allow_short, short when RSI > upper, out when RSI < exit_level. A position is "
        "held at most max_hold bars after its latest entry signal."
    ),
)
