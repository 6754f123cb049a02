"""The execution function only where it acts (research.kernels.sweep_row) and the fused sweep
rows (research.validation.fused): bit for bit what the bar-by-bar loop, research.backtest and
the long sweep path give, with fees and slippage, long and short, fractional and boolean
targets, gaps in the bars and a rejected bar."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from market_files import read_market_bars
from reference import random_targets, synthetic_bars

import research.validation.engine as engine
from research.backtesting import backtest
from research.indicators import sma
from research.kernels import records as rc
from research.kernels.backtest import run_backtest
from research.kernels.flag_changes import next_flag_change
from research.kernels.moments import segment_moments_nb
from research.kernels.stats import equity_stats_nb
from research.kernels.sweep_row import (
    BLOCK,
    CHUNK,
    NO_FLAGS,
    NO_LEVELS,
    accepted_bars_nb,
    fill_table,
    fresh_account,
    marked_run,
    sweep_row_nb,
)
from research.strategy_model import strategy
from research.sweeps import sweep
from research.types import Bars, Costs, RiskLimits, Stops
from research.validation.batches import BATCH_CACHE_ARRAYS, INNER_SIDE, grid_batches
from research.validation.moments import N_MOMENTS, block_cuts
from strategies.registry import get_strategy

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
CASH = 10_000.0

COSTS = st.tuples(
    st.sampled_from([0.0, 0.0005, 0.001, 0.01]),
    st.sampled_from([0.0, 1.0, 10.0]),
    st.sampled_from([1.0, 0.5, 2.0, 3.0]),
)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def gappy_bars(n: int, seed: int, bad: int | None = None):
    """Random-walk bars with some bars left out (gaps in time) and, if ``bad`` is given, the
    bar at that index made invalid (its high below its close)."""
    ts, o, h, low, c = synthetic_bars(n + n // 10 + 1, seed, volatility=0.04)
    keep = np.sort(np.random.default_rng(seed).choice(len(ts), n, replace=False))
    ts, o, h, low, c = (np.ascontiguousarray(a[keep]) for a in (ts, o, h, low, c))
    if bad is not None and 0 <= bad < n:
        h[bad] = c[bad] * 0.5
    return ts, o, h, low, c


def as_levels(flags: np.ndarray, lookback: int) -> np.ndarray:
    """What StrategySpec.evaluate makes of a boolean target."""
    levels = flags.astype(np.float64)
    levels[:lookback] = np.nan
    return levels


def reference_run(bars, levels, config):
    """The bar-by-bar loop (research.kernels.backtest.run_backtest)."""
    fills, _, position, equity, status, _ = run_backtest(rc.new_state(CASH), config, *bars, levels)
    processed = int(np.count_nonzero(~np.isnan(equity)))
    return fills, position[:processed], equity[:processed], status


@FAST
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 400),
    costs=COSTS,
    boolean=st.booleans(),
    bad=st.one_of(st.none(), st.integers(0, 400)),
    lookback=st.integers(0, 50),
    hold=st.sampled_from([1, 3, 17, 70]),
)
def test_marked_run_equals_the_bar_by_bar_loop(seed, n, costs, boolean, bad, lookback, hold):
    bars = gappy_bars(n, seed, bad)
    config = rc.make_config(Costs(costs[0], costs[1]), Stops(), RiskLimits(max_position=costs[2]))
    if boolean:
        # held for a few bars, or for runs that span several words of flags
        flags = np.random.default_rng(seed).random(n) < 0.5
        flags = np.repeat(flags[: n // hold + 1], hold)[:n]
        levels = as_levels(flags, lookback)
        given_levels, given_flags, given_lookback = NO_LEVELS, flags.view(np.uint8), lookback
    else:
        levels = random_targets(n, seed, levels=(-3.0, -1.0, -0.5, 0.0, 0.25, 1.0, 2.0, math.nan))
        given_levels, given_flags, given_lookback = levels, NO_FLAGS, 0
    ref_fills, position, ref_equity, ref_status = reference_run(bars, levels, config)
    processed, status = accepted_bars_nb(*bars)
    assert (processed, status) == (len(ref_equity), ref_status)
    equity = np.full(n, np.nan)
    fills, exposed = marked_run(
        config,
        *bars,
        given_levels,
        given_flags,
        given_lookback,
        processed,
        CASH,
        equity,
        fill_table(rc.MAX_FILLS_PER_BAR),  # grown while it runs
    )
    np.testing.assert_array_equal(fills, ref_fills)
    np.testing.assert_array_equal(equity[:processed], ref_equity)
    assert exposed == np.count_nonzero(position)


@FAST
@given(
    flags=st.lists(st.integers(0, 1), max_size=90).map(lambda v: np.array(v, dtype=np.uint8)),
    data=st.data(),
)
def test_the_next_flag_change_is_the_first_differing_flag(flags, data):
    """Eight flags at a time, from any bar and to any end, as a scan one by one finds it."""
    j = data.draw(st.integers(0, len(flags)))
    end = data.draw(st.integers(j, len(flags)))
    flag = data.draw(st.integers(0, 1))
    expected = next((k for k in range(j, end) if flags[k] != flag), end)
    assert next_flag_change(flags, j, end, flag) == expected


def random_cuts(n: int, seed: int) -> np.ndarray:
    """Segment boundaries as sweeps cut them, or arbitrary ones (not from 0, not to the end)."""
    rng = np.random.default_rng(seed)
    if seed % 2 and n >= 8:
        return block_cuts(n, int(rng.integers(1, min(16, n // 4) + 1)), 4 if n >= 64 else 1)
    points = np.unique(rng.integers(0, n + 1, int(rng.integers(2, 12))))
    return points.astype(np.int64) if len(points) >= 2 else np.array([0, n], dtype=np.int64)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31),
    n=st.sampled_from([1, 2, 100, BLOCK - 1, BLOCK + 1, CHUNK, CHUNK + 1, 2 * CHUNK + BLOCK + 7]),
    costs=COSTS,
    boolean=st.booleans(),
)
def test_a_sweep_row_equals_the_statistics_and_moments_of_the_whole_equity(seed, n, costs, boolean):
    bars = gappy_bars(n, seed)
    config = rc.make_config(Costs(costs[0], costs[1]), Stops(), RiskLimits(max_position=costs[2]))
    lookback = int(np.random.default_rng(seed).integers(0, 60))
    if boolean:
        flags = np.repeat(np.random.default_rng(seed).random(n // 20 + 1) < 0.5, 20)[:n]
        levels = as_levels(flags, lookback)
        given = (NO_LEVELS, flags.view(np.uint8), lookback)
    else:
        levels = random_targets(
            n, seed, levels=(-1.0, -0.5, 0.0, 0.5, 1.0, math.nan), change_probability=0.05
        )
        given = (levels, NO_FLAGS, 0)
    ref_fills, position, equity, _ = reference_run(bars, levels, config)
    cuts = random_cuts(n, seed)
    expected_moments = np.zeros((len(cuts) - 1, N_MOMENTS))
    segment_moments_nb(equity, CASH, cuts, expected_moments)
    moments = np.full((len(cuts) - 1, N_MOMENTS), 7.0)
    table = fill_table(rc.MAX_FILLS_PER_BAR * CHUNK)  # too small for some: grown and run again
    while True:
        n_fills, exposed, final, curve = sweep_row_nb(
            tuple(config),
            fresh_account(CASH),
            *bars,
            *given,
            n,
            HOUR_MS,
            cuts,
            table,
            moments,
            np.empty(CHUNK),
            np.empty(CHUNK),
            np.empty(BLOCK),
        )
        if n_fills >= 0:
            break
        table = fill_table(2 * len(table))
    np.testing.assert_array_equal(table[:n_fills], ref_fills)
    assert exposed == np.count_nonzero(position)
    assert final == equity[-1]
    expected = equity_stats_nb(equity, bars[0], HOUR_MS, CASH)
    np.testing.assert_array_equal(np.array(curve, dtype=float), np.array(expected, dtype=float))
    np.testing.assert_array_equal(moments, expected_moments)


# ----------------------------------------------------------------------------- sweeps


@strategy(sweep={"fast": [3, 5, 8], "slow": [10, 20]}, constraints=["fast < slow"])
def fractional_swing(bars, fast: int = 3, slow: int = 10):
    """Long 1.5 above the slow average by a margin, short 0.5 below it, flat in between:
    fractional levels, both sides, and a float target."""
    fast_sma, slow_sma = sma(bars.close, fast), sma(bars.close, slow)
    return 1.5 * (fast_sma > slow_sma * 1.001) - 0.5 * (fast_sma < slow_sma * 0.999)


SMA = get_strategy("sma_cross")


@pytest.fixture(scope="module")
def gappy_minutes() -> Bars:
    """Real 1m bars with gaps (Bittrex leaves out minutes without trades)."""
    bars = read_market_bars("bittrex_ADA-BTC_1m.csv.gz", MINUTE_MS)[:12_000]
    assert np.diff(bars.ts).max() > MINUTE_MS
    return bars


@pytest.fixture(scope="module")
def with_a_bad_bar(gappy_minutes) -> Bars:
    """The bars with one invalid bar (high below the close) two thirds in."""
    high = gappy_minutes.high.copy()
    high[8_000] = gappy_minutes.close[8_000] * 0.5
    b = gappy_minutes
    return Bars(b.ts, b.open, high, b.low, b.close, b.volume, b.timeframe_ms)


def assert_rows_equal_backtests(result, spec, bars, costs, **options):
    valid = result.frame[result.frame["valid"]]
    assert len(valid) > 0
    for _, row in valid.iterrows():
        params = spec.make_params({name: row[name] for name in result.param_names})
        stats = backtest(spec, bars, params, costs, **options).stats
        for name, expected in stats.items():
            if isinstance(expected, float) and math.isnan(expected):
                assert pd.isna(row[name]), name
            else:
                assert row[name] == expected, (params, name)


@pytest.mark.parametrize(
    "spec, grid",
    [
        (SMA, {"fast": [2, 5, 12], "slow": [9, 30]}),
        (fractional_swing, {"fast": [3, 5], "slow": [10, 20]}),
        (get_strategy("ema_cross"), {"fast": [5, 12], "slow": [26]}),  # -1 / 0 / +1 levels
    ],
    ids=["boolean", "fractional", "short"],
)
@pytest.mark.parametrize("fixture", ["gappy_minutes", "with_a_bad_bar"])
def test_every_fused_row_equals_an_individual_backtest(spec, grid, fixture, request):
    bars = request.getfixturevalue(fixture)
    costs = Costs(fee_rate=0.001, slippage_bps=3.0)
    result = sweep(spec, bars, grid, costs, progress=False, keep_best=0, min_trades=0)
    assert_rows_equal_backtests(result, spec, bars, costs)
    if fixture == "with_a_bad_bar":
        assert (result.frame["n_bars"][result.frame["valid"]] == 8_000).all()


def test_rows_with_stops_take_the_bar_by_bar_loop_and_equal_backtests(gappy_minutes):
    costs = Costs(fee_rate=0.0005, slippage_bps=1.0)
    stops = Stops(stop_loss=0.01, trailing_stop=0.02)
    grid = {"fast": [3, 8], "slow": [20]}
    result = sweep(SMA, gappy_minutes, grid, costs, stops=stops, progress=False, keep_best=0)
    assert_rows_equal_backtests(result, SMA, gappy_minutes, costs, stops=stops)


@pytest.mark.parametrize("split", [None, 7_000])
@pytest.mark.parametrize("start", [0, 2_500])
def test_fused_batches_equal_the_long_path_with_their_moments(
    gappy_minutes, monkeypatch, split, start
):
    """run_batch with fused rows against run_batch forced onto run_stats and
    segment_moments_nb: the same stats (oos_ ones too) and moments, bit for bit."""
    spec = fractional_swing
    candidates = [spec.make_params(fast=f, slow=s) for f, s in [(3, 10), (5, 20), (8, 20)]]
    settings_ = (Costs(fee_rate=0.001, slippage_bps=2.0), None, RiskLimits(), CASH)
    traded = (len(gappy_minutes) if split is None else split) - start
    cuts = block_cuts(traded, 16, 4)
    arguments = (spec, gappy_minutes, range(3), candidates, settings_, cuts, start, split)
    fused = engine.run_batch(*arguments)
    monkeypatch.setattr(engine, "fused_rows", lambda *_: False)
    long = engine.run_batch(*arguments)
    for (index, stats, moments), (ref_index, ref_stats, ref_moments) in zip(fused, long):
        assert index == ref_index
        assert stats.keys() == ref_stats.keys()
        for name, value in ref_stats.items():
            assert stats[name] == value or (math.isnan(value) and math.isnan(stats[name])), name
        np.testing.assert_array_equal(moments, ref_moments)


def test_a_batch_is_one_tile_of_the_grid():
    """A batch holds the candidates of one tile (20 fast x INNER_SIDE slow values for batches
    of 100), however the constraint thins the tiles out, and every candidate is in exactly one
    batch; run in batch order through a least-recently-used memo of BATCH_CACHE_ARRAYS
    arrays, each moving average of a batch is computed once."""
    grid = {"fast": list(range(5, 55)), "slow": list(range(20, 217, 4))}
    candidates = [
        SMA.make_params(fast=f, slow=s) for f in grid["fast"] for s in grid["slow"] if f < s
    ]
    batches = grid_batches(candidates, grid, 100)
    assert sorted(i for batch in batches for i in batch) == list(range(len(candidates)))
    computed = 0
    for batch in batches:
        assert len(batch) <= 100
        tiles = {
            (
                grid["fast"].index(candidates[i].fast) // (100 // INNER_SIDE),
                grid["slow"].index(candidates[i].slow) // INNER_SIDE,
            )
            for i in batch
        }
        assert len(tiles) == 1
        memo: list[int] = []  # moving-average windows, least recently used first
        for i in batch:
            for window in (candidates[i].fast, candidates[i].slow):
                if window in memo:
                    memo.remove(window)
                else:
                    computed += 1
                memo.append(window)
                del memo[:-BATCH_CACHE_ARRAYS]
    # every batch computed each of its windows once: the total is the sum of distinct windows
    distinct = sum(
        len({w for i in batch for w in (candidates[i].fast, candidates[i].slow)})
        for batch in batches
    )
    assert computed == distinct
    assert computed <= 0.32 * len(candidates)  # ~25 moving averages per 100 rows


def test_auto_runs_fused_rows_on_threads_and_the_others_on_processes():
    """``backend="auto"``: threads for rows without stops or limits, whose kernels release the
    GIL (so two threads run two rows at once), loky processes for the others."""
    from research.kernels.trades import closed_trades_into_nb
    from research.kernels.window_sums import fixed_point_sums_nb, limb_sums_nb

    plain = (Costs(0.001), None, RiskLimits(), CASH)
    assert engine.resolve_backend("auto", SMA, plain) == "threading"
    stopped = (Costs(0.001), Stops(stop_loss=0.02), RiskLimits(), CASH)
    assert engine.resolve_backend("auto", SMA, stopped) == "loky"
    limited = (Costs(0.001), None, RiskLimits(max_drawdown=0.2), CASH)
    assert engine.resolve_backend("auto", SMA, limited) == "loky"
    assert engine.resolve_backend("dask", SMA, plain) == "dask"
    for kernel in (
        sweep_row_nb,
        accepted_bars_nb,
        closed_trades_into_nb,
        fixed_point_sums_nb,
        limb_sums_nb,
    ):
        assert kernel.targetoptions.get("nogil") is True, kernel.py_func.__name__
