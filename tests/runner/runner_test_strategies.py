"""Strategies that misbehave on purpose, injected into bots as ``runner_test_strategies:NAME``.

They run the shipped ``sma_cross`` so that, when they do not raise, they trade exactly like it.

* ``broken`` raises whenever the window ends at or after bar ``fail_at_ts`` (every retry fails).
* ``slow`` takes a millisecond per decision (a catch-up that surely lasts a while).
* ``flaky`` fails at bar ``fail_at_ts`` the first ``failures`` times it decides that bar, then
  works (a process-wide counter: use it in-process only). Until then a window that holds the
  bar and ends after it (a replay's block of bars, see :mod:`runner.block`) raises too, without
  counting: the bar fails as long as it has failures left, whichever path decides it.
"""

from __future__ import annotations

import time

from research.strategy_model import strategy
from strategies.registry import get_strategy

_SMA = get_strategy("sma_cross")
_seen: dict[tuple[str, int], int] = {}


@strategy(long_only=True, constraints=["1 <= fast < slow"])
def broken(bars, fast: int = 10, slow: int = 50, fail_at_ts: int = 0, failures: int = 1_000_000):
    """sma_cross, raising from bar ``fail_at_ts`` on."""
    if len(bars) and fail_at_ts and bars.ts[-1] >= fail_at_ts:
        raise RuntimeError(f"deliberate failure at bar {int(bars.ts[-1])}")
    return _SMA.function(bars, fast, slow)


@strategy(long_only=True, constraints=["1 <= fast < slow"])
def flaky(bars, fast: int = 10, slow: int = 50, fail_at_ts: int = 0, failures: int = 1_000_000):
    """sma_cross, failing at bar ``fail_at_ts`` the first ``failures`` times it decides it."""
    key = ("flaky", fail_at_ts)
    if len(bars) and fail_at_ts in bars.ts and _seen.get(key, 0) < failures:
        if bars.ts[-1] == fail_at_ts:
            _seen[key] = _seen.get(key, 0) + 1
        raise RuntimeError(f"deliberate transient failure at bar {fail_at_ts}")
    return _SMA.function(bars, fast, slow)


@strategy(long_only=True, constraints=["1 <= fast < slow"])
def slow(bars, fast: int = 10, slow: int = 50):
    """sma_cross, a millisecond slower per decision."""
    time.sleep(0.001)
    return _SMA.function(bars, fast, slow)


BROKEN, FLAKY = broken, flaky


# --------------------------------------------------------------------------- portfolios

from research.portfolio_model import EQUAL_WEIGHT, allocate  # noqa: E402

sma_book = allocate(_SMA, EQUAL_WEIGHT, name="sma_book")
"""The shipped sma_cross on every market of a universe, a fixed slot of 1/m each, on change."""
