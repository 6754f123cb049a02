"""Universes from the database (``research.portfolio.universe``): loading several real stored
markets as one panel, the markets with data in a span, coverage per market, bad universes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from market_files import read_market_bars

from data_pipeline.store import store_bars
from research.panel import align
from research.portfolio.universe import coverage, load_universe, universe_symbols

PAIRS = ["BTC-USDT", "ETH-USDT", "NEO-USDT", "XRP-USDT"]


@pytest.fixture
def stored(engine):
    """The bundled Binance 1h pairs (they list at different times) and one BTC-quoted pair."""
    bars = {}
    with engine.begin() as connection:
        for name in PAIRS + ["NEO-BTC"]:
            one = read_market_bars(f"binance_{name}_1h.csv.gz")
            symbol = name.replace("-", "/")
            store_bars(
                connection,
                "binance",
                symbol,
                "1h",
                one.ts,
                one.open,
                one.high,
                one.low,
                one.close,
                one.volume,
            )
            bars[symbol] = one
    return engine, bars


def test_a_universe_is_its_markets_aligned(stored):
    engine, bars = stored
    symbols = [name.replace("-", "/") for name in PAIRS]
    panel = load_universe(engine, "binance", "1h", symbols)
    expected = align({symbol: bars[symbol] for symbol in symbols})
    assert panel.markets == tuple(symbols)
    np.testing.assert_array_equal(panel.ts, expected.ts)
    for name in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(panel, name), getattr(expected, name))


def test_every_pair_of_a_quote_with_data_in_the_span(stored):
    engine, bars = stored
    assert universe_symbols(engine, "binance", "1h", quote="USDT") == [
        "BTC/USDT",
        "ETH/USDT",
        "NEO/USDT",
        "XRP/USDT",
    ]
    assert universe_symbols(engine, "binance", "1h") == [
        "BTC/USDT",
        "ETH/USDT",
        "NEO/BTC",
        "NEO/USDT",
        "XRP/USDT",
    ]
    # the second BTC/USDT segment only: NEO and XRP (May-June 2018) have data there too
    late = universe_symbols(engine, "binance", "1h", quote="USDT", start="2018-06-25")
    assert late == ["ETH/USDT"]
    panel = load_universe(
        engine, "binance", "1h", quote="USDT", start="2018-05-09", end="2018-05-10"
    )
    assert panel.markets == ("BTC/USDT", "ETH/USDT", "NEO/USDT", "XRP/USDT")
    assert panel.ts[0] >= pd.Timestamp("2018-05-09", tz="UTC").value // 1_000_000
    assert panel.present.all()


def test_history_loads_grid_bars_before_the_start(stored):
    engine, _ = stored
    start = "2018-05-20"
    start_ms = pd.Timestamp(start, tz="UTC").value // 1_000_000
    full = load_universe(engine, "binance", "1h", ["BTC/USDT", "NEO/USDT"])
    panel = load_universe(
        engine, "binance", "1h", ["BTC/USDT", "NEO/USDT"], start=start, end="2018-05-21", history=30
    )
    before = panel.ts[panel.ts < start_ms]
    assert len(before) == 30
    first = int(np.searchsorted(full.ts, start_ms)) - 30
    np.testing.assert_array_equal(panel.ts, full.ts[first : first + len(panel)])
    np.testing.assert_array_equal(panel.close, full.close[first : first + len(panel)])


def test_coverage_per_market(stored):
    engine, bars = stored
    panel = load_universe(engine, "binance", "1h", quote="USDT")
    table = coverage(panel)
    assert list(table.index) == list(panel.markets)
    assert (table["bars"] + table["before"] + table["missing"] + table["after"] == len(panel)).all()
    np.testing.assert_allclose(table["coverage"], table["bars"] / len(panel))
    # oracle: plain set arithmetic on the stored close times
    grid = np.unique(np.concatenate([bars[symbol].ts for symbol in panel.markets]))
    for symbol in panel.markets:
        own = bars[symbol].ts
        inside = grid[(grid >= own[0]) & (grid <= own[-1])]
        assert table.loc[symbol, "missing"] == len(np.setdiff1d(inside, own))
        assert table.loc[symbol, "before"] == (grid < own[0]).sum()
        assert table.loc[symbol, "after"] == (grid > own[-1]).sum()
        assert table.loc[symbol, "bars"] == len(own)
        assert table.loc[symbol, "first"] == pd.Timestamp(int(own[0]), unit="ms", tz="UTC")
    # BTC/USDT's 2018-04-28..05-08 gap is not on the grid (no market has a bar then); NEO/USDT
    # is stored from 2018-05-08 on, after BTC/USDT's first segment
    assert table.loc["BTC/USDT", "missing"] == 0 and table.loc["NEO/USDT", "before"] > 0


@pytest.mark.parametrize(
    "symbols, message",
    [
        (
            ["BTC/USDT", "DOGE/USDT"],
            "universe market binance DOGE/USDT 1h: no bars for binance "
            "DOGE/USDT 1h; stored markets",
        ),
        (["BTC/USDT", "BTC/USDT"], "lists BTC/USDT more than once"),
    ],
)
def test_bad_universes_name_the_market(stored, symbols, message):
    engine, _ = stored
    with pytest.raises(ValueError, match=message):
        load_universe(engine, "binance", "1h", symbols)


def test_a_market_without_bars_in_the_span_is_named(stored):
    engine, _ = stored
    with pytest.raises(ValueError, match="universe market binance NEO/USDT 1h: no bars for"):
        load_universe(engine, "binance", "1h", ["ETH/USDT", "NEO/USDT"], start="2018-06-25")


def test_no_common_span_is_refused(stored):
    engine, bars = stored
    with engine.begin() as connection:
        late = read_market_bars("binance_BTC-USDT_4h.csv.gz")
        keep = late.ts > pd.Timestamp("2023-01-01", tz="UTC").value // 1_000_000
        store_bars(
            connection,
            "binance",
            "SOL/USDT",
            "1h",
            late.ts[keep],
            late.open[keep],
            late.high[keep],
            late.low[keep],
            late.close[keep],
            late.volume[keep],
        )
    with pytest.raises(ValueError, match="no common span"):
        load_universe(engine, "binance", "1h", ["NEO/USDT", "SOL/USDT"])


def test_no_market_of_a_quote(stored):
    engine, _ = stored
    with pytest.raises(ValueError, match="no market of binance 1h quoted in EUR has bars"):
        load_universe(engine, "binance", "1h", quote="EUR")
