"""Where a boolean target changes, found fast, and the bars between marked to market.

A sweep row's execution (:mod:`research.kernels.sweep_row`) runs the execution function only on
the bars after a change of the target, and marks the others: these are its two inner loops.

* :func:`next_flag_change` finds the next change eight flags at a time;
* :func:`find_changes` keeps ``AHEAD`` changes found ahead of the bar being run, in a small
  ring, and prefetches the data of the bar after each (where its order fills): the marking
  between orders reads only the closes, so without the hint each order bar waited for main
  memory;
* :func:`mark` marks a stretch of bars with a loop the compiler vectorises.

All are inlined into the caller's loop.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from research.kernels.intrinsics import prefetch, trailing_zeros

#: Flag changes found (and their order bars prefetched) ahead of the bar being run.
AHEAD = 4
#: Entries of the ring that holds them (a power of two above ``AHEAD``).
RING = 16

_INLINED = {"cache": True, "error_model": "numpy", "inline": "always"}


@njit(**_INLINED)
def mark(out, close, cash, position):
    """``out[b] = cash + position * close[b]``: no test per bar, and indices from 0 that the
    compiler knows are not negative, so the loop is vectorised with plain loads and stores."""
    for b in range(len(out)):
        out[b] = cash + position * close[b]


@njit(**_INLINED)
def next_flag_change(flags, j, end, flag):
    """The first bar in ``[j, end)`` whose flag differs from ``flag`` (0 or 1), or ``end``.

    Eight flags at a time: in the word holding bar ``j`` and the ones after it, ``word ^
    pattern`` has a non-zero byte where a flag differs (the flags of a boolean target are 0
    or 1), and its trailing zero bits locate the first (bytes are little-endian); the last
    bytes, short of a whole word, one at a time."""
    pattern = np.uint64(0x0101_0101_0101_0101) if flag else np.uint64(0)
    n_words = len(flags) // 8
    words = flags[: n_words * 8].view(np.uint64)
    w = j // 8
    if w < n_words:
        diff = (words[w] ^ pattern) >> np.uint64(8 * (j % 8))
        k = j
        while diff == 0:
            w += 1
            k = 8 * w
            if w >= n_words or k >= end:
                break
            diff = words[w] ^ pattern
        if diff != 0:
            return min(k + int(trailing_zeros(diff)) // 8, end)
        j = max(j, k)
    while j < end and flags[j] == flag:
        j += 1
    return min(j, end)


@njit(**_INLINED)
def find_changes(flags, ring, head, tail, ahead, end, ts, open_, high, low):
    """Keep ``AHEAD`` flag changes found ahead: from bar ``ahead`` (the last change found, or
    where the search started), the next bars whose flag differs from the bar before, each
    put in ``ring`` (entries ``head`` to ``tail``) with the data of the bar after it (where
    its order would fill) prefetched. Returns ``(tail, ahead)``; ``ahead`` is ``end`` once
    no change is left before ``end``."""
    while tail - head < AHEAD and ahead < end:
        ahead = next_flag_change(flags, ahead + 1, end, 1 if flags[ahead] != 0 else 0)
        if ahead < end:
            ring[tail & (RING - 1)] = ahead
            tail += 1
            if ahead + 1 < end:
                prefetch(ts, ahead)
                prefetch(ts, ahead + 1)
                prefetch(open_, ahead + 1)
                prefetch(high, ahead + 1)
                prefetch(low, ahead + 1)
    return tail, ahead
