"""The inner loop of the PBO by CSCV, compiled (for
:func:`research.validation.overfitting.probability_of_backtest_overfitting`).

For each split of the ``S`` blocks into two halves, every combination's per-bar Sharpe ratio in
each half (from its count, sum and sum of squares of returns per block), the in-sample winner,
and the winner's relative rank out of sample. Split ``k`` and split ``C(S, S/2) - 1 - k`` are
each other's halves swapped, so one pass over the first half of the splits serves both. With the
blocks laid out block x moment x combination, each step is a loop over the combinations that the
compiler vectorises, and nothing of size splits x combinations is built: about 10 ns per
combination and split where the array version took some 70.

Kept in the pure core (numpy and numba only), like the other kernels.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy", inline="always")
def _sharpe_into(count, total, squares, out):
    """``out[m]``: the per-bar Sharpe ratio of ``count[m]`` returns summing to ``total[m]``
    with squares summing to ``squares[m]`` (sample standard deviation); ``0`` for a flat half
    (mean and deviation 0), ``-inf`` where it is not finite, so that it is never picked and
    ranks last. Each value is what numpy's array expressions of the module give for it."""
    for m in range(len(out)):
        n, s, q = count[m], total[m], squares[m]
        mean = s / n
        variance = (q - s * mean) / (n - 1.0)
        if not (variance >= 0.0 or variance != variance):  # numpy.maximum(variance, 0.0)
            variance = 0.0
        std = math.sqrt(variance)
        ratio = mean / std
        if std == 0.0 and mean == 0.0:
            ratio = 0.0
        out[m] = ratio if math.isfinite(ratio) else -math.inf


@njit(cache=True, error_model="numpy", inline="always")
def _rank_of_winner(train, test):
    """``(omega, train[w], test[w])`` for the in-sample winner ``w`` (the first maximum of
    ``train``): ``omega`` is its relative rank among the ``test`` values, ties counted half."""
    winner = 0
    for m in range(1, len(train)):
        if train[m] > train[winner]:
            winner = m
    best = test[winner]
    below = 0
    equal = 0
    for m in range(len(test)):
        below += test[m] < best
        equal += test[m] == best
    omega = (below + (equal + 1) / 2.0) / (len(test) + 1.0)
    return omega, train[winner], best


@njit(cache=True, error_model="numpy", nogil=True)
def cscv_nb(blocks, total, chosen, omega, is_best, oos_best):
    """Fill ``omega``, ``is_best`` and ``oos_best`` (one entry per split) for the splits whose
    first halves are the rows of ``chosen``.

    Parameters
    ----------
    blocks : ndarray, shape (S, 3, M)
        Count, sum and sum of squares of each combination's returns in each block.
    total : ndarray, shape (3, M)
        The same over all blocks (the blocks summed in order).
    chosen : ndarray of int64, shape (C(S, S/2) // 2, S/2)
        The in-sample blocks of the first half of the splits (lexicographic order).
    omega, is_best, oos_best : ndarray, shape (C(S, S/2),)
        Output: the in-sample winner's relative rank out of sample, and its Sharpe ratio in
        and out of sample, for every split.
    """
    n_splits = len(omega)
    m = blocks.shape[2]
    inside = np.empty((3, m))
    outside = np.empty((3, m))
    first = np.empty(m)
    second = np.empty(m)
    for k in range(len(chosen)):
        for moment in range(3):  # the chosen blocks summed in order
            row = inside[moment]
            source = blocks[chosen[k, 0], moment]
            for c in range(m):
                row[c] = source[c]
            for j in range(1, chosen.shape[1]):
                source = blocks[chosen[k, j], moment]
                for c in range(m):
                    row[c] += source[c]
            rest = outside[moment]
            whole = total[moment]
            for c in range(m):
                rest[c] = whole[c] - row[c]
        _sharpe_into(inside[0], inside[1], inside[2], first)
        _sharpe_into(outside[0], outside[1], outside[2], second)
        omega[k], is_best[k], oos_best[k] = _rank_of_winner(first, second)
        mirror = n_splits - 1 - k
        omega[mirror], is_best[mirror], oos_best[mirror] = _rank_of_winner(second, first)
