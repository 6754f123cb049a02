"""Universe alignment (``research.panel``): one close-time grid, absent markets, coverage.

The rule: the grid is the union of the markets' close times; a market without a bar at a grid
time is absent there (``nan``), valued by the book at its last close; markets must share one
timeframe, one grid phase and a common span.
"""

from __future__ import annotations

import numpy as np
import pytest
from market_files import read_market_bars

from research.panel import Panel, align, forward_fill
from research.types import Bars

HOUR = 3_600_000
T0 = 1_700_006_400_000


def hourly(hours, price=100.0, timeframe_ms=HOUR):
    """Bars closing at ``T0 + h * HOUR`` for each h; prices encode the hour (price + h)."""
    hours = np.asarray(hours)
    close = price + hours.astype(float)
    return Bars(
        T0 + hours.astype(np.int64) * HOUR,
        close - 0.5,
        close + 1.0,
        close - 1.0,
        close,
        np.ones(len(hours)),
        timeframe_ms,
    )


def test_grid_is_the_union_and_missing_bars_are_nan():
    panel = align({"A": hourly([1, 2, 3, 5]), "B": hourly([2, 3, 4, 5], price=200.0)})
    assert panel.markets == ("A", "B")
    np.testing.assert_array_equal(panel.ts, T0 + HOUR * np.array([1, 2, 3, 4, 5]))
    np.testing.assert_array_equal(
        panel.present, [[True, False], [True, True], [True, True], [False, True], [True, True]]
    )
    assert np.isnan(panel.open[0, 1]) and np.isnan(panel.volume[3, 0])
    assert panel.close[4, 0] == 105.0 and panel.close[2, 1] == 203.0
    # each market's own bars come back unchanged
    for name, hours in (("A", [1, 2, 3, 5]), ("B", [2, 3, 4, 5])):
        original = hourly(hours, price=100.0 if name == "A" else 200.0)
        back = panel.bars(name)
        for column in ("ts", "open", "high", "low", "close", "volume"):
            np.testing.assert_array_equal(getattr(back, column), getattr(original, column))


def test_a_time_no_market_has_is_not_on_the_grid():
    panel = align({"A": hourly([1, 2, 6]), "B": hourly([2, 6, 7])})
    np.testing.assert_array_equal(panel.ts, T0 + HOUR * np.array([1, 2, 6, 7]))


def test_one_market_panel_is_exactly_its_bars():
    bars = read_market_bars("bittrex_ADA-BTC_5m.csv.gz")
    panel = align({"ADA/BTC": bars})
    np.testing.assert_array_equal(panel.ts, bars.ts)
    np.testing.assert_array_equal(panel.close[:, 0], bars.close)
    assert panel.present.all()


def test_last_close_carries_an_absent_market_forward():
    panel = align({"A": hourly([1, 2, 3, 5]), "B": hourly([2, 3, 4, 5], price=200.0)})
    last = panel.last_close()
    assert np.isnan(last[0, 1])  # B not yet listed
    assert last[3, 0] == 103.0  # A absent at hour 4: its close of hour 3
    np.testing.assert_array_equal(
        forward_fill(np.array([[np.nan], [1.0], [np.nan], [2.0]])), [[np.nan], [1.0], [1.0], [2.0]]
    )


def test_coverage_counts_split_every_grid_row():
    panel = align({"A": hourly([1, 2, 3, 5, 6]), "B": hourly([3, 4]), "C": hourly([1, 6])})
    counts = panel.coverage_counts()
    n = len(panel)
    assert n == 6
    np.testing.assert_array_equal(counts["bars"], [5, 2, 2])
    np.testing.assert_array_equal(counts["before"], [0, 2, 0])
    np.testing.assert_array_equal(counts["after"], [0, 2, 0])
    np.testing.assert_array_equal(counts["missing"], [1, 0, 4])
    np.testing.assert_array_equal(counts["first_ts"], T0 + HOUR * np.array([1, 3, 1]))
    np.testing.assert_array_equal(counts["last_ts"], T0 + HOUR * np.array([6, 4, 6]))
    total = counts["bars"] + counts["before"] + counts["after"] + counts["missing"]
    assert (total == n).all()


def test_real_pairs_align_on_their_common_grid():
    names = ["BTC-USDT", "ETH-USDT", "NEO-USDT", "XRP-USDT"]
    bars = {name: read_market_bars(f"binance_{name}_1h.csv.gz") for name in names}
    panel = align(bars)
    union = np.unique(np.concatenate([one.ts for one in bars.values()]))
    np.testing.assert_array_equal(panel.ts, union)
    for j, name in enumerate(names):
        rows = np.searchsorted(panel.ts, bars[name].ts)
        np.testing.assert_array_equal(panel.close[rows, j], bars[name].close)
        assert panel.present[:, j].sum() == len(bars[name])
    counts = panel.coverage_counts()
    assert (
        counts["bars"] + counts["before"] + counts["after"] + counts["missing"] == len(panel)
    ).all()


def test_start_and_end_bound_the_grid():
    panel = align(
        {"A": hourly([1, 2, 3, 4]), "B": hourly([2, 3, 4, 5])},
        start=T0 + 2 * HOUR,
        end=T0 + 4 * HOUR,
    )
    np.testing.assert_array_equal(panel.ts, T0 + HOUR * np.array([2, 3, 4]))


def test_slicing_and_selecting():
    panel = align({"A": hourly([1, 2, 3]), "B": hourly([2, 3, 4]), "C": hourly([3, 5])})
    assert len(panel[1:3]) == 2 and panel[1:3].markets == panel.markets
    chosen = panel.select(["C", "A"])
    assert chosen.markets == ("C", "A")
    np.testing.assert_array_equal(chosen.ts, T0 + HOUR * np.array([1, 2, 3, 5]))
    only_b = panel.select(["B"])
    np.testing.assert_array_equal(only_b.ts, T0 + HOUR * np.array([2, 3, 4]))
    with pytest.raises(KeyError, match="'D' is not in the panel; its markets are A, B, C"):
        panel.column("D")


@pytest.mark.parametrize(
    "bars, message",
    [
        ({}, "at least one market"),
        (
            {"A": hourly([1, 2]), "B": hourly([1, 2], timeframe_ms=2 * HOUR)},
            "market 'B' has 7200000 ms bars but 'A' has 3600000 ms bars: a universe has one timeframe",
        ),
        ({"A": hourly([1, 2]), "B": hourly([5, 6])}, "no common span: 'B' starts after 'A' ends"),
        ({"A": hourly([1, 2]), "B": hourly([1, 2], timeframe_ms=0)}, "market 'B' has no timeframe"),
        ({"A": hourly([1, 2]), "B": hourly([])}, "market 'B' has no bars"),
    ],
)
def test_bad_universes_are_refused_naming_the_market(bars, message):
    with pytest.raises(ValueError, match=message):
        align(bars)


def test_off_grid_market_is_refused():
    shifted = hourly([1, 2])
    shifted = Bars(
        shifted.ts + 60_000,
        shifted.open,
        shifted.high,
        shifted.low,
        shifted.close,
        shifted.volume,
        HOUR,
    )
    with pytest.raises(ValueError, match="market 'B': close time .* is off the grid of 'A'"):
        align({"A": hourly([1, 2]), "B": shifted})


def test_panel_checks_its_shapes():
    with pytest.raises(ValueError, match="Panel.close must be a float64 array of shape"):
        Panel(
            ("A",),
            np.array([1], dtype=np.int64),
            *([np.ones((1, 1))] * 3),
            np.ones(1),
            np.ones((1, 1)),
            HOUR,
        )
