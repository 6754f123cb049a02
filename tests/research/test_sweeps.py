"""research.sweep: rows equal individual backtests, invalid combinations are rows marked invalid
with their reason and counted, seeded subsets are reproducible, parallel equals serial, memory
does not grow with the number of combinations."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pandas as pd
import pytest
from market_files import read_market_bars

from research.backtesting import backtest
from research.sweeps import SweepResult, sweep
from research.types import Bars, Costs
from strategies.registry import get_strategy

MINUTE_MS = 60_000
HOUR_MS = 3_600_000


@pytest.fixture(scope="module")
def hourly_bars() -> Bars:
    return read_market_bars("binance_BTC-USDT_1h.csv.gz", HOUR_MS)


@pytest.fixture(scope="module")
def long_bars() -> Bars:
    """26,703 real 1m bars: large enough (> 1 MiB of arrays) to be shipped memory-mapped."""
    return read_market_bars("bittrex_ADA-BTC_1m.csv.gz", MINUTE_MS)


SMA = get_strategy("sma_cross")
COSTS = Costs(fee_rate=0.001, slippage_bps=2.0)


def assert_stats_equal(row: pd.Series, stats: pd.Series) -> None:
    for name, expected in stats.items():
        actual = row[name]
        if isinstance(expected, (float, np.floating)) and np.isnan(expected):
            assert pd.isna(actual), name
        else:
            assert actual == expected, name


def valid_rows(result: SweepResult) -> pd.DataFrame:
    return result.frame[result.frame["valid"]]


def test_every_row_equals_an_individual_backtest(hourly_bars):
    grid = {"fast": [5, 10, 20, 40], "slow": [20, 30, 60]}
    result = sweep(SMA, hourly_bars, grid, COSTS, progress=False, keep_best=2)
    assert list(zip(result.frame["fast"], result.frame["slow"], strict=True)) == list(
        itertools.product(grid["fast"], grid["slow"])
    )
    valid = [(f, s) for f, s in itertools.product(grid["fast"], grid["slow"]) if f < s]
    assert list(zip(valid_rows(result)["fast"], valid_rows(result)["slow"], strict=True)) == valid
    for _, row in valid_rows(result).iterrows():
        params = SMA.make_params(fast=int(row["fast"]), slow=int(row["slow"]))
        assert_stats_equal(row, backtest(SMA, hourly_bars, params, COSTS).stats)


def test_invalid_combinations_are_rows_with_their_reason_and_counted(hourly_bars):
    grid = {"fast": [5, 10, 20, 40], "slow": [20, 30, 60]}
    result = sweep(SMA, hourly_bars, grid, COSTS, progress=False, keep_best=0)
    invalid = sum(1 for f, s in itertools.product(grid["fast"], grid["slow"]) if f >= s)
    assert result.n_combinations == len(result.frame) == 12
    assert result.n_invalid == invalid == 3
    assert result.n_evaluated == 12 - invalid
    assert result.invalid_reasons == {"constraint '1 <= fast < slow'": 3}
    broken = result.frame[~result.frame["valid"]]
    assert (broken["fast"] >= broken["slow"]).all()
    assert (broken["invalid_reason"] == "constraint '1 <= fast < slow'").all()
    assert broken["sharpe"].isna().all() and broken["trade_count"].isna().all()
    assert (valid_rows(result)["invalid_reason"] == "").all()
    assert not result.best(20)["valid"].eq(False).any() and len(result.best(20)) == 9


def test_combinations_needing_more_bars_than_exist_are_invalid_rows(hourly_bars):
    short = hourly_bars[:100]
    result = sweep(
        SMA,
        short,
        {"fast": [5], "slow": [20, 99, 100, 150]},
        progress=False,
        keep_best=0,
        min_trades=0,
    )
    # slow=100 has look-back 99: 100 bars are just enough; 150 needs 150
    assert list(result.frame["valid"]) == [True, True, True, False]
    assert result.frame["invalid_reason"].iloc[3] == "too few bars: 100 < look-back 149 + 1"
    assert result.n_invalid == 1 and result.invalid_reasons == {"too few bars for the look-back": 1}


def _sometimes_raises():
    """An SMA cross whose code raises for one value of ``fast`` (a bug of that parameter)."""
    from research.indicators import sma
    from research.strategy_model import strategy

    @strategy(name="sometimes_raises", constraints=["fast < slow"])
    def sometimes_raises(bars, fast: int = 5, slow: int = 30):
        if fast == 13 and len(bars):
            raise ZeroDivisionError("thirteen is unlucky")
        return sma(bars.close, fast) > sma(bars.close, slow)

    return sometimes_raises


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_strategy_that_raises_makes_invalid_rows_not_a_crash(hourly_bars, n_jobs):
    spec = _sometimes_raises()
    grid = {"fast": [5, 13, 40], "slow": [30, 60]}
    result = sweep(
        spec,
        hourly_bars,
        grid,
        COSTS,
        progress=False,
        keep_best=1,
        n_jobs=n_jobs,
        backend="threading",
        batch_size=2,
        min_trades=0,
    )
    frame = result.frame.set_index(["fast", "slow"])
    assert not frame.loc[(13, 30), "valid"] and not frame.loc[(13, 60), "valid"]
    assert frame.loc[(13, 30), "invalid_reason"] == "ZeroDivisionError: thirteen is unlucky"
    assert frame.loc[(40, 30), "invalid_reason"] == "constraint 'fast < slow'"
    assert frame["valid"].sum() == result.n_evaluated == 3
    assert result.invalid_reasons == {
        "constraint 'fast < slow'": 1,
        "ZeroDivisionError raised by the strategy": 2,
    }
    for fast, slow in [(5, 30), (5, 60), (40, 60)]:
        params = spec.make_params(fast=fast, slow=slow)
        expected = backtest(spec, hourly_bars, params, COSTS).stats
        assert_stats_equal(frame.loc[(fast, slow)], expected)
    assert [params.fast for params in result.equity] != [13]


def test_a_grid_without_any_valid_combination_gives_invalid_rows(hourly_bars):
    result = sweep(SMA, hourly_bars, {"fast": [50], "slow": [20, 30]}, progress=False)
    assert result.n_evaluated == 0 and result.n_invalid == 2 and not result.frame["valid"].any()
    assert len(result.best()) == 0 and result.equity == {}


def test_a_bug_in_the_library_is_not_hidden_as_an_invalid_row(hourly_bars):
    """Only the strategy's own failures become invalid rows: a strategy whose history window
    cannot be known is a definition error, raised."""
    from research.strategy_model import UnknownHistoryError, strategy

    @strategy(name="plain")
    def plain(bars, window: int = 5):
        return np.asarray(bars.close) > 0

    with pytest.raises(UnknownHistoryError, match="history window unknown"):
        sweep(plain, hourly_bars, {"window": [5, 6]}, progress=False)


def test_keep_best_keeps_the_equity_of_the_best_rows(hourly_bars):
    grid = {"fast": [5, 10, 20], "slow": [30, 60, 90]}
    result = sweep(SMA, hourly_bars, grid, COSTS, progress=False, keep_best=3, metric="sharpe")
    best = result.frame.sort_values("sharpe", ascending=False, kind="stable").head(3)
    assert [(p.fast, p.slow) for p in result.equity] == list(zip(best["fast"], best["slow"]))
    for params, equity in result.equity.items():
        expected = backtest(SMA, hourly_bars, params, COSTS).equity
        pd.testing.assert_series_equal(equity, expected)
    assert list(result.best(3)["sharpe"]) == list(best["sharpe"])


def test_seeded_subset_is_reproducible_and_drawn_from_the_valid_grid(hourly_bars):
    grid = {"fast": range(5, 30, 5), "slow": range(20, 80, 10)}
    first = sweep(SMA, hourly_bars, grid, progress=False, sample=7, seed=3, keep_best=0)
    again = sweep(SMA, hourly_bars, grid, progress=False, sample=7, seed=3, keep_best=0)
    other = sweep(SMA, hourly_bars, grid, progress=False, sample=7, seed=4, keep_best=0)
    pd.testing.assert_frame_equal(first.frame, again.frame)
    assert len(first.frame) == first.n_evaluated == 7
    pairs = list(zip(first.frame["fast"], first.frame["slow"]))
    assert len(set(pairs)) == 7 and all(f < s for f, s in pairs)
    assert pairs == sorted(pairs)  # evaluated in grid order
    assert pairs != list(zip(other.frame["fast"], other.frame["slow"]))


def test_sample_larger_than_the_grid_evaluates_everything(hourly_bars):
    result = sweep(
        SMA, hourly_bars, {"fast": [5, 10], "slow": [20]}, progress=False, sample=50, keep_best=0
    )
    assert len(result.frame) == 2


def test_two_processes_give_the_same_table_as_one(long_bars):
    grid = {"fast": [5, 15, 30, 45], "slow": [40, 80]}
    serial = sweep(SMA, long_bars, grid, COSTS, progress=False, keep_best=1)
    parallel = sweep(
        SMA, long_bars, grid, COSTS, progress=False, keep_best=1, n_jobs=2, batch_size=2
    )
    pd.testing.assert_frame_equal(serial.frame, parallel.frame)
    assert list(serial.equity) == list(parallel.equity)
    assert not serial.frame["valid"].all()


def test_unknown_parameter_suggests_the_right_name(hourly_bars):
    with pytest.raises(ValueError, match="did you mean 'fast'"):
        sweep(SMA, hourly_bars, {"fats": [5, 10]}, progress=False)


def test_unknown_metric_lists_the_columns(hourly_bars):
    with pytest.raises(ValueError, match="unknown metric 'sharp'"):
        sweep(SMA, hourly_bars, {"fast": [5], "slow": [20]}, progress=False, metric="sharp")


def _peak_traced_bytes(bars: Bars, grid) -> tuple[int, SweepResult]:
    tracemalloc.start()
    try:
        result = sweep(SMA, bars, grid, progress=False, keep_best=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, result


@pytest.mark.slow
def test_memory_does_not_grow_with_the_number_of_combinations(long_bars):
    bars = long_bars[:20_000]
    small_grid = {"fast": range(2, 12), "slow": range(20, 25)}  # 50 combinations
    large_grid = {"fast": range(2, 27), "slow": range(30, 50)}  # 500 combinations
    _peak_traced_bytes(bars, {"fast": [2], "slow": [20]})  # warm caches and JIT first
    small_peak, small = _peak_traced_bytes(bars, small_grid)
    large_peak, large = _peak_traced_bytes(bars, large_grid)
    assert (small.n_evaluated, large.n_evaluated) == (50, 500)
    # A row keeps its statistics and its per-block return moments (for the deflated Sharpe ratio
    # and PBO), about 10 kB whatever the number of bars: 16 kB per row is the budget. One
    # bars-long float64 array kept per extra combination would add 450 x 160 kB = 72 MB.
    assert large_peak - small_peak < 450 * 16_000
    assert large_peak / small_peak < 1.5


def test_out_of_sample_columns_equal_backtests_from_the_split(hourly_bars):
    """In-sample: a backtest of the first part. Out of sample: a backtest from the first
    held-out bar with the bars before it as history (a bot started there)."""
    grid = {"fast": [5, 10], "slow": [20, 40]}
    result = sweep(SMA, hourly_bars, grid, COSTS, progress=False, keep_best=1, oos_fraction=0.3)
    split = len(hourly_bars) - round(0.3 * len(hourly_bars))
    assert result.split_ts == hourly_bars.ts[split]
    in_sample = hourly_bars[:split]
    for _, row in result.frame.iterrows():
        params = SMA.make_params(fast=int(row["fast"]), slow=int(row["slow"]))
        assert_stats_equal(row, backtest(SMA, in_sample, params, COSTS).stats)
        oos = backtest(SMA, hourly_bars, params, COSTS, start=split).stats.add_prefix("oos_")
        assert_stats_equal(row, oos)
        assert row["oos_n_bars"] == len(hourly_bars) - split
    (best_equity,) = result.equity.values()
    assert best_equity.index[-1].value // 1_000_000 == in_sample.ts[-1]


def test_out_of_sample_fraction_must_leave_two_parts(hourly_bars):
    with pytest.raises(ValueError, match="oos_fraction must be within"):
        sweep(SMA, hourly_bars, {"fast": [5], "slow": [20]}, progress=False, oos_fraction=1.0)


def test_threads_give_the_same_table_as_one_process(hourly_bars):
    grid = {"fast": [5, 15], "slow": [30, 60]}
    serial = sweep(SMA, hourly_bars, grid, COSTS, progress=False, keep_best=0)
    threaded = sweep(
        SMA,
        hourly_bars,
        grid,
        COSTS,
        progress=False,
        keep_best=0,
        n_jobs=2,
        backend="threading",
        batch_size=1,
    )
    pd.testing.assert_frame_equal(serial.frame, threaded.frame)


# ----------------------------------------------------------------------------- minimum trades


def test_rank_leaves_out_rows_with_too_few_trades():
    from research.sweeps import rank

    frame = pd.DataFrame(
        {
            "fast": [5, 10, 15, 20],
            "trade_count": [1, 12, 30, 9],
            "profit_factor": [np.inf, 1.4, 1.1, 3.0],
            "max_drawdown": [0.01, 0.2, 0.1, 0.05],
        }
    )
    assert list(rank(frame, "profit_factor")["fast"]) == [5, 20, 10, 15]  # no filter: inf first
    assert list(rank(frame, "profit_factor", min_trades=10)["fast"]) == [10, 15]
    assert list(rank(frame, "max_drawdown", min_trades=10)["fast"]) == [15, 10]  # lower first


def test_a_one_trade_parameter_set_does_not_rank_by_default():
    """On real bars a slow enough average makes a handful of trades, and a lucky one has a
    profit factor of inf: it must not reach the top 5, by default and at any metric."""
    bars = read_market_bars("bittrex_ADA-BTC_1d.csv.gz")
    grid = {"fast": [2, 3, 5, 10, 60], "slow": [5, 10, 20, 200]}
    result = sweep(SMA, bars, grid, COSTS, progress=False, keep_best=3, metric="profit_factor")
    frame = result.frame
    few = frame["trade_count"] < 10
    assert result.min_trades == 10 and result.n_too_few_trades == few.sum() > 0
    assert (frame.loc[few, "profit_factor"] == np.inf).any()  # the trap is there
    best = result.best(5)
    assert len(best) and (best["trade_count"] >= 10).all()
    assert np.isfinite(best["profit_factor"]).all()
    for params in result.equity:  # the kept equity curves are those of ranked rows
        row = frame[(frame["fast"] == params.fast) & (frame["slow"] == params.slow)]
        assert int(row["trade_count"].iloc[0]) >= 10
    everything = result.best(5, min_trades=0)
    assert everything["profit_factor"].iloc[0] == np.inf
    unfiltered = sweep(
        SMA, bars, grid, COSTS, progress=False, keep_best=0, metric="profit_factor", min_trades=0
    )
    assert unfiltered.best(1)["profit_factor"].iloc[0] == np.inf
    with pytest.raises(ValueError, match="min_trades"):
        sweep(SMA, bars, grid, COSTS, progress=False, min_trades=-1)
