"""Overfitting statistics of a search: the deflated Sharpe ratio and the probability of backtest
overfitting, from per-combination return moments (:mod:`research.validation.moments`).

Deflated Sharpe ratio (Bailey and Lopez de Prado 2014)
------------------------------------------------------
The best of many trials has a high Sharpe ratio by chance alone. With ``SR`` the selected
trial's per-bar Sharpe ratio over its ``T`` bar returns, ``g3`` their skewness and ``g4`` their
**raw** kurtosis (a normal sample has 3; some implementations put the excess kurtosis, 0 for a
normal sample, in this place, which understates the variance of ``SR`` on fat-tailed returns)::

    SR0 = sqrt(V) * ((1 - e) * Z(1 - 1 / N) + e * Z(1 - 1 / (N * exp(1))))
    DSR = Phi((SR - SR0) * sqrt(T - 1) / sqrt(1 - g3 * SR + (g4 - 1) / 4 * SR ** 2))

``Phi`` is the standard normal distribution function, ``Z`` its inverse, ``e`` the
Euler-Mascheroni constant, ``V`` the variance (``ddof=1``) of the per-bar Sharpe ratios of all
the trials and ``N`` the number of *independent* trials (see
:mod:`research.validation.trials`: correlated combinations are clustered and each cluster counts
once). ``SR0`` is the Sharpe ratio the best of ``N`` skill-less trials is expected to reach;
``DSR`` is the probability that the selected trial's true Sharpe ratio is above it. ``g3`` and
``g4`` are the bias-adjusted sample estimators (pandas' ``skew`` and ``kurt() + 3``).

Probability of backtest overfitting (Bailey, Borwein, Lopez de Prado and Zhu 2017)
-----------------------------------------------------------------------------------
Combinatorially symmetric cross-validation: the bars are cut into ``S`` contiguous blocks
(``S`` even; :func:`~research.validation.moments.block_cuts`); for each of the ``C(S, S/2)``
ways of taking half the blocks as the in-sample part (the other half out of sample), the
combination with the best in-sample per-bar Sharpe ratio is picked (the first one on ties) and
its out-of-sample Sharpe ratio ranked among all the combinations' (ties share their average
rank ``1..M``). With ``w = rank / (M + 1)`` the logit is ``log(w / (1 - w))``; the PBO is the
share of splits with a logit ``<= 0``: how often the in-sample winner is no better than the
median out of sample. Every figure comes from the blocks' moments, so memory is combinations x
``S``, never combinations x bars. A combination with no variance and no mean in a half (it
never held a position there) scores 0 there.
"""

from __future__ import annotations

import itertools
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from research.kernels.cscv import cscv_nb
from research.validation.moments import COUNT, SUM, SUM_SQ, combine, sharpe, skew_kurtosis
from research.validation.trials import effective_trials

EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


def expected_max_sharpe(n_trials: float, sharpe_std: float) -> float:
    """``SR0``: the expected maximum per-bar Sharpe ratio of ``n_trials`` independent
    skill-less trials whose Sharpe ratios have standard deviation ``sharpe_std`` (module
    docstring). ``0`` for a single trial or no dispersion.

    Raises
    ------
    ValueError
        If ``n_trials < 1``.
    """
    if not n_trials >= 1:
        raise ValueError(f"n_trials must be at least 1, got {n_trials}")
    if n_trials == 1 or not sharpe_std > 0:
        return 0.0
    return float(
        sharpe_std
        * (
            (1 - EULER_GAMMA) * _NORMAL.inv_cdf(1 - 1 / n_trials)
            + EULER_GAMMA * _NORMAL.inv_cdf(1 - 1 / (n_trials * math.e))
        )
    )


def deflated_sharpe_ratio(
    sharpe_ratio: float,
    n_bars: int,
    skew: float,
    kurtosis: float,
    n_trials: float,
    sharpe_std: float,
) -> float:
    """The deflated Sharpe ratio (module docstring): a probability in [0, 1].

    Parameters
    ----------
    sharpe_ratio : float
        Per-bar (not annualised) Sharpe ratio of the selected trial.
    n_bars : int
        Its number of bar returns ``T``.
    skew, kurtosis : float
        Skewness and raw kurtosis of those returns (normal: 0 and 3).
    n_trials : float
        Independent trials ``N``.
    sharpe_std : float
        Standard deviation of the per-bar Sharpe ratios across all trials.

    Returns
    -------
    float
        ``nan`` when a figure is not finite, there are fewer than 2 bars, or the variance
        term ``1 - g3 SR + (g4 - 1) / 4 SR^2`` is not positive.
    """
    values = (sharpe_ratio, skew, kurtosis, sharpe_std)
    if not all(math.isfinite(v) for v in values) or n_bars < 2:
        return math.nan
    benchmark = expected_max_sharpe(n_trials, sharpe_std)
    variance = 1 - skew * sharpe_ratio + (kurtosis - 1) / 4 * sharpe_ratio**2
    if not variance > 0:
        return math.nan
    return _NORMAL.cdf((sharpe_ratio - benchmark) * math.sqrt(n_bars - 1) / math.sqrt(variance))


@dataclass(frozen=True)
class PBOResult:
    """Outcome of :func:`probability_of_backtest_overfitting`.

    Attributes
    ----------
    pbo : float
        Share of the splits whose in-sample winner ranks at or below the out-of-sample median.
    logits : ndarray
        One logit per split, in the order of :func:`cscv_splits`.
    is_sharpe, oos_sharpe : ndarray
        Per split: the winner's in-sample and out-of-sample per-bar Sharpe ratio (the
        "performance degradation" scatter).
    probability_of_loss : float
        Share of the splits whose winner has a negative out-of-sample Sharpe ratio.
    n_blocks : int
        ``S``.
    n_combinations : int
        Combinations ranked.
    """

    pbo: float
    logits: np.ndarray = field(repr=False)
    is_sharpe: np.ndarray = field(repr=False)
    oos_sharpe: np.ndarray = field(repr=False)
    probability_of_loss: float
    n_blocks: int
    n_combinations: int

    @property
    def n_splits(self) -> int:
        return len(self.logits)


def cscv_splits(n_blocks: int) -> np.ndarray:
    """Boolean ``(C(S, S/2), S)`` matrix: row ``k`` marks the in-sample blocks of split ``k``.

    The rows are :func:`itertools.combinations` of the blocks in lexicographic order.
    """
    if n_blocks < 2 or n_blocks % 2:
        raise ValueError(
            f"the number of CSCV blocks must be even and at least 2, got "
            f"{n_blocks}: 16 is usual (12,870 splits), 8 or 10 on short data"
        )
    combos = list(itertools.combinations(range(n_blocks), n_blocks // 2))
    matrix = np.zeros((len(combos), n_blocks), dtype=bool)
    for row, chosen in enumerate(combos):
        matrix[row, list(chosen)] = True
    return matrix


def probability_of_backtest_overfitting(block_moments: np.ndarray) -> PBOResult:
    """PBO by CSCV (module docstring) from the moments of each combination's returns in ``S``
    blocks.

    Parameters
    ----------
    block_moments : ndarray, shape (M, S, 6)
        ``block_moments[m, s]``: the moments (:mod:`research.validation.moments`) of
        combination ``m``'s returns in block ``s``; ``S`` even.

    Raises
    ------
    ValueError
        For fewer than 2 combinations or an odd number of blocks.
    """
    block_moments = np.asarray(block_moments, dtype=np.float64)
    if block_moments.ndim != 3 or block_moments.shape[2] < 3:
        raise ValueError("block_moments must have shape (combinations, blocks, 6)")
    n_combinations, n_blocks, _ = block_moments.shape
    if n_combinations < 2:
        raise ValueError(
            f"PBO ranks combinations against each other: it needs at least 2, got {n_combinations}"
        )
    splits = cscv_splits(n_blocks)
    half = len(splits) // 2
    chosen = np.flatnonzero(splits[:half].ravel()).reshape(half, n_blocks // 2) % n_blocks
    # (S, 3, M): count, sum and sum of squares per block, a row of combinations each; the
    # out-of-sample half is the total less the in-sample one
    blocks = np.ascontiguousarray(block_moments[:, :, [COUNT, SUM, SUM_SQ]].transpose(1, 2, 0))
    total = blocks.sum(axis=0)
    omega = np.empty(len(splits))
    is_best = np.empty(len(splits))
    oos_best = np.empty(len(splits))
    cscv_nb(blocks, total, chosen, omega, is_best, oos_best)
    logits = np.log(omega / (1.0 - omega))
    return PBOResult(
        pbo=float(np.mean(logits <= 0.0)),
        logits=logits,
        is_sharpe=is_best,
        oos_sharpe=oos_best,
        probability_of_loss=float(np.mean(oos_best < 0.0)),
        n_blocks=n_blocks,
        n_combinations=n_combinations,
    )


@dataclass(frozen=True)
class Overfitting:
    """The overfitting statistics of one sweep or search (:func:`assess`).

    Attributes
    ----------
    selected : int or None
        Row (trial) the statistics judge: the one the search would pick.
    sharpe : float
        Its per-bar Sharpe ratio; ``annual_sharpe`` the same scaled by ``sqrt(bars_per_year)``.
    n_bars : int
        Its bar returns ``T``.
    skew, kurtosis : float
        Their skewness and raw kurtosis.
    n_trials : int
        Trials with full returns (every valid combination, or every complete search trial).
    n_effective : int
        Independent trials (:mod:`research.validation.trials`).
    sharpe_std : float
        Standard deviation of the trials' per-bar Sharpe ratios (flat trials count as 0).
    benchmark : float
        ``SR0``, per bar: what the best of ``n_effective`` skill-less trials is expected to
        reach; ``annual_benchmark`` annualised.
    dsr : float
        Deflated Sharpe ratio: probability that the selected trial's true Sharpe ratio is above
        ``benchmark``.
    dsr_all_trials : float
        The same with every trial counted as independent (the conservative bound; a search
        also counts the trials it pruned).
    pbo : PBOResult or None
        PBO by CSCV (``None`` with fewer than 2 trials).
    trials_method : str
        How ``n_effective`` was found.
    """

    selected: int | None
    sharpe: float
    annual_sharpe: float
    n_bars: int
    skew: float
    kurtosis: float
    n_trials: int
    n_effective: int
    sharpe_std: float
    benchmark: float
    annual_benchmark: float
    dsr: float
    dsr_all_trials: float
    pbo: PBOResult | None
    trials_method: str

    def summary(self) -> dict[str, float]:
        """The figures as a flat dict (for tables, JSON and reports)."""
        return {
            "dsr": self.dsr,
            "dsr_all_trials": self.dsr_all_trials,
            "annual_sharpe": self.annual_sharpe,
            "annual_benchmark": self.annual_benchmark,
            "n_trials": self.n_trials,
            "n_effective": self.n_effective,
            "skew": self.skew,
            "kurtosis": self.kurtosis,
            "n_bars": self.n_bars,
            "pbo": math.nan if self.pbo is None else self.pbo.pbo,
            "probability_of_loss": math.nan if self.pbo is None else self.pbo.probability_of_loss,
            "cscv_blocks": 0 if self.pbo is None else self.pbo.n_blocks,
        }


def assess(
    block_moments: np.ndarray,
    selected: int | None,
    n_blocks: int,
    bars_per_year: float,
    *,
    clusters: bool = True,
    looked_at: int | None = None,
) -> Overfitting:
    """Deflated Sharpe ratio and PBO of a set of trials from their returns' moments in
    ``n_blocks x sub_blocks`` segments (:func:`~research.validation.moments.block_cuts`).

    Parameters
    ----------
    block_moments : ndarray, shape (M, n_blocks * sub_blocks, 6)
        Every trial's moments per sub-block, all over the same bars.
    selected : int or None
        The trial the search picks (e.g. the best-ranked row); ``None``: the highest Sharpe
        ratio.
    n_blocks : int
        CSCV blocks ``S`` (even); the sub-blocks of a block are summed for the PBO, and the
        sub-blocks' returns are what the effective-trials clustering correlates.
    bars_per_year : float
        To annualise the Sharpe ratios shown (:mod:`research.metrics`).
    clusters : bool
        Count independent trials by clustering (default); ``False`` counts every trial.
    looked_at : int, optional
        Trials considered in all, for ``dsr_all_trials`` (default ``M``; a search adds the
        trials it pruned before they had full returns).
    """
    block_moments = np.asarray(block_moments, dtype=np.float64)
    n_trials, n_segments, _ = block_moments.shape
    if n_trials == 0:
        raise ValueError("no trial to assess")
    if n_segments % n_blocks:
        raise ValueError(f"{n_segments} segments do not make {n_blocks} equal groups of blocks")
    totals = combine(block_moments)
    ratios = sharpe(totals, zero_variance=0.0)
    if selected is None:
        finite = np.where(np.isfinite(ratios), ratios, -np.inf)
        selected = int(np.argmax(finite))
    skew, kurtosis = (float(v) for v in skew_kurtosis(totals[selected]))
    sharpe_std = float(np.nanstd(ratios, ddof=1)) if n_trials > 1 else 0.0
    with ThreadPoolExecutor(max_workers=1) as pool:
        # the PBO's compiled loop releases the GIL: it runs beside the clustering
        pbo = None
        if n_trials > 1:
            grouped = block_moments.reshape(n_trials, n_blocks, n_segments // n_blocks, -1).sum(2)
            pbo = pool.submit(probability_of_backtest_overfitting, grouped)
        if clusters and n_trials > 1:
            found = effective_trials(block_moments[:, :, SUM])
            n_effective, method = found.n_effective, found.method
        else:
            n_effective, method = n_trials, "every trial counts as independent"
        pbo = pbo.result() if pbo is not None else None
    sr = float(ratios[selected])
    n_bars = int(totals[selected, 0])
    benchmark = expected_max_sharpe(n_effective, sharpe_std)
    scale = math.sqrt(bars_per_year)
    return Overfitting(
        selected=selected,
        sharpe=sr,
        annual_sharpe=sr * scale,
        n_bars=n_bars,
        skew=skew,
        kurtosis=kurtosis,
        n_trials=n_trials,
        n_effective=n_effective,
        sharpe_std=sharpe_std,
        benchmark=benchmark,
        annual_benchmark=benchmark * scale,
        dsr=deflated_sharpe_ratio(sr, n_bars, skew, kurtosis, n_effective, sharpe_std),
        dsr_all_trials=deflated_sharpe_ratio(
            sr, n_bars, skew, kurtosis, max(n_trials, looked_at or 0), sharpe_std
        ),
        pbo=pbo,
        trials_method=method,
    )
