"""SMA cross: long while the fast simple moving average is above the slow one.

Rules (decided at bar ``t``'s close, filled at ``t+1``'s open):

* target ``+1.0`` while ``sma(close, fast)[t] > sma(close, slow)[t]``, else ``0.0``
  (long only; equal averages mean flat);
* warm-up: the first ``slow - 1`` bars have target ``nan`` (flat): ``warmup = slow - 1``.

Both averages are exact window sums (:func:`research.indicators.sma`), so ``target[t]`` is a
pure function of ``bars[t - warmup : t + 1]``, bit for bit.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from research.indicators import sma
from research.types import Bars, StrategySpec
from strategies.crossover import check_fast_below_slow


class Params(NamedTuple):
    """Parameters: window lengths in bars, ``fast < slow``."""

    fast: int = 10
    slow: int = 50


def warmup(p: Params) -> int:
    """Bars before the first decision: ``slow - 1``."""
    return p.slow - 1


def indicators(bars: Bars, p: Params) -> dict[str, np.ndarray]:
    """``sma_fast`` and ``sma_slow`` of the closes."""
    return {"sma_fast": sma(bars.close, p.fast), "sma_slow": sma(bars.close, p.slow)}


def evaluate(bars: Bars, p: Params) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Target and indicators in one pass."""
    values = indicators(bars, p)
    out = (values["sma_fast"] > values["sma_slow"]).astype(np.float64)
    out[: warmup(p)] = np.nan
    return out, values


def target(bars: Bars, p: Params) -> np.ndarray:
    """``1.0`` where ``sma_fast > sma_slow``, ``0.0`` otherwise, ``nan`` in warm-up."""
    return evaluate(bars, p)[0]


SPEC = StrategySpec(
    name="sma_cross",
    params=Params,
    target=target,
    warmup=warmup,
    indicators=indicators,
    overlays=("sma_fast", "sma_slow"),
    sweep={"fast": range(5, 55), "slow": range(20, 220, 4)},
    check=check_fast_below_slow,
    evaluate=evaluate,
    long_only=True,
    description=(
        "Long while the fast simple moving average of closes is above the slow one, flat "
        "otherwise. Warm-up: slow - 1 bars."
    ),
)
