"""The number of effectively independent trials behind a sweep or a search.

Neighbouring parameter sets of one strategy trade almost alike: 2,329 SMA-cross combinations are
not 2,329 independent bets, and counting them as such sets the deflated Sharpe ratio's hurdle
too high. The deflated Sharpe ratio takes ``N`` as the number of *clusters* of correlated
trials, found as follows (the first stage of Lopez de Prado's ONC algorithm, "A Data Science
Solution to the Multiple-Testing Crisis in Financial Research", 2019, with hierarchical instead
of k-means clustering so that the result is deterministic):

1. Each trial is represented by its returns summed over ``B`` contiguous blocks of the bars
   (:func:`research.validation.moments.block_cuts`; a sweep keeps 64 by default). Trials whose
   block returns do not vary (they never held a position) form one cluster of their own.
2. The others' Pearson correlations ``rho`` become distances ``d = sqrt((1 - rho) / 2)``
   (0 for identical trials, 1 for opposite ones).
3. Average-linkage agglomerative clustering (:func:`scipy.cluster.hierarchy.linkage`) is cut
   into ``k`` clusters for every ``k`` from 2 to ``max_clusters`` (default ``min(M - 1,
   100)``); each cut is scored by the mean of its silhouette coefficients divided by their
   standard deviation (ONC's quality), and the best-scoring ``k`` is kept.
4. ``N`` = that ``k`` (plus one for the cluster of flat trials, if any). With fewer than 3
   varying trials every trial counts (``N = M``).

Memory: the clustering keeps the upper triangle of the distance matrix (``4 M^2`` bytes) and
computes the silhouettes a block of rows at a time. Beyond ``max_points`` trials (default
3,000: 36 MB) a seeded, evenly drawn subset of that many is clustered instead: neighbouring
combinations of a dense grid fall into the same clusters, so the subset finds the same
clusters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DEFAULT_MAX_CLUSTERS = 100
DEFAULT_MAX_POINTS = 3_000


@dataclass(frozen=True)
class EffectiveTrials:
    """Outcome of :func:`effective_trials`.

    Attributes
    ----------
    n_trials : int
        Trials given.
    n_effective : int
        Independent trials ``N`` (module docstring).
    labels : ndarray of int
        Cluster of each trial (``-1``: not clustered because beyond ``max_points``; ``0``: the
        flat trials' cluster when there is one; clusters of varying trials from 1).
    quality : float
        ONC quality (mean / std of the silhouettes) of the chosen cut; ``nan`` when no cut was
        scored.
    n_flat : int
        Trials without variance.
    method : str
        One line naming the method, for reports.
    """

    n_trials: int
    n_effective: int
    labels: np.ndarray = field(repr=False)
    quality: float
    n_flat: int
    method: str


def effective_trials(
    block_returns: np.ndarray,
    *,
    max_clusters: int | None = None,
    max_points: int = DEFAULT_MAX_POINTS,
    seed: int = 0,
) -> EffectiveTrials:
    """Cluster correlated trials and count the clusters (module docstring).

    Parameters
    ----------
    block_returns : ndarray, shape (M, B)
        Each trial's returns summed over ``B`` blocks of the bars (all finite).
    max_clusters : int, optional
        Largest ``k`` tried (default ``min(M - 1, 100)``).
    max_points : int
        Trials clustered at most (a seeded subset beyond).
    seed : int
        Seed of that subset.
    """
    from scipy.cluster.hierarchy import fcluster, linkage  # scipy loads in ~0.2 s: on use only
    from scipy.spatial.distance import pdist

    returns = np.asarray(block_returns, dtype=np.float64)
    if returns.ndim != 2:
        raise ValueError("block_returns must be a 2-D array: one row of block returns per trial")
    n_trials = len(returns)
    labels = np.full(n_trials, -1, dtype=np.int64)
    flat = ~(returns.max(axis=1) > returns.min(axis=1)) if n_trials else np.zeros(0, bool)
    n_flat = int(flat.sum())
    labels[flat] = 0
    varying = np.flatnonzero(~flat)
    method = (
        "clusters of correlated trials (average linkage on sqrt((1 - rho) / 2) of "
        f"{returns.shape[1]} block returns, k by ONC silhouette quality)"
    )
    if len(varying) < 3:
        labels[varying] = np.arange(1, len(varying) + 1)
        return EffectiveTrials(
            n_trials,
            n_trials,
            labels,
            float("nan"),
            n_flat,
            "every trial counts (fewer than 3 trials that vary)",
        )
    if len(varying) > max_points:
        rng = np.random.default_rng(seed)
        varying = np.sort(rng.choice(varying, max_points, replace=False))
        method += f", on a seeded subset of {max_points} trials"
    rows = returns[varying]
    condensed = pdist(rows, metric="correlation")  # 1 - rho, the upper triangle only
    np.clip(condensed, 0.0, 2.0, out=condensed)
    condensed *= 0.5
    np.sqrt(condensed, out=condensed)
    tree = linkage(condensed, method="average")
    del condensed
    top = min(len(varying) - 1, DEFAULT_MAX_CLUSTERS if max_clusters is None else max_clusters)
    cuts = {}
    for k in range(2, max(top, 1) + 1):
        cut = fcluster(tree, t=k, criterion="maxclust")
        if cut.max() >= 2:
            cuts[int(cut.max())] = cut
    best_k, best_quality, best_labels = 1, -np.inf, np.ones(len(varying), dtype=np.int64)
    for k, (mean, std) in silhouette_moments(rows, cuts).items():
        quality = mean / std if std > 0 else np.inf
        if quality > best_quality:
            best_k, best_quality, best_labels = k, float(quality), cuts[k]
    labels[varying] = best_labels
    n_effective = best_k + (1 if n_flat else 0)
    return EffectiveTrials(
        n_trials,
        n_effective,
        labels,
        best_quality if np.isfinite(best_quality) else float("nan"),
        n_flat,
        method,
    )


#: Rows of the distance matrix computed at a time for the silhouettes (memory: this many x
#: trials floats).
_SILHOUETTE_ROWS = 256


def silhouette_moments(
    rows: np.ndarray, cuts: dict[int, np.ndarray]
) -> dict[int, tuple[float, float]]:
    """Mean and standard deviation of the silhouette coefficients (:func:`silhouette_samples`)
    of every cut (labels ``1..k``, as :func:`scipy.cluster.hierarchy.fcluster` gives), with
    the correlation distances of ``rows`` computed a block of rows at a time and the
    coefficients summed as they come: memory grows with the number of trials, not with its
    square, nor with the number of cuts times the trials.

    The cuts of one tree are nested (each cluster of a coarser cut is a union of clusters of
    the finest one), so the distance sums to each cluster are computed once per block for the
    finest cut and added up for the others.
    """
    from scipy import sparse
    from scipy.spatial.distance import cdist

    n = len(rows)
    fine_index = cuts[max(cuts)] - 1
    n_fine = int(fine_index.max()) + 1
    # clusters x points: its product with a (points x block) matrix sums by cluster
    indicator = sparse.csr_matrix((np.ones(n), (fine_index, np.arange(n))), shape=(n_fine, n))
    member = np.zeros(n_fine, dtype=np.int64)
    member[fine_index] = np.arange(n)  # one point of each fine cluster
    plans = {}
    for k, labels in cuts.items():
        coarse_of_fine = labels[member] - 1  # the coarse cluster of each fine one (nested cuts)
        order = np.argsort(coarse_of_fine, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(coarse_of_fine[order]) != 0])
        plans[k] = (np.bincount(labels - 1).astype(np.float64), order, starts)
    totals = {k: [0.0, 0.0] for k in cuts}
    for start in range(0, n, _SILHOUETTE_ROWS):
        block = cdist(rows, rows[start : start + _SILHOUETTE_ROWS], metric="correlation")
        np.clip(block, 0.0, 2.0, out=block)
        block *= 0.5
        np.sqrt(block, out=block)  # (all points x this block's points), C-contiguous
        fine_sums = np.ascontiguousarray((indicator @ block).T)  # (block x fine clusters)
        part = slice(start, start + block.shape[1])
        for k, (sizes, order, starts) in plans.items():
            sums = np.add.reduceat(fine_sums[:, order], starts, axis=1)
            scores = _silhouette_from_sums(sums, cuts[k][part] - 1, sizes)
            totals[k][0] += float(scores.sum())
            totals[k][1] += float(np.dot(scores, scores))
    moments = {}
    for k, (total, squares) in totals.items():
        mean = total / n
        moments[k] = (mean, float(np.sqrt(max(squares / n - mean * mean, 0.0))))
    return moments


def _silhouette_from_sums(sums: np.ndarray, index: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Silhouettes of points whose distance sums to each cluster are ``sums`` (points x
    clusters), ``index`` their clusters."""
    rows = np.arange(len(index))
    own = sizes[index]
    with np.errstate(invalid="ignore", divide="ignore"):
        a = sums[rows, index] / (own - 1)
        means = sums / sizes
    means[rows, index] = np.inf
    b = means.min(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = (b - a) / np.maximum(a, b)
    scores[own <= 1] = 0.0
    return np.nan_to_num(scores, nan=0.0)


def correlation_distance(rows: np.ndarray) -> np.ndarray:
    """``sqrt((1 - rho) / 2)`` between the rows of ``rows`` (each with some variance), with
    an exact 0 diagonal."""
    rho = np.corrcoef(rows)
    distance = np.sqrt(np.clip((1.0 - rho) / 2.0, 0.0, 1.0))
    np.fill_diagonal(distance, 0.0)
    return distance


def silhouette_samples(distance: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Silhouette coefficient of each point from a square distance matrix and cluster labels
    (Rousseeuw 1987; scikit-learn's ``silhouette_samples(metric="precomputed")``): with ``a``
    the mean distance to the other members of its cluster and ``b`` the smallest mean distance
    to another cluster, ``(b - a) / max(a, b)``; 0 for a point alone in its cluster.
    """
    from scipy import sparse

    labels = np.asarray(labels)
    _, index = np.unique(labels, return_inverse=True)
    n, k = len(index), int(index.max()) + 1
    indicator = sparse.csr_matrix((np.ones(n), (np.arange(n), index)), shape=(n, k))
    sums = np.asarray((indicator.T @ distance.T).T)  # (n, k): distance sums to each cluster
    return _silhouette_from_sums(sums, index, np.bincount(index, minlength=k).astype(float))
