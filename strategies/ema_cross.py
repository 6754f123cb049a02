"""EMA cross: long while the fast EMA is above the slow one, short while it is below.

Rules (decided at bar ``t``'s close, filled at ``t+1``'s open):

* target ``+1.0`` while ``ema(close, fast)[t] > ema(close, slow)[t]``, ``-1.0`` while it is
  below, ``0.0`` when they are equal;
* warm-up: ``warmup = converged_warmup(2 / (slow + 1)) = ceil(30 * (slow + 1))`` bars, during
  which the target is ``nan`` (flat). That is long enough for both EMAs to forget their seed
  (the first close of whatever history they are given; see :mod:`research.indicators`), so
  ``target[t]`` computed on ``bars[t - warmup : t + 1]`` equals the full-history value bit for
  bit — the runner's parity contract. (Caveat: if the close stays exactly unchanged for longer
  than the warm-up, a window starting inside that stretch seeds both EMAs at the constant
  while the full history may sit an ulp away from it; no series in the market data the tests read comes
  close — the longest unchanged stretch there is 35 bars.)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from research.indicators import converged_warmup, ema, ema_alpha
from research.types import Bars, StrategySpec
from strategies.crossover import check_fast_below_slow


class Params(NamedTuple):
    """Parameters: EMA spans in bars, ``fast < slow``."""

    fast: int = 12
    slow: int = 26


def warmup(p: Params) -> int:
    """Bars before the first decision: ``ceil(60 / alpha_slow)`` with ``alpha = 2/(slow+1)``."""
    return converged_warmup(ema_alpha(p.slow))


def indicators(bars: Bars, p: Params) -> dict[str, np.ndarray]:
    """``ema_fast`` and ``ema_slow`` of the closes."""
    return {"ema_fast": ema(bars.close, p.fast), "ema_slow": ema(bars.close, p.slow)}


def evaluate(bars: Bars, p: Params) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Target and indicators in one pass."""
    values = indicators(bars, p)
    out = np.sign(values["ema_fast"] - values["ema_slow"])
    out[: warmup(p)] = np.nan
    return out, values


def target(bars: Bars, p: Params) -> np.ndarray:
    """``+1`` / ``-1`` / ``0`` by the sign of ``ema_fast - ema_slow``; ``nan`` in warm-up."""
    return evaluate(bars, p)[0]


SPEC = StrategySpec(
    name="ema_cross",
    params=Params,
    target=target,
    warmup=warmup,
    indicators=indicators,
    overlays=("ema_fast", "ema_slow"),
    sweep={"fast": range(5, 55, 2), "slow": range(20, 120, 4)},
    check=check_fast_below_slow,
    evaluate=evaluate,
    long_only=False,
    description=(
        "Long while the fast EMA of closes is above the slow EMA, short while below. Warm-up: "
        "ceil(30 * (slow + 1)) bars so that both EMAs have forgotten their seed."
    ),
)
