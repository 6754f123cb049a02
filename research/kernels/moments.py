"""The compiled part of :mod:`research.validation.moments`: the six sums of a run's bar returns
per segment (see that module for what they are and what they give).

Kept in the kernel package (pure core) because the sweep's fused row kernel
(:mod:`research.kernels.sweep_row`) calls these same functions on the returns it produces block
by block, and must get the very bits :func:`segment_moments_nb` gets from a whole equity curve.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

N_MOMENTS = 6
COUNT, SUM, SUM_SQ, SUM_CUBE, SUM_QUAD, SUM_LOG = range(N_MOMENTS)


#: Returns computed at a time into a scratch block (stays in the cache between the passes).
BLOCK = 2048


@njit(cache=True, error_model="numpy")
def _returns_nb(equity, previous, out):
    """``out[j] = equity[j] / equity[j - 1] - 1`` with ``equity[-1] = previous``."""
    out[0] = equity[0] / previous - 1.0
    for j in range(1, len(equity)):
        out[j] = equity[j] / equity[j - 1] - 1.0


@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _power_sums_nb(r):
    """``(sum(r), sum(r**2), sum(r**3), sum(r**4))``; reassociation lets the compiler split
    the sums into vector lanes (as numpy's pairwise sums do): the last bit may differ between
    machines, never between two calls on one machine."""
    s1 = s2 = s3 = s4 = 0.0
    for j in range(len(r)):
        x = r[j]
        x2 = x * x
        s1 += x
        s2 += x2
        s3 += x2 * x
        s4 += x2 * x2
    return s1, s2, s3, s4


@njit(cache=True, error_model="numpy")
def segment_moments_nb(equity, initial_cash, cuts, out):
    """Fill ``out[j]`` with the six sums (module docstring) of the returns in
    ``[cuts[j], cuts[j + 1])``.

    The sum of ``log(1 + r)`` over a segment is ``log(equity[stop - 1] / equity[start - 1])``
    (the product of ``1 + r`` telescopes), computed as such. About 0.4 ms per 100,000 bars.

    Parameters
    ----------
    equity : ndarray of float64, shape (n,)
        Equity at each processed bar's close.
    initial_cash : float
        Equity before bar 0.
    cuts : ndarray of int64, shape (k + 1,)
        Increasing bar indices; ``cuts[0] >= 0``, ``cuts[-1] <= n``.
    out : ndarray of float64, shape (k, 6)
        Output; a segment past the end of ``equity`` (a run stopped early) keeps count 0.
    """
    n = len(equity)
    out[:] = 0.0
    scratch = np.empty(BLOCK)
    for j in range(len(cuts) - 1):
        start = cuts[j]
        stop = min(cuts[j + 1], n)
        if start >= stop:
            continue
        first = equity[start - 1] if start > 0 else initial_cash
        previous = first
        s1 = s2 = s3 = s4 = 0.0
        for block in range(start, stop, BLOCK):
            end = min(block + BLOCK, stop)
            r = scratch[: end - block]
            _returns_nb(equity[block:end], previous, r)
            previous = equity[end - 1]
            a, b, c, d = _power_sums_nb(r)
            s1 += a
            s2 += b
            s3 += c
            s4 += d
        out[j, COUNT] = stop - start
        out[j, SUM] = s1
        out[j, SUM_SQ] = s2
        out[j, SUM_CUBE] = s3
        out[j, SUM_QUAD] = s4
        out[j, SUM_LOG] = math.log(equity[stop - 1] / first)
