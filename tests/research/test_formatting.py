"""research.formatting: one unit convention (fractions computed, percentages shown), durations
as durations, prices and sizes with the digits they need, never scientific notation."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from market_files import read_market_bars

from research import formatting as fmt
from research.backtesting import backtest
from research.metrics import STAT_NAMES
from research.types import Costs
from strategies.registry import get_strategy

SCIENTIFIC = re.compile(r"\d[eE][+-]?\d")


@pytest.fixture(scope="module")
def gappy_run():
    """The bundled Bittrex ADA/BTC 1m sample: 26,703 bars over half a year (10 % coverage),
    prices around 0.00002 BTC, sizes in the hundreds of millions of ADA."""
    bars = read_market_bars("bittrex_ADA-BTC_1m.csv.gz")
    return backtest(get_strategy("sma_cross"), bars, {"fast": 10, "slow": 50}, Costs(0.001))


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15))
def test_numbers_are_positional_and_keep_six_significant_digits(value):
    text = fmt.fmt_number(value)
    assert not SCIENTIFIC.search(text)
    parsed = float(text.replace(",", ""))
    assert parsed == pytest.approx(value, rel=1e-5, abs=10.0**-fmt.MAX_DECIMALS)


def test_the_issues_examples_read_as_dates_percentages_and_money():
    assert fmt.fmt_time(1.523117e12) == "2018-04-07 16:03:20 UTC"
    assert fmt.fmt_time(1_523_116_800_000) == "2018-04-07 16:00 UTC"
    assert fmt.fmt_percent(1.377133e-02) == "1.38 %"
    assert fmt.format_value("return", 1.377133e-02) == "+1.38 %"
    assert fmt.fmt_money(-1.2e-12, scale=10_000) == "0.00"  # rounding noise, no sign
    assert fmt.fmt_number(0.000023456) == "0.0000234560"
    assert fmt.fmt_number(206_326_012.35) == "206,326,012"


@pytest.mark.parametrize(
    "milliseconds, text",
    [
        (0, "0 s"),
        (250, "0.25 s"),
        (45_000, "45 s"),
        (1_930_000, "32 min 10 s"),
        (7_320_000, "2 h 02 min"),
        (86_400_000, "1 d"),
        (15_865_380_000, "183 d 15 h"),
        (pd.Timedelta(hours=3), "3 h 00 min"),
        (math.nan, "n/a"),
    ],
)
def test_durations_read_as_durations(milliseconds, text):
    assert fmt.fmt_duration(milliseconds) == text


def test_money_precision_follows_the_size_of_the_account():
    assert fmt.money_decimals(10_000) == 2
    assert fmt.money_decimals(1.0) == 5  # one BTC: satoshi-level amounts stay visible
    assert fmt.fmt_money(0.0012345, scale=1.0) == "0.00123"
    assert fmt.fmt_money(12_345.678, scale=10_000) == "12,345.68"


def test_every_stat_has_a_kind_and_a_basis(gappy_run):
    assert set(STAT_NAMES) <= set(fmt.STATS)
    assert [name for section in fmt.SECTIONS.values() for name in section] == list(STAT_NAMES)
    table = fmt.stats_table(gappy_run.stats)
    assert list(table.index) == list(STAT_NAMES)
    assert (table["basis"].str.len() > 0).all()
    assert not table["value"].str.contains(SCIENTIFIC).any()


def test_the_basis_states_the_annualisation_and_the_calendar_years(gappy_run):
    table = fmt.stats_table(gappy_run.stats)
    assert "0.50 years" in table.loc["cagr", "basis"]
    per_year = fmt.format_value("number", gappy_run.stats["bars_per_year"])
    assert per_year in table.loc["sharpe", "basis"] and per_year != "525,600"
    assert "525,600 if complete" in table.loc["bars_per_year", "basis"]
    assert "1m grid" in table.loc["missing_bars", "basis"]
    assert table.loc["start_ts", "value"] == "2018-01-20 04:56 UTC"
    assert table.loc["coverage", "value"] == "10.10 %"
    assert table.loc["elapsed_ms", "value"] == "183 d 15 h"


def test_stats_text_groups_sections_and_warns_about_gaps_and_coverage(gappy_run):
    text = fmt.stats_text(gappy_run.stats)
    assert not SCIENTIFIC.search(text)
    blocks = text.split("\n\n")
    assert len(blocks) == len(fmt.SECTIONS) + 1  # the sections, then the warnings
    warnings = blocks[-1].splitlines()
    assert len(warnings) == 2 and all(line.startswith("warning: ") for line in warnings)
    assert f"held across {fmt.fmt_count(gappy_run.stats['gaps_held'])} of the 1,436" in text
    assert "cover only 10.10 %" in text
    assert "basis" not in fmt.stats_text(gappy_run.stats, basis=False)


def test_few_trades_are_warned_about():
    warnings = fmt.stats_warnings({"trade_count": 3, "gaps_held": 0, "coverage": 1.0})
    assert len(warnings) == 1 and "only 3 closed trades" in warnings[0]
    assert fmt.stats_warnings({"trade_count": 30, "gaps_held": 0, "coverage": 1.0}) == []


def test_trade_tables_show_the_market_s_precision(gappy_run):
    table = fmt.trades_table(gappy_run.trades, scale=gappy_run.initial_cash)
    assert not table.apply(lambda column: column.str.contains(SCIENTIFIC)).any().any()
    first = table.iloc[0]
    assert re.fullmatch(r"0\.0000\d{4}", first["entry_price"])  # Bittrex's 8-decimal ticks
    assert re.fullmatch(r"[\d,]+", first["size"])  # hundreds of millions of ADA: whole units
    assert first["return"].endswith(" %") and first["duration"][0].isdigit()
    assert first["entry_time"].endswith(" UTC")
    last = table.iloc[-1]
    assert last["exit_reason"] == "open" and last["exit_time"] == "n/a"
    fills = fmt.trades_table(gappy_run.fills, scale=gappy_run.initial_cash)
    assert not fills["cash_after"].str.contains(r"^-0\.00$").any()


def test_sweep_frames_format_in_sample_and_out_of_sample_stats():
    frame = pd.DataFrame(
        {
            "fast": [5, 10],
            "sharpe": [1.23456, -0.5],
            "total_return": [0.0137, -0.2],
            "oos_max_drawdown": [0.12, 0.3],
        }
    )
    out = fmt.format_frame(frame)
    assert list(out["fast"]) == ["5", "10"]
    assert list(out["sharpe"]) == ["1.23", "-0.50"]
    assert list(out["total_return"]) == ["+1.37 %", "-20.00 %"]
    assert list(out["oos_max_drawdown"]) == ["12.00 %", "30.00 %"]


def test_readable_pandas_drops_scientific_notation(gappy_run):
    frame = gappy_run.trades[["size", "entry_price"]].head(3)
    with pd.option_context("display.float_format", None):
        assert SCIENTIFIC.search(repr(frame))  # pandas' own default shows 2.063260e+08
        fmt.readable_pandas()
        try:
            assert not SCIENTIFIC.search(repr(frame))
            assert not SCIENTIFIC.search(gappy_run.stats.to_frame().to_html())
        finally:
            pd.reset_option("display.float_format")
    assert np.isfinite(gappy_run.stats["sharpe"])


def test_styled_tables_align_text_columns_and_their_headers_left():
    frame = pd.DataFrame({"value": ["1.00 %"], "basis": ["final equity / initial cash - 1"]})
    page = fmt.styled(frame).to_html()
    styles = page.split("</style>")[0]
    column = list(frame.columns).index("basis")
    # the basis cells and the basis header: left; the value column keeps pandas' alignment
    assert re.search(rf"th\.col_heading\.col{column} \{{\s*text-align: left;", styles)
    assert re.search(rf"_row0_col{column} \{{\s*text-align: left;", styles)
    assert "col0" not in styles
