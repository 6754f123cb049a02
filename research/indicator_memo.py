"""The scoped indicator memo: :func:`indicator_cache` (pure core: numpy only).

A sweep runs one strategy with many parameter sets over the same bars; most of them share
indicators (the same ``sma(close, 20)`` for every ``slow``). Inside ``with indicator_cache():``
the wrappers of :mod:`research.indicators` remember their results, keyed by their input array
objects and their parameters, so that each distinct indicator is computed once per scope.
Outside a scope nothing is remembered.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np

#: Default bound of one :func:`indicator_cache` scope (least recently used results go first).
DEFAULT_CACHE_BYTES = 256 * 2**20


class IndicatorMemo:
    """The results remembered by one :func:`indicator_cache` scope (least recently used first).

    Each entry keeps a reference to its input arrays, so their ``id`` cannot be reused by
    another array while the entry lives.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self.entries: OrderedDict[tuple, tuple[tuple[np.ndarray, ...], Any, int]] = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple) -> Any:
        entry = self.entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    def put(self, key: tuple, inputs: tuple[np.ndarray, ...], value: Any) -> None:
        size = sum(a.nbytes for a in _arrays_of(value))
        if size > self.max_bytes:
            return
        while self.entries and self.nbytes + size > self.max_bytes:
            _, (_, _, evicted) = self.entries.popitem(last=False)
            self.nbytes -= evicted
        self.entries[key] = (inputs, value, size)
        self.nbytes += size


_ACTIVE_MEMO: ContextVar[IndicatorMemo | None] = ContextVar("candela_indicator_memo", default=None)


@contextmanager
def indicator_cache(max_bytes: int = DEFAULT_CACHE_BYTES) -> Iterator[IndicatorMemo]:
    """Scope in which the indicator wrappers remember their results.

    Within the ``with`` block, a wrapper called again with the **same input array objects**
    (``bars.close`` itself, or the Line a strategy receives for it, which is the same object at
    every evaluation over the same bars; not a copy or a new slice) and the same parameters
    returns the values it computed the first time, instead of recomputing them; results are bit
    for bit what a fresh call returns. Since callers share them, results from inside a scope
    are **read-only** arrays (writing to one raises
    "assignment destination is read-only": copy it first, ``np.array(value)``); a copy per call
    would cost a sweep about as much as the moving averages themselves. Inputs must not be
    modified in place inside the scope. Inputs that need a conversion (another dtype,
    non-contiguous) are not remembered. The memo holds at most ``max_bytes`` of results (least
    recently used dropped first), lives in the current thread / context only, and is dropped
    when the block ends; scopes nest (the inner one is used).

    Used by each worker batch of :func:`research.sweep`.
    """
    memo = IndicatorMemo(max_bytes)
    token = _ACTIVE_MEMO.set(memo)
    try:
        yield memo
    finally:
        _ACTIVE_MEMO.reset(token)


def _arrays_of(value: Any) -> tuple[np.ndarray, ...]:
    return tuple(value) if isinstance(value, tuple) else (value,)


def _read_only(value: Any) -> Any:
    for array in _arrays_of(value):
        array.flags.writeable = False
    return value


def _memoized(
    name: str, inputs: tuple[tuple[np.ndarray, Any], ...], params: tuple, compute: Callable[[], Any]
) -> Any:
    """``compute()``, remembered in the active :func:`indicator_cache` scope if there is one
    and every input is the caller's own array: ``inputs`` holds ``(array, original)`` pairs
    from the wrappers, ``original`` being the object the caller passed when ``array`` is its
    memory unconverted, else ``None``."""
    memo = _ACTIVE_MEMO.get()
    if memo is None:
        return compute()
    originals = tuple(original for _, original in inputs)
    if any(original is None for original in originals):
        return compute()
    key = (name, tuple(map(id, originals)), params)
    value = memo.get(key)
    if value is None:
        value = _read_only(compute())
        memo.put(key, originals, value)
    return value
