"""Per-segment moments of a run's bar returns: what the validation statistics are computed from.

A sweep never keeps a combination's returns bar by bar (combinations x bars would not fit in
memory on a long series). Each run instead leaves, for each *segment* of its bars (contiguous
ranges cut at fixed bar indices), six sums of its bar returns ``r[i] = equity[i] /
equity[i-1] - 1`` (``equity[-1] = initial_cash``, as in :mod:`research.metrics`):

========  =====================  ==========================================================
column    sum over the segment   gives
========  =====================  ==========================================================
0         ``1`` (bar count)      ``n``
1         ``r``                  the mean
2         ``r ** 2``             the variance, hence the Sharpe ratio
3         ``r ** 3``             the skewness
4         ``r ** 4``             the kurtosis
5         ``log(1 + r)``         the compounded return ``exp(sum) - 1``
========  =====================  ==========================================================

Sums add up, so the same figures for any *union* of segments (the in-sample half of a CSCV
split, the training folds of a purged k-fold, a CPCV path) are exact sums of rows: a sweep of
``C`` combinations over ``K`` segments keeps ``C x K x 6`` numbers whatever the number of bars.

The central moments are recovered from raw sums (``m2 = S2/n - mean**2`` etc.). For bar returns
the mean is small against the deviation (``|mean| / std`` is about 0.01-0.1 on bars from a
minute to a day), so the cancellation this invites costs a few digits at most of the
sixteen: the tests compare every figure with pandas on the returns themselves.
"""

from __future__ import annotations

import math

import numpy as np

from research.kernels.moments import (  # noqa: F401 - the compiled sums, re-exported
    COUNT,
    N_MOMENTS,
    SUM,
    SUM_CUBE,
    SUM_LOG,
    SUM_QUAD,
    SUM_SQ,
    segment_moments_nb,
)


def segment_moments(equity: np.ndarray, initial_cash: float, cuts: np.ndarray) -> np.ndarray:
    """The ``(len(cuts) - 1, 6)`` moments of :func:`segment_moments_nb`, freshly allocated."""
    cuts = np.ascontiguousarray(cuts, dtype=np.int64)
    out = np.empty((len(cuts) - 1, N_MOMENTS))
    segment_moments_nb(
        np.ascontiguousarray(equity, dtype=np.float64), float(initial_cash), cuts, out
    )
    return out


def block_cuts(n_bars: int, n_blocks: int, sub_blocks: int = 1) -> np.ndarray:
    """Cut points of ``n_blocks`` contiguous blocks of ``n_bars`` bars, each split again into
    ``sub_blocks`` parts.

    Blocks follow :func:`numpy.array_split`: sizes differ by at most one, the larger first.
    The result has ``n_blocks * sub_blocks + 1`` increasing points from 0 to ``n_bars``;
    block ``b`` is sub-blocks ``b * sub_blocks ... (b + 1) * sub_blocks - 1``.

    Raises
    ------
    ValueError
        If a sub-block would be empty (``n_bars < n_blocks * sub_blocks``).
    """
    if n_blocks < 1 or sub_blocks < 1:
        raise ValueError(f"n_blocks and sub_blocks must be positive, got {n_blocks}, {sub_blocks}")
    if n_bars < n_blocks * sub_blocks:
        raise ValueError(
            f"{n_bars} bars cannot make {n_blocks} blocks of {sub_blocks} part(s) "
            "each: use fewer blocks or more bars"
        )
    cuts = [0]
    for size in _split_sizes(n_bars, n_blocks):
        start = cuts[-1]
        for part in _split_sizes(size, sub_blocks):
            start += part
            cuts.append(start)
    return np.asarray(cuts, dtype=np.int64)


def _split_sizes(n: int, k: int) -> list[int]:
    base, extra = divmod(n, k)
    return [base + 1] * extra + [base] * (k - extra)


def combine(moments: np.ndarray, segments: np.ndarray | slice | None = None) -> np.ndarray:
    """Moments of a union of segments: the sum over axis ``-2`` of ``moments[..., segments, :]``
    (all segments by default)."""
    moments = np.asarray(moments)
    if segments is None:
        return moments.sum(axis=-2)
    return moments[..., segments, :].sum(axis=-2)


def mean_std(moments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (``ddof=1``) of the returns behind ``moments[..., 6]``.

    ``nan`` for fewer than two returns; a variance that rounding makes negative is 0.
    """
    moments = np.asarray(moments, dtype=np.float64)
    n = moments[..., COUNT]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = moments[..., SUM] / n
        variance = (moments[..., SUM_SQ] - moments[..., SUM] * mean) / (n - 1)
    variance = np.where(n > 1, np.maximum(variance, 0.0), np.nan)
    return mean, np.sqrt(variance)


def sharpe(moments: np.ndarray, zero_variance: float = math.nan) -> np.ndarray:
    """Per-bar Sharpe ratio ``mean(r) / std(r, ddof=1)`` (not annualised, risk-free rate 0).

    Returns with no variance (a run that never held a position) get ``zero_variance`` when
    their mean is 0 too.
    """
    mean, std = mean_std(moments)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = mean / std
    flat = (std == 0) & (mean == 0)
    return np.where(flat, zero_variance, ratio)


def skew_kurtosis(moments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample skewness and **raw** (not excess) kurtosis of the returns behind ``moments``.

    The bias-adjusted estimators of pandas ``Series.skew`` (``G1``) and ``Series.kurt`` plus 3
    (``G2 + 3``), which are also scipy's ``skew(bias=False)`` and ``kurtosis(bias=False,
    fisher=False)``: a normal sample gives about 0 and 3. ``nan`` for fewer than 3 (skewness)
    or 4 (kurtosis) returns or no variance.
    """
    moments = np.asarray(moments, dtype=np.float64)
    n = moments[..., COUNT]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = moments[..., SUM] / n
        e2 = moments[..., SUM_SQ] / n
        e3 = moments[..., SUM_CUBE] / n
        e4 = moments[..., SUM_QUAD] / n
        m2 = e2 - mean * mean
        m3 = e3 - 3 * mean * e2 + 2 * mean**3
        m4 = e4 - 4 * mean * e3 + 6 * mean * mean * e2 - 3 * mean**4
        g1 = m3 / m2**1.5
        g2 = m4 / (m2 * m2) - 3.0
        skew = np.sqrt(n * (n - 1)) / (n - 2) * g1
        excess = (n - 1) / ((n - 2) * (n - 3)) * ((n + 1) * g2 + 6.0)
    ok = m2 > 0
    skew = np.where(ok & (n >= 3), skew, np.nan)
    kurtosis = np.where(ok & (n >= 4), excess + 3.0, np.nan)
    return skew, kurtosis


def compounded_return(moments: np.ndarray) -> np.ndarray:
    """``prod(1 + r) - 1`` over the returns behind ``moments`` (from the sum of ``log1p``)."""
    return np.expm1(np.asarray(moments, dtype=np.float64)[..., SUM_LOG])
