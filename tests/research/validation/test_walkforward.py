"""Walk-forward optimisation against an oracle made of plain ``research.backtest`` calls.

The oracle backtests every combination on every training window with ``start=`` (history
before the window), picks the best Sharpe ratio among rows with enough trades with pandas,
backtests the chosen parameters on the test window with the capital the previous window ended
with, and concatenates the equity curves. The walk-forward must agree exactly.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from market_files import read_market_bars

from research.backtesting import backtest
from research.types import Costs
from research.validation.walkforward import walk_forward
from research.validation.windows import walk_forward_windows
from strategies.registry import get_strategy

GRID = {"fast": [3, 6, 12], "slow": [20, 40, 80]}
COSTS = Costs(fee_rate=0.0005)
MIN_TRADES = 3


@pytest.fixture(scope="module")
def bars():
    return read_market_bars("bittrex_XRP-BTC_5m.csv.gz")


def oracle(spec, bars, windows):
    chosen, equity, capital = [], [], 10_000.0
    for window in windows:
        rows = []
        for fast, slow in itertools.product(GRID["fast"], GRID["slow"]):
            result = backtest(
                spec,
                bars[: window.train_stop],
                {"fast": fast, "slow": slow},
                COSTS,
                start=window.train_start,
            )
            rows.append(
                {
                    "fast": fast,
                    "slow": slow,
                    "sharpe": result.stats["sharpe"],
                    "trades": result.stats["trade_count"],
                }
            )
        table = pd.DataFrame(rows)
        table = table[table["trades"] >= MIN_TRADES].sort_values(
            "sharpe", ascending=False, kind="stable"
        )
        params = {"fast": int(table.iloc[0]["fast"]), "slow": int(table.iloc[0]["slow"])}
        chosen.append((params["fast"], params["slow"]))
        test = backtest(
            spec,
            bars[: window.test_stop],
            params,
            COSTS,
            initial_cash=capital,
            start=window.test_start,
        )
        equity.append(test.equity)
        capital = float(test.equity.iloc[-1])
    return chosen, pd.concat(equity)


@pytest.mark.parametrize("anchored", [False, True])
def test_walk_forward_equals_backtests_window_by_window(bars, anchored):
    spec = get_strategy("sma_cross")
    walk = walk_forward(
        spec,
        bars,
        GRID,
        COSTS,
        train=1_200,
        test=900,
        anchored=anchored,
        min_trades=MIN_TRADES,
        progress=False,
    )
    windows = walk_forward_windows(bars.ts, 1_200, 900, anchored=anchored)
    chosen, equity = oracle(spec, bars, windows)
    assert list(zip(walk.windows["fast"], walk.windows["slow"], strict=True)) == chosen
    pd.testing.assert_series_equal(walk.equity, equity, check_names=False)
    # no bar lost: the stitched run covers every bar after the first training window
    assert len(walk.equity) == len(bars) - 1_200 == walk.stats["n_bars"]
    assert walk.stats["final_equity"] == equity.iloc[-1]
    assert walk.stats["trade_count"] == walk.windows["oos_trades"].sum()
    if anchored:
        assert (walk.windows["train_bars"] == [w.train_stop for w in windows]).all()


def test_test_windows_are_warmed_on_the_bars_before_them(bars):
    """The first bar of each test window already has a defined target (the indicators were
    computed over the history before the window), unlike a backtest of the window alone."""
    spec = get_strategy("sma_cross")
    walk = walk_forward(
        spec,
        bars,
        {"fast": [5], "slow": [60]},
        COSTS,
        train=1_000,
        n_windows=4,
        min_trades=0,
        progress=False,
    )
    for row in walk.windows.itertuples():
        start = int(np.searchsorted(bars.ts, row.test_start_ts))
        stop = start + row.test_bars
        warmed = backtest(spec, bars[:stop], {"fast": 5, "slow": 60}, COSTS, start=start)
        assert np.isfinite(warmed.target[0])
        cold = backtest(spec, bars[start:stop], {"fast": 5, "slow": 60}, COSTS)
        assert np.isnan(cold.target[0])  # what a window without its history would lose


def test_efficiency_and_stability_follow_from_the_windows(bars):
    spec = get_strategy("sma_cross")
    walk = walk_forward(
        spec, bars, GRID, COSTS, train=1_200, n_windows=5, min_trades=MIN_TRADES, progress=False
    )
    mean_in_sample = walk.windows["is_sharpe"].mean()
    expected = walk.stats["sharpe"] / mean_in_sample if mean_in_sample > 0 else math.nan
    assert walk.efficiency["sharpe"] == pytest.approx(expected, nan_ok=True)
    stability = walk.stability().set_index("parameter")
    for name in ("fast", "slow"):
        values = walk.windows[name].to_numpy()
        assert stability.loc[name, "changes"] == int((values[1:] != values[:-1]).sum())
        assert stability.loc[name, "distinct"] == len(set(values))
    assert walk.windows[["dsr", "pbo"]].notna().all().all()


def test_a_window_without_enough_trades_stays_flat(bars):
    spec = get_strategy("sma_cross")
    walk = walk_forward(
        spec,
        bars,
        {"fast": [5], "slow": [60]},
        COSTS,
        train=1_000,
        n_windows=3,
        min_trades=10_000,
        progress=False,
    )
    assert walk.windows["fast"].isna().all()
    assert (walk.equity == 10_000.0).all()
    assert walk.stats["trade_count"] == 0


@pytest.mark.parametrize(
    "options, message",
    [
        ({"train": 10_000, "test": 100}, "no bar is left to test on"),
        ({"train": 500, "test": 100, "metric": "luck"}, "unknown metric 'luck'"),
        ({"train": "3D", "test": 100}, "both be numbers of bars or both durations"),
        ({"train": 15, "test": 100}, "no combination of the grid has a look-back shorter"),
    ],
)
def test_bad_walk_forward_settings_say_what_to_change(bars, options, message):
    with pytest.raises(ValueError, match=message):
        walk_forward(get_strategy("sma_cross"), bars, GRID, COSTS, progress=False, **options)


def test_combinations_too_long_for_a_window_are_invalid_rows_not_a_crash(bars):
    """slow=200 needs 200 bars before its first target: in the first window (150 bars of
    history in all) it is an invalid row; later windows, with more history, can choose it."""
    spec = get_strategy("sma_cross")
    walk = walk_forward(
        spec,
        bars,
        {"fast": [5], "slow": [20, 200]},
        COSTS,
        train=150,
        n_windows=4,
        anchored=True,
        min_trades=0,
        progress=False,
    )
    assert walk.windows["n_valid"].iloc[0] == 1 and walk.windows["slow"].iloc[0] == 20
    assert (walk.windows["n_valid"].iloc[1:] == 2).all()


def test_a_walk_forward_can_choose_with_a_search(bars, database_url):
    """Each training window runs an Optuna search (its own study, resumable); the chosen
    parameters are the search's best trial, traded on the next window as with a grid."""
    spec = get_strategy("sma_cross")
    options = {
        "train": 1_500,
        "n_windows": 2,
        "min_trades": 3,
        "progress": False,
        "search_trials": 12,
        "database_url": database_url,
    }
    walk = walk_forward(spec, bars, GRID, COSTS, **options)
    assert walk.windows["fast"].notna().all()
    for row in walk.windows.itertuples():
        params = {"fast": row.fast, "slow": row.slow}
        assert params["fast"] in GRID["fast"] and params["slow"] in GRID["slow"]
    again = walk_forward(spec, bars, GRID, COSTS, **options)  # the studies are complete
    pd.testing.assert_frame_equal(again.windows, walk.windows)
