"""Cross-validation of a trading rule's parameter choice: purged k-fold with an embargo, and
combinatorial purged cross-validation (CPCV) with its distribution of out-of-sample Sharpe
ratios over paths (Lopez de Prado, *Advances in Financial Machine Learning*, ch. 7 and 12).

The bars are cut into ``n_folds`` contiguous groups. Each split takes ``n_test_folds`` groups as
the test set and the rest, less the purged and embargoed bars, as the training set; the CPCV
splits come from ``skfolio.model_selection.CombinatorialPurgedCV``, the purged k-fold ones from
scikit-learn's ``KFold`` purged and embargoed the same way (:func:`purged_kfold`). In every
split the parameter set with the best training ``metric`` is chosen, and its returns on each
test group are its out-of-sample record. CPCV's ``C(N, k)`` splits assemble into
``k / N * C(N, k)`` *paths*, each covering every bar once with out-of-sample returns (skfolio's
``get_path_ids``): each path's Sharpe ratio is one draw of the out-of-sample Sharpe ratio the
selection procedure delivers.

What leaks for a trading rule, and what removes it
    The return of bar ``t`` is earned by the position decided at ``t - 1``'s close, from the
    ``H`` bars up to ``t - 1`` (``H``: the strategy's history window). A training bar *before*
    a test group therefore knows nothing of it (no purge is needed, ``purge=0``); a training
    bar less than ``H`` bars *after* a test group was decided on test bars. The **embargo**
    drops those ``H`` bars from the training set (default: the largest history window over
    the grid). The training and test returns both come from one run over all the bars, so the
    indicators of every test group are warmed on the bars before it (no lost bars); only the
    account state (an open position, a trailing stop, a risk limit) carries across group
    boundaries as it does in the run.

Everything is computed from each combination's return moments per segment (segments cut at
every group, purge and embargo boundary): one backtest per combination in all, memory
combinations x segments. The selection metric is therefore one the moments give exactly:
``"sharpe"`` (per-bar mean over standard deviation) or ``"total_return"`` (compounded).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from research.metrics import bars_context
from research.strategy_model import StrategySpec
from research.sweeps import (
    AUTO_BACKEND,
    DEFAULT_INITIAL_CASH,
    Invalid,
    _check_settings,
    normalize_grid,
)
from research.types import Bars, Costs, RiskLimits, Stops
from research.validation.engine import evaluate
from research.validation.moments import combine, compounded_return, sharpe

CV_METRICS = ("sharpe", "total_return")


@dataclass
class CrossValidation:
    """Outcome of :func:`cross_validate`.

    Attributes
    ----------
    method : str
        ``"kfold"`` (purged k-fold) or ``"cpcv"``.
    n_folds, n_test_folds, purge, embargo : int
        The splitter's settings (``purge``, ``embargo`` in bars).
    metric : str
    splits : DataFrame
        One row per (split, test group): ``split``, ``group``, ``path``, the group's first and
        last bar (``start_ts``, ``end_ts``), ``train_bars``, the chosen parameters,
        ``train_sharpe`` and ``test_sharpe`` (annualised), ``test_return``.
    paths : DataFrame
        One row per path: ``path``, ``sharpe`` (annualised out-of-sample Sharpe ratio over the
        path), ``total_return``.
    bars_per_year : float
    """

    method: str
    n_folds: int
    n_test_folds: int
    purge: int
    embargo: int
    metric: str
    splits: pd.DataFrame
    paths: pd.DataFrame
    bars_per_year: float
    param_names: tuple[str, ...] = field(default=())

    def summary(self) -> dict[str, float]:
        """Mean, standard deviation, 5 % / median / 95 % quantiles of the paths' out-of-sample
        Sharpe ratios, and the share of paths below 0."""
        values = self.paths["sharpe"].to_numpy(dtype=float)
        return {
            "paths": len(values),
            "mean_sharpe": float(np.nanmean(values)),
            "std_sharpe": float(np.nanstd(values, ddof=1)) if len(values) > 1 else math.nan,
            "q05_sharpe": float(np.nanquantile(values, 0.05)),
            "median_sharpe": float(np.nanmedian(values)),
            "q95_sharpe": float(np.nanquantile(values, 0.95)),
            "share_negative": float(np.mean(values < 0)),
        }


def cross_validate(
    spec: StrategySpec,
    bars: Bars,
    grid: Mapping[str, Iterable[Any]] | None = None,
    costs: Costs = Costs(),
    *,
    method: str = "cpcv",
    n_folds: int = 6,
    n_test_folds: int = 2,
    purge: int = 0,
    embargo: int | None = None,
    metric: str = "sharpe",
    stops: Stops | None = None,
    risk: RiskLimits = RiskLimits(),
    initial_cash: float = DEFAULT_INITIAL_CASH,
    n_jobs: int = 1,
    backend: str | None = AUTO_BACKEND,
    progress: bool = True,
    client: Any = None,
) -> CrossValidation:
    """Purged k-fold or CPCV of the choice of ``spec``'s parameters over ``grid`` (module
    docstring).

    Parameters
    ----------
    spec, bars, grid, costs, stops, risk, initial_cash, n_jobs, backend
        As for :func:`research.sweeps.sweep`.
    method : {"cpcv", "kfold"}
        ``"kfold"`` forces ``n_test_folds=1`` (one path).
    n_folds : int
        Groups ``N`` (at least 2; at least 3 for CPCV).
    n_test_folds : int
        Test groups per split ``k`` (CPCV), ``1 <= k < N``.
    purge : int
        Training bars dropped before each test group.
    embargo : int, optional
        Training bars dropped after each test group (default: the largest history window of
        the grid's combinations).
    metric : {"sharpe", "total_return"}
        What picks the parameters on the training set.

    Raises
    ------
    ValueError
        For an unknown method or metric, fold counts out of range, a purge plus embargo as
        large as a fold, or a grid with no valid combination.
    """
    if method not in ("cpcv", "kfold"):
        raise ValueError(
            f"unknown method {method!r}: use 'cpcv' (combinatorial purged CV) or "
            "'kfold' (purged k-fold)"
        )
    if metric not in CV_METRICS:
        raise ValueError(
            f"unknown cross-validation metric {metric!r}: the training set is "
            f"not contiguous, so only {', '.join(CV_METRICS)} are exact; choose "
            "one of them"
        )
    if method == "kfold":
        n_test_folds = 1
    minimum = 2 if method == "kfold" else 3
    if not minimum <= n_folds <= len(bars):
        raise ValueError(
            f"n_folds must be between {minimum} and the number of bars ({len(bars)}), got {n_folds}"
        )
    if not 1 <= n_test_folds < n_folds:
        raise ValueError(
            f"n_test_folds must be at least 1 and below n_folds ({n_folds}), got {n_test_folds}"
        )
    _check_settings(spec, costs, stops, risk, initial_cash)
    grid = normalize_grid(spec, spec.sweep if grid is None else grid)
    from research.sweeps import valid_combinations

    candidates, n_combinations, _ = valid_combinations(spec, grid)
    candidates = [params for params in candidates if spec.lookback(params) < len(bars)]
    if not candidates:
        raise ValueError(
            f"none of the {n_combinations} combinations of the grid is valid for "
            f"strategy {spec.name!r} on {len(bars)} bars: widen the grid or load "
            "more bars"
        )
    if embargo is None:
        embargo = max(spec.history_window(params) for params in candidates)
    fold = len(bars) // n_folds
    if purge < 0 or embargo < 0 or purge + embargo >= fold:
        raise ValueError(
            f"purge ({purge}) plus embargo ({embargo}) bars must be smaller than "
            f"a fold ({fold} bars = {len(bars)} bars / {n_folds} folds): use "
            "fewer folds, more bars or a smaller embargo"
        )
    if method == "kfold":
        splits = purged_kfold(len(bars), n_folds, purge, embargo)
        path_ids = np.zeros((n_folds, 1), dtype=np.int64)
    else:
        from skfolio.model_selection import CombinatorialPurgedCV  # the validation extra

        splitter = CombinatorialPurgedCV(
            n_folds=n_folds, n_test_folds=n_test_folds, purged_size=purge, embargo_size=embargo
        )
        splits = list(splitter.split(np.empty((len(bars), 0))))
        path_ids = np.asarray(splitter.get_path_ids())
    group_starts = sorted({int(test[0]) for _, tests in splits for test in tests})
    cuts = _cuts(splits, len(bars))
    run_settings = (costs, stops, risk, float(initial_cash))
    evaluation = evaluate(
        spec,
        bars,
        candidates,
        run_settings,
        cuts,
        n_jobs=n_jobs,
        backend=backend,
        progress=progress,
        grid=grid,
        client=client,
        description=f"{method} {spec.name}",
    )
    per_year = bars_context(bars.ts, bars.timeframe_ms or int(np.diff(bars.ts).min())).bars_per_year
    scale = math.sqrt(per_year)
    moments = evaluation.moments
    usable = np.array([not isinstance(row, Invalid) for row in evaluation.stats])
    if not usable.any():
        raise ValueError(
            f"every combination of the grid is invalid for strategy {spec.name!r} "
            f"on these bars ({evaluation.stats[0].reason}): widen the grid"
        )
    names = tuple(grid)
    rows = []
    path_moments: dict[int, np.ndarray] = {}
    for split, (train, tests) in enumerate(splits):
        train_segments = _segments_of(train, cuts)
        train_moments = combine(moments, train_segments)
        score = (
            sharpe(train_moments, zero_variance=0.0)
            if metric == "sharpe"
            else compounded_return(train_moments)
        )
        chosen = int(np.argmax(np.where(np.isfinite(score) & usable, score, -np.inf)))
        params = candidates[chosen]
        for group, test in enumerate(tests):
            test_moments = combine(moments[chosen], _segments_of(test, cuts))
            path = int(path_ids[split, group])
            path_moments[path] = path_moments.get(path, 0.0) + test_moments
            rows.append(
                {
                    "split": split,
                    "group": group_starts.index(int(test[0])),
                    "path": path,
                    "start_ts": int(bars.ts[test[0]]),
                    "end_ts": int(bars.ts[test[-1]]),
                    "train_bars": len(train),
                    **{name: getattr(params, name) for name in names},
                    "train_sharpe": float(sharpe(train_moments[chosen])) * scale,
                    "test_sharpe": float(sharpe(test_moments)) * scale,
                    "test_return": float(compounded_return(test_moments)),
                }
            )
    paths = pd.DataFrame(
        [
            {
                "path": path,
                "sharpe": float(sharpe(total)) * scale,
                "total_return": float(compounded_return(total)),
            }
            for path, total in sorted(path_moments.items())
        ]
    )
    return CrossValidation(
        method=method,
        n_folds=n_folds,
        n_test_folds=n_test_folds,
        purge=int(purge),
        embargo=int(embargo),
        metric=metric,
        splits=pd.DataFrame(rows),
        paths=paths,
        bars_per_year=per_year,
        param_names=names,
    )


def _cuts(splits, n_bars: int) -> np.ndarray:
    """Every index where some split's training or test set starts or stops."""
    points = {0, n_bars}
    for train, tests in splits:
        for indices in (train, *tests):
            if len(indices) == 0:
                continue
            breaks = np.flatnonzero(np.diff(indices) != 1)
            points.update(int(v) for v in indices[np.concatenate([[0], breaks + 1])])
            points.update(int(v) + 1 for v in indices[np.concatenate([breaks, [len(indices) - 1]])])
    return np.asarray(sorted(points), dtype=np.int64)


def _segments_of(indices: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """The segments (between ``cuts``) that make up the bar ``indices`` exactly."""
    inside = np.zeros(len(cuts) - 1, dtype=bool)
    starts = np.searchsorted(cuts, indices, side="right") - 1
    inside[np.unique(starts)] = True
    covered = int(np.diff(cuts)[inside].sum())
    if covered != len(indices):  # a segment only partly inside: the cuts are wrong
        raise AssertionError("segments do not tile the split")
    return np.flatnonzero(inside)


def purged_kfold(n_bars: int, n_folds: int, purge: int, embargo: int):
    """Purged k-fold splits ``[(train indices, [test indices])]``: scikit-learn's ``KFold``
    (contiguous folds, no shuffling) with ``purge`` training bars dropped before each test fold
    and ``purge + embargo`` after it, as skfolio's ``CombinatorialPurgedCV`` does (which needs
    two test folds or more)."""
    from sklearn.model_selection import KFold  # scikit-learn comes with skfolio

    splits = []
    for train, test in KFold(n_splits=n_folds).split(np.empty((n_bars, 0))):
        keep = (train < test[0] - purge) | (train > test[-1] + purge + embargo)
        splits.append((train[keep], [test]))
    return splits
