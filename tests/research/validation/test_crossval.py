"""Purged k-fold and CPCV against a brute-force oracle on real bars.

The oracle keeps every combination's bar returns (the full matrix, fine for a small grid),
takes the splits from the splitter library itself (skfolio's CombinatorialPurgedCV, scikit-learn's
KFold), picks the best training Sharpe ratio with pandas, and rebuilds each path from the test
groups' returns. Candela computes the same from per-segment moments only.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from market_files import read_market_bars

from research.backtesting import backtest
from research.sweeps import normalize_grid, valid_combinations
from research.types import Costs
from research.validation.crossval import cross_validate, purged_kfold
from strategies.registry import get_strategy

skfolio = pytest.importorskip("skfolio.model_selection")

GRID = {"fast": [4, 8, 14, 20], "slow": [30, 60, 100]}
COSTS = Costs(fee_rate=0.0005)


@pytest.fixture(scope="module")
def bars():
    # 5,701 real 5m bars of Bittrex XRP-BTC
    return read_market_bars("bittrex_XRP-BTC_5m.csv.gz")


@pytest.fixture(scope="module")
def returns(bars):
    spec = get_strategy("sma_cross")
    candidates, _, _ = valid_combinations(spec, normalize_grid(spec, GRID))
    columns = {}
    for params in candidates:
        equity = backtest(spec, bars, params, COSTS).equity.to_numpy()
        columns[(params.fast, params.slow)] = equity / np.concatenate([[1e4], equity[:-1]]) - 1
    return pd.DataFrame(columns)


def oracle(returns: pd.DataFrame, splits, path_ids, scale):
    """Chosen (fast, slow) per split and each path's annualised Sharpe ratio, from the returns
    matrix."""
    chosen, paths = [], {}
    for split, (train, tests) in enumerate(splits):
        part = returns.iloc[train]
        best = (part.mean() / part.std()).idxmax()
        chosen.append(best)
        for group, test in enumerate(tests):
            paths.setdefault(int(path_ids[split][group]), []).append(returns[best].iloc[test])
    sharpes = {
        path: (lambda r: r.mean() / r.std() * scale)(pd.concat(parts).sort_index())
        for path, parts in paths.items()
    }
    return chosen, sharpes


@pytest.mark.parametrize("n_folds, n_test_folds", [(6, 2), (5, 3)])
def test_cpcv_equals_a_brute_force_oracle_on_real_bars(bars, returns, n_folds, n_test_folds):
    spec = get_strategy("sma_cross")
    result = cross_validate(
        spec,
        bars,
        GRID,
        COSTS,
        n_folds=n_folds,
        n_test_folds=n_test_folds,
        embargo=120,
        progress=False,
    )
    splitter = skfolio.CombinatorialPurgedCV(
        n_folds=n_folds, n_test_folds=n_test_folds, embargo_size=120
    )
    splits = list(splitter.split(np.empty((len(bars), 0))))
    chosen, sharpes = oracle(
        returns, splits, splitter.get_path_ids(), math.sqrt(result.bars_per_year)
    )
    assert (
        len(result.paths)
        == splitter.n_test_paths
        == n_test_folds * math.comb(n_folds, n_test_folds) // n_folds
    )
    per_split = result.splits.drop_duplicates("split")
    assert list(zip(per_split["fast"], per_split["slow"], strict=True)) == chosen
    np.testing.assert_allclose(
        result.paths["sharpe"], [sharpes[p] for p in result.paths["path"]], rtol=1e-9
    )
    # every path covers every group once
    assert (result.splits.groupby("path")["group"].nunique() == n_folds).all()
    assert list(result.splits["train_bars"]) == [
        len(train) for train, tests in splits for _ in tests
    ]


def test_purged_kfold_equals_the_oracle_and_embargoes(bars, returns):
    spec = get_strategy("sma_cross")
    result = cross_validate(
        spec, bars, GRID, COSTS, method="kfold", n_folds=5, embargo=200, progress=False
    )
    splits = purged_kfold(len(bars), 5, 0, 200)
    chosen, sharpes = oracle(
        returns, splits, np.zeros((5, 1), dtype=int), math.sqrt(result.bars_per_year)
    )
    assert list(zip(result.splits["fast"], result.splits["slow"], strict=True)) == chosen
    assert result.paths["sharpe"].iloc[0] == pytest.approx(sharpes[0], rel=1e-9)
    for train, [test] in splits:
        after = train[train > test[-1]]
        before = train[train < test[0]]
        assert len(after) == 0 or after[0] == test[-1] + 201
        assert len(before) == 0 or before[-1] == test[0] - 1


def test_the_default_embargo_is_the_largest_history_window(bars):
    spec = get_strategy("sma_cross")
    result = cross_validate(spec, bars, GRID, COSTS, method="kfold", n_folds=4, progress=False)
    assert result.embargo == max(
        spec.history_window(spec.make_params(fast=f, slow=s))
        for f in GRID["fast"]
        for s in GRID["slow"]
        if f < s
    )
    assert result.embargo == max(GRID["slow"])  # SMA: exact window sums, history = window


@pytest.mark.parametrize(
    "options, message",
    [
        ({"embargo": 2000, "n_folds": 6}, "smaller than a fold"),
        ({"metric": "profit_factor"}, "only sharpe, total_return are exact"),
        ({"method": "walk"}, "unknown method"),
        ({"n_folds": 4, "n_test_folds": 4}, "n_test_folds must be"),
    ],
)
def test_bad_settings_say_what_to_change(bars, options, message):
    with pytest.raises(ValueError, match=message):
        cross_validate(get_strategy("sma_cross"), bars, GRID, COSTS, progress=False, **options)
