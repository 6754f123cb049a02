"""Strategies that misbehave on purpose, injected into bots as ``runner_test_strategies:NAME``.

They wrap the shipped ``sma_cross`` so that, when they do not raise, they trade exactly like it.

* ``BROKEN`` raises whenever the window ends at or after bar ``fail_at_ts`` (every retry fails).
* ``FLAKY`` raises the first ``failures`` times it sees the bar ``fail_at_ts``, then works
  (a process-wide counter: use it in-process only).
"""

from __future__ import annotations

from typing import NamedTuple

from research.types import StrategySpec
from strategies.registry import get_strategy

_SMA = get_strategy("sma_cross")
_seen: dict[tuple[str, int], int] = {}


class Params(NamedTuple):
    fast: int = 10
    slow: int = 50
    fail_at_ts: int = 0
    failures: int = 1_000_000


def _sma_params(p: Params):
    return _SMA.make_params(fast=p.fast, slow=p.slow)


def _broken_target(bars, p: Params):
    if len(bars) and p.fail_at_ts and bars.ts[-1] >= p.fail_at_ts:
        raise RuntimeError(f"deliberate failure at bar {int(bars.ts[-1])}")
    return _SMA.target(bars, _sma_params(p))


def _flaky_target(bars, p: Params):
    if len(bars) and bars.ts[-1] == p.fail_at_ts:
        key = ("flaky", p.fail_at_ts)
        _seen[key] = _seen.get(key, 0) + 1
        if _seen[key] <= p.failures:
            raise RuntimeError(f"deliberate transient failure #{_seen[key]} at bar {p.fail_at_ts}")
    return _SMA.target(bars, _sma_params(p))


def _indicators(bars, p: Params):
    return _SMA.indicators(bars, _sma_params(p))


def _warmup(p: Params) -> int:
    return _SMA.warmup(_sma_params(p))


BROKEN = StrategySpec(name="broken", params=Params, target=_broken_target, warmup=_warmup,
                      indicators=_indicators, long_only=True)
FLAKY = StrategySpec(name="flaky", params=Params, target=_flaky_target, warmup=_warmup,
                     indicators=_indicators, long_only=True)
