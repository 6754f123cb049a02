"""Deflated Sharpe ratio, PBO and the moments they come from, against ffn and pandas.

The inputs are real: the bar returns of SMA-cross backtests over a grid, on 12,423 real 1m bars
of Coinbase BTC-USD. ffn (an independent implementation of both statistics) gets the returns
bar by bar; Candela gets only each combination's six moments per block. Conventions bridged:

* ffn's PBO drops the last ``n % S`` returns so that its blocks are equal; the returns given to
  both are cut to a multiple of ``S`` so that the blocks are the same.
* ffn's DSR takes the raw number of trials (no clustering): Candela's function is called with
  that number here; the sweep passes the effective number instead.
* ffn's skewness and kurtosis are pandas' bias-adjusted ones, as Candela's; its trials'
  Sharpe ratios are given per bar (``annualized_trials=False``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from market_files import read_market_bars

from research.backtesting import backtest
from research.types import Costs
from research.validation.moments import (
    block_cuts,
    combine,
    compounded_return,
    segment_moments,
    sharpe,
    skew_kurtosis,
)
from research.validation.overfitting import (
    cscv_splits,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probability_of_backtest_overfitting,
)
from research.validation.trials import correlation_distance, effective_trials, silhouette_samples
from strategies.registry import get_strategy

ffn = pytest.importorskip("ffn")

CASH = 10_000.0


def bar_returns(equity: np.ndarray, initial_cash: float = CASH) -> np.ndarray:
    previous = np.concatenate([[initial_cash], equity[:-1]])
    return equity / previous - 1.0


@pytest.fixture(scope="module")
def real_returns() -> pd.DataFrame:
    """Bar returns of 40 SMA-cross parameter sets on real 1m bars, one column each."""
    bars = read_market_bars("coinbase_BTC-USD_1m.csv.gz")
    spec = get_strategy("sma_cross")
    columns = {}
    for fast in (3, 5, 8, 12, 17):
        for slow in (20, 30, 45, 60, 80, 100, 130, 160):
            result = backtest(spec, bars, {"fast": fast, "slow": slow}, Costs(fee_rate=0.0005))
            columns[f"{fast}/{slow}"] = bar_returns(result.equity.to_numpy())
    return pd.DataFrame(columns)


def moments_of(returns: pd.DataFrame, cuts: np.ndarray) -> np.ndarray:
    """(combinations, segments, 6) moments from the returns' equity curves."""
    return np.stack(
        [
            segment_moments(CASH * np.cumprod(1.0 + returns[c].to_numpy()), CASH, cuts)
            for c in returns.columns
        ]
    )


# --------------------------------------------------------------------------- moments


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 400), blocks=st.integers(1, 12), parts=st.integers(1, 5))
def test_block_cuts_are_array_split_blocks_split_again(n, blocks, parts):
    if n < blocks * parts:
        with pytest.raises(ValueError, match="use fewer blocks"):
            block_cuts(n, blocks, parts)
        return
    cuts = block_cuts(n, blocks, parts)
    assert cuts[0] == 0 and cuts[-1] == n and np.all(np.diff(cuts) > 0)
    outer = [len(b) for b in np.array_split(np.arange(n), blocks)]
    assert list(np.diff(cuts[::parts])) == outer


def test_segment_moments_give_pandas_figures_on_real_returns(real_returns):
    rng = np.random.default_rng(7)
    returns = real_returns.iloc[:, 9]
    cuts = np.unique(np.concatenate([[0, len(returns)], rng.integers(1, len(returns), size=9)]))
    moments = segment_moments(CASH * np.cumprod(1.0 + returns.to_numpy()), CASH, cuts)
    assert moments[:, 0].sum() == len(returns)
    # any union of segments: here segments 1, 2 and 5
    chosen = [1, 2, 5]
    part = pd.concat([returns.iloc[cuts[j] : cuts[j + 1]] for j in chosen])
    union = combine(moments, chosen)
    skew, kurtosis = skew_kurtosis(union)
    assert sharpe(union) == pytest.approx(part.mean() / part.std(), rel=1e-9)
    assert skew == pytest.approx(part.skew(), rel=1e-6)
    assert kurtosis == pytest.approx(part.kurt() + 3.0, rel=1e-6)
    assert compounded_return(union) == pytest.approx(np.prod(1.0 + part) - 1.0, rel=1e-9)


def test_a_flat_run_has_no_sharpe_unless_asked():
    moments = segment_moments(np.full(50, CASH), CASH, np.array([0, 50]))
    assert math.isnan(sharpe(moments)[0])
    assert sharpe(moments, zero_variance=0.0)[0] == 0.0


# --------------------------------------------------------------------------- PBO


def test_pbo_equals_ffn_on_real_sweep_returns(real_returns):
    n_blocks = 10  # ffn needs ~0.01 s per split on these returns: 252 splits
    rows = len(real_returns) - len(real_returns) % n_blocks
    returns = real_returns.iloc[:rows]
    oracle = ffn.core.calc_prob_backtest_overfitting(returns, n_blocks=n_blocks, full_output=True)
    ours = probability_of_backtest_overfitting(moments_of(returns, block_cuts(rows, n_blocks)))
    assert ours.n_splits == math.comb(n_blocks, n_blocks // 2) == len(oracle["logits"])
    assert 0.0 < ours.pbo < 1.0
    assert ours.pbo == oracle["pbo"]
    np.testing.assert_allclose(ours.logits, oracle["logits"].to_numpy(), rtol=0, atol=1e-12)


def test_pbo_sees_noise_and_skill_apart():
    """iid noise strategies: the in-sample winner is a coin toss out of sample (PBO about 1/2);
    one strategy with a steady edge over noise: it wins in and out of sample (PBO about 0)."""
    rng = np.random.default_rng(3)
    noise = rng.normal(0.0, 0.01, size=(30, 4_000))
    cuts = block_cuts(4_000, 12)

    def pbo(returns):
        equity = CASH * np.cumprod(1.0 + returns, axis=1)
        return probability_of_backtest_overfitting(
            np.stack([segment_moments(row, CASH, cuts) for row in equity])
        ).pbo

    assert 0.3 < pbo(noise) < 0.7
    skilled = noise.copy()
    skilled[4] += 0.004
    assert pbo(skilled) < 0.05


def test_cscv_splits_are_balanced_and_complementary():
    splits = cscv_splits(8)
    assert splits.shape == (70, 8)
    assert np.all(splits.sum(axis=1) == 4)
    # the complement of split k is split n - 1 - k (lexicographic order)
    np.testing.assert_array_equal(~splits, splits[::-1])
    with pytest.raises(ValueError, match="even"):
        cscv_splits(7)


# --------------------------------------------------------------------------- DSR


def test_deflated_sharpe_equals_ffn_on_real_returns(real_returns):
    moments = combine(moments_of(real_returns, np.array([0, len(real_returns)])))
    trials = sharpe(moments)
    best = int(np.nanargmax(trials))
    skew, kurtosis = skew_kurtosis(moments[best])
    ours = deflated_sharpe_ratio(
        trials[best],
        int(moments[best, 0]),
        float(skew),
        float(kurtosis),
        len(trials),
        float(np.std(trials, ddof=1)),
    )
    oracle = ffn.core.calc_deflated_sharpe_ratio(
        real_returns.iloc[:, best], trials, nperiods=525_600, annualized_trials=False
    )
    assert 0.0 < oracle < 1.0
    assert ours == pytest.approx(oracle, rel=1e-9, abs=1e-12)
    assert expected_max_sharpe(len(trials), float(np.std(trials, ddof=1))) == pytest.approx(
        ffn.core.calc_expected_max_sharpe(len(trials), float(np.std(trials, ddof=1))), rel=1e-12
    )


@settings(max_examples=60, deadline=None)
@given(
    sr=st.floats(-0.2, 0.2),
    n=st.integers(10, 100_000),
    skew=st.floats(-2, 2),
    kurtosis=st.floats(1.5, 30),
    std=st.floats(1e-4, 0.1),
    trials=st.integers(2, 10_000),
)
def test_more_trials_raise_the_bar(sr, n, skew, kurtosis, std, trials):
    """With the same evidence, more independent trials never make the winner more credible,
    and one trial is the probabilistic Sharpe ratio against 0."""
    fewer = deflated_sharpe_ratio(sr, n, skew, kurtosis, trials, std)
    more = deflated_sharpe_ratio(sr, n, skew, kurtosis, trials * 3, std)
    if math.isnan(fewer):
        assert 1 - skew * sr + (kurtosis - 1) / 4 * sr**2 <= 0
        return
    assert more <= fewer + 1e-15
    single = deflated_sharpe_ratio(sr, n, skew, kurtosis, 1, std)
    variance = 1 - skew * sr + (kurtosis - 1) / 4 * sr**2
    from statistics import NormalDist

    assert single == pytest.approx(NormalDist().cdf(sr * math.sqrt(n - 1) / math.sqrt(variance)))


def test_raw_not_excess_kurtosis_widens_the_sharpe_variance(real_returns):
    """Passing the excess kurtosis (0 for a normal sample) where the raw one belongs makes a
    Sharpe ratio look surer than it is: on real fat-tailed returns the raw figure gives the
    lower probability."""
    moments = combine(moments_of(real_returns.iloc[:, :1], np.array([0, len(real_returns)])))[0]
    skew, kurtosis = skew_kurtosis(moments)
    assert kurtosis > 6  # minute returns have fat tails
    sr = float(sharpe(moments)) + 0.05
    raw = deflated_sharpe_ratio(sr, int(moments[0]), float(skew), float(kurtosis), 1, 0.0)
    excess = deflated_sharpe_ratio(sr, int(moments[0]), float(skew), float(kurtosis) - 3, 1, 0.0)
    assert raw < excess


# --------------------------------------------------------------------------- effective trials


def test_silhouettes_equal_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(11)
    rows = rng.normal(size=(60, 32))
    distance = correlation_distance(rows)
    labels = rng.integers(1, 6, size=60)
    np.testing.assert_allclose(
        silhouette_samples(distance, labels),
        sklearn_metrics.silhouette_samples(distance, labels, metric="precomputed"),
        atol=1e-12,
    )


def test_effective_trials_count_families_of_correlated_real_strategies(real_returns):
    """Four real, distinct return series (SMA 3/20, 8/45, 12/100, 17/160), each copied eight
    times with a little noise of its own scale (a dense grid around four ideas), plus flat
    trials: four clusters and the flat one."""
    cuts = block_cuts(len(real_returns), 64)
    picks = ["3/20", "8/45", "12/100", "17/160"]
    base = moments_of(real_returns[picks], cuts)[:, :, 1]  # block sums of returns
    correlation = np.corrcoef(base)
    assert correlation[np.triu_indices(4, 1)].max() < 0.7  # four different ideas
    rng = np.random.default_rng(5)
    family = np.repeat(base, 8, axis=0)
    family += rng.normal(size=family.shape) * 0.05 * family.std(axis=1, keepdims=True)
    trials = np.vstack([family, np.zeros((3, base.shape[1]))])
    result = effective_trials(trials)
    assert result.n_trials == 35 and result.n_flat == 3
    assert result.n_effective == 5
    clusters = result.labels[:32].reshape(4, 8)
    assert all(len(set(row)) == 1 for row in clusters)  # each family is one cluster
    assert len({row[0] for row in clusters}) == 4
    assert set(result.labels[32:]) == {0}


def test_effective_trials_of_independent_noise_stay_many():
    rng = np.random.default_rng(2)
    result = effective_trials(rng.normal(size=(40, 64)))
    assert result.n_effective >= 10
