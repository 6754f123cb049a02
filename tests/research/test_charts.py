"""research.charts: the backtest chart's panes, traces and trade markers; the sweep heatmap;
standalone HTML that needs no network."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from market_files import read_market_bars

from research import charts
from research.backtesting import backtest
from research.charts import plot_heatmap, plot_result
from research.storage import load_run, save_result
from research.sweeps import sweep
from research.types import Bars, Costs, Stops
from strategies.registry import get_strategy

HOUR_MS = 3_600_000


@pytest.fixture(scope="module")
def bars() -> Bars:
    """Real hourly bars with four gaps (163 missing bars), from the bundled sample."""
    return read_market_bars("binance_ETH-USDT_1h.csv.gz", HOUR_MS)


@pytest.fixture(scope="module")
def sma_result(bars):
    return backtest(get_strategy("sma_cross"), bars, {"fast": 10, "slow": 30}, Costs())


def traces_on(figure: go.Figure, axis: str) -> list:
    return [trace for trace in figure.data if (trace.yaxis or "y") == axis]


def pane_axes(figure: go.Figure) -> list[str]:
    return sorted(
        {trace.yaxis or "y" for trace in figure.data}, key=lambda name: int(name[1:] or 1)
    )


def pane_titles(figure: go.Figure) -> list[str]:
    return [
        annotation.text
        for annotation in figure.layout.annotations
        if not annotation.text.startswith(" gap")
    ]


def on_bars(trace, bars) -> np.ndarray:
    """A line trace's values at the bars' times (the blank points inside gaps left out)."""
    times = pd.DatetimeIndex(trace.x).as_unit("ms").asi8
    values = np.asarray(trace.y, dtype=float)
    keep = np.isin(times, bars.ts)
    assert keep.sum() == len(bars.ts)
    return values[keep]


def rgb(color: str) -> np.ndarray:
    return np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)], dtype=float)


def test_panes_price_volume_equity_drawdown(sma_result, bars):
    figure = plot_result(sma_result)
    assert pane_titles(figure) == ["price", "volume", "equity", "drawdown %"]
    assert pane_axes(figure) == ["y", "y2", "y3", "y4"]  # sma overlays live on the price pane
    price = traces_on(figure, "y")
    assert isinstance(price[0], go.Candlestick)
    assert [t.name for t in price[1:3]] == ["sma_fast", "sma_slow"]
    np.testing.assert_array_equal(on_bars(price[1], bars), sma_result.indicators["sma_fast"])
    (volume,) = traces_on(figure, "y2")
    assert isinstance(volume, go.Bar)
    np.testing.assert_array_equal(volume.y, bars.volume)
    up = bars.close >= bars.open
    assert set(np.asarray(volume.marker.color)[up]) == {charts.UP_COLOR}
    equity, benchmark = traces_on(figure, "y3")
    np.testing.assert_array_equal(on_bars(equity, bars), sma_result.equity.to_numpy())
    assert benchmark.name == "buy and hold" and benchmark.line.dash == "dash"
    np.testing.assert_allclose(
        on_bars(benchmark, bars), sma_result.initial_cash * bars.close / bars.open[0], rtol=1e-12
    )
    (drawdown,) = traces_on(figure, "y4")
    peak = sma_result.equity.clip(lower=sma_result.initial_cash).cummax()
    expected = (sma_result.equity / peak - 1.0) * 100.0
    np.testing.assert_allclose(on_bars(drawdown, bars), expected.to_numpy(), rtol=1e-12)
    assert np.nanmax(drawdown.y) <= 0.0
    assert np.nanmin(drawdown.y) == pytest.approx(
        -100 * sma_result.stats["max_drawdown"], rel=1e-12
    )


def test_series_colours_stay_clear_of_the_candles_and_the_trades(sma_result):
    figure = plot_result(sma_result)
    reserved = [charts.UP_COLOR, charts.DOWN_COLOR, charts.WIN_COLOR, charts.LOSS_COLOR]
    series = [t for t in figure.data if t.name in sma_result.indicators]
    assert len({t.line.color for t in series}) == len(series) == 2
    for trace in series:
        distances = [np.linalg.norm(rgb(trace.line.color) - rgb(color)) for color in reserved]
        assert min(distances) > 80, trace.name
    assert all(np.linalg.norm(rgb(c) - rgb(d)) > 80 for c in charts.SERIES_COLORS for d in reserved)


def test_the_chart_fits_a_laptop_screen(sma_result, bars):
    assert plot_result(sma_result).layout.height <= 850
    result = backtest(get_strategy("rsi_reversion"), bars, None, Costs())
    assert plot_result(result).layout.height <= 850  # also with an extra pane


def test_lines_break_at_gaps_instead_of_ramping_across_them(sma_result, bars):
    figure = plot_result(sma_result)
    steps = np.diff(bars.ts)
    gaps = np.flatnonzero(steps > HOUR_MS)
    assert len(gaps) == 4
    for trace in figure.data:
        if trace.type != "scatter" or trace.mode != "lines" or trace.name.endswith("trades"):
            continue
        times = pd.DatetimeIndex(trace.x).as_unit("ms").asi8
        values = np.asarray(trace.y, dtype=float)
        for i in gaps:
            # the point right after the last bar before the gap is blank, so no segment joins
            # the bars on both sides of it
            after = np.searchsorted(times, bars.ts[i], side="right")
            assert times[after] < bars.ts[i + 1] and np.isnan(values[after]), trace.name
        assert trace.connectgaps is False


def test_long_gaps_are_cut_out_of_the_time_axis_and_marked():
    bars = read_market_bars("binance_ETH-USDT_4h.csv.gz")
    result = backtest(get_strategy("ema_cross"), bars, None, Costs())
    figure = plot_result(result)
    steps = np.diff(bars.ts)
    longest = int(np.argmax(steps))
    breaks = figure.layout.xaxis.rangebreaks
    assert len(breaks) >= 1
    cut = [pd.Timestamp(bound).value // 1_000_000 for bound in breaks[0].bounds]
    assert bars.ts[longest] < cut[0] < cut[1] < bars.ts[longest + 1]
    marks = [a.text for a in figure.layout.annotations if a.text.startswith(" gap")]
    assert marks and "1,9" in marks[0]  # about 1,990 days
    assert figure.layout.xaxis.tickvals  # ticks at bars, as plotly's drop out inside the cut
    range_ms = [pd.Timestamp(v).value // 1_000_000 for v in figure.layout.xaxis.range]
    assert range_ms[0] < bars.ts[0] and range_ms[1] > bars.ts[-1]


def test_one_marker_per_entry_and_per_closed_exit(sma_result):
    figure = plot_result(sma_result)
    trades = sma_result.trades
    assert len(trades) > 5
    entries = next(t for t in figure.data if t.name == "entries")
    exits = next(t for t in figure.data if t.name == "exits")
    closed = trades[trades["exit_time"].notna()]
    assert len(entries.x) == len(trades)
    assert len(exits.x) == len(closed)
    np.testing.assert_array_equal(entries.y, trades["entry_price"].to_numpy())
    np.testing.assert_array_equal(exits.y, closed["exit_price"].to_numpy())
    # long only: buys (entries) point up, sells (exits) point down
    assert set(entries.marker.symbol) == {"triangle-up"}
    assert set(exits.marker.symbol) == {"triangle-down"}
    assert all("price" in text and "size" in text for text in entries.text)
    assert all(reason in text for reason, text in zip(closed["exit_reason"], exits.text))
    won = closed["pnl"].to_numpy() > 0
    np.testing.assert_array_equal(
        np.asarray(exits.marker.color), np.where(won, charts.WIN_COLOR, charts.LOSS_COLOR)
    )


def test_each_closed_trade_is_a_line_from_entry_to_exit_coloured_by_its_result(sma_result):
    figure = plot_result(sma_result)
    closed = sma_result.trades[sma_result.trades["exit_time"].notna()]
    for name, chosen, color in (
        ("winning trades", closed["pnl"] > 0, charts.WIN_COLOR),
        ("losing trades", closed["pnl"] <= 0, charts.LOSS_COLOR),
    ):
        (trace,) = [t for t in figure.data if t.name == name]
        assert trace.line.color == color
        part = closed[chosen.to_numpy()]
        assert 0 < len(part) and len(trace.x) == 3 * len(part)  # entry, exit, break
        np.testing.assert_array_equal(
            np.asarray(trace.y[0::3], dtype=float), part["entry_price"].to_numpy()
        )
        np.testing.assert_array_equal(
            np.asarray(trace.y[1::3], dtype=float), part["exit_price"].to_numpy()
        )
        assert all(value is None for value in trace.y[2::3])
        assert "P&L" in trace.text[0]


def test_long_histories_draw_only_their_last_bars(sma_result, bars):
    figure = plot_result(sma_result, max_bars=300)
    candles = figure.data[0]
    assert len(candles.x) == 300
    assert pd.DatetimeIndex(candles.x)[-1].value // 1_000_000 == bars.ts[-1]
    assert "last 300 of 1,498 bars" in figure.layout.title.text
    entries = next(t for t in figure.data if t.name == "entries")
    first_close = pd.Timestamp(int(bars.ts[-300]), unit="ms", tz="UTC")
    expected = sma_result.trades[
        sma_result.trades["entry_time"] >= first_close - pd.Timedelta("1h")
    ]
    assert 0 < len(entries.x) == len(expected) < len(sma_result.trades)
    (drawdown,) = traces_on(figure, "y4")
    full = plot_result(sma_result, max_bars=None)
    np.testing.assert_array_equal(
        on_bars(
            drawdown,
            Bars.from_arrays(
                bars.ts[-300:], *(getattr(bars, c)[-300:] for c in Bars.COLUMNS), HOUR_MS
            ),
        ),
        on_bars(traces_on(full, "y4")[0], bars)[-300:],
    )


def test_a_run_loaded_from_the_database_plots_without_candles(sma_result, engine):
    loaded = load_run(engine, save_result(engine, sma_result))
    figure = plot_result(loaded)
    assert not any(isinstance(t, go.Candlestick) for t in figure.data)
    entries = next(t for t in figure.data if t.name == "entries")
    assert len(entries.x) == len(sma_result.trades)
    assert len(pane_axes(figure)) == 3


def test_short_trades_point_the_other_way(bars):
    result = backtest(get_strategy("ema_cross"), bars, None, Costs())
    trades = result.trades
    assert {"long", "short"} <= set(trades["side"])
    entries = next(t for t in plot_result(result).data if t.name == "entries")
    expected = np.where(trades["side"] == "long", "triangle-up", "triangle-down")
    assert list(entries.marker.symbol) == list(expected)


def test_non_overlay_indicators_get_their_own_pane(bars):
    result = backtest(get_strategy("rsi_reversion"), bars, None, Costs())
    figure = plot_result(result)
    names = list(result.indicators)
    assert pane_axes(figure) == ["y"] + [f"y{i}" for i in range(2, len(names) + 5)]
    assert pane_titles(figure) == ["price", "volume", *names, "equity", "drawdown %"]
    price_names = {t.name for t in traces_on(figure, "y")}
    assert not price_names & set(names)


def test_the_strategys_panes_group_its_series(sma_result, bars):
    """``Result.panes`` (pane name -> series names, "price" first) decides the layout."""
    result = backtest(get_strategy("sma_cross"), bars, {"fast": 10, "slow": 30}, Costs())
    result.panes = {"price": ["sma_slow"], "fast average": ["sma_fast"], "empty": []}
    figure = plot_result(result)
    assert pane_titles(figure) == ["price", "volume", "fast average", "equity", "drawdown %"]
    assert [t.name for t in traces_on(figure, "y")][1] == "sma_slow"
    (fast,) = traces_on(figure, "y3")
    assert fast.name == "sma_fast"
    explicit = plot_result(result, overlays=["sma_fast", "sma_slow"])  # explicit still wins
    assert pane_titles(explicit) == ["price", "volume", "equity", "drawdown %"]


def test_explicit_overlays_win_and_unknown_ones_are_rejected(sma_result):
    figure = plot_result(sma_result, overlays=["sma_fast"])
    assert pane_titles(figure) == ["price", "volume", "sma_slow", "equity", "drawdown %"]
    with pytest.raises(ValueError, match="not an indicator"):
        plot_result(sma_result, overlays=["sma_medium"])


def test_stop_exits_show_their_reason(bars):
    result = backtest(
        get_strategy("sma_cross"),
        bars,
        {"fast": 10, "slow": 30},
        Costs(),
        stops=Stops(stop_loss=0.01),
    )
    reasons = set(result.trades["exit_reason"])
    assert "stop_loss" in reasons
    exits = next(t for t in plot_result(result).data if t.name == "exits")
    assert sum("stop_loss" in text for text in exits.text) == int(
        (result.trades["exit_reason"] == "stop_loss").sum()
    )


def test_standalone_html_has_no_external_scripts(sma_result, tmp_path):
    path = tmp_path / "chart.html"
    plot_result(sma_result).write_html(path, include_plotlyjs=True)
    html = path.read_text(encoding="utf-8")
    sources = re.findall(r"<script[^>]*\ssrc=[\"']([^\"']+)", html)
    assert sources == []
    assert not re.search(r"<link[^>]*href=[\"']https?:", html)
    assert not re.search(r"cdn\.plot\.ly/plotly-[\d.]+(\.min)?\.js", html)
    assert len(html) > 1_000_000  # plotly.js itself is embedded


def test_heatmap_cells_match_the_sweep_rows(bars):
    spec = get_strategy("sma_cross")
    result = sweep(
        spec, bars, {"fast": [5, 10, 20, 30], "slow": [20, 30, 60]}, progress=False, keep_best=0
    )
    figure = plot_heatmap(result.frame, "fast", "slow", "sharpe")
    (heatmap,) = figure.data
    assert list(heatmap.x) == [5, 10, 20, 30] and list(heatmap.y) == [20, 30, 60]
    z = np.asarray(heatmap.z, dtype=float)
    for row in result.frame.itertuples():
        cell = z[list(heatmap.y).index(row.slow), list(heatmap.x).index(row.fast)]
        assert cell == row.sharpe if row.valid else np.isnan(cell)
    # fast >= slow breaks the constraint: invalid rows, empty cells
    assert np.isnan(z[0, 2]) and np.isnan(z[0, 3]) and np.isnan(z[1, 3])
    assert result.heatmap("fast", "slow").data[0].z is not None


def test_heatmap_takes_the_best_over_other_parameters():
    frame = pd.DataFrame(
        {
            "a": [1, 1, 2, 2],
            "b": [1, 1, 1, 1],
            "c": [0, 1, 0, 1],
            "sharpe": [0.5, 0.9, -0.1, -0.3],
            "max_drawdown": [0.2, 0.1, 0.3, 0.4],
        }
    )
    figure = plot_heatmap(frame, "a", "b", "sharpe")
    np.testing.assert_array_equal(np.asarray(figure.data[0].z, dtype=float), [[0.9, -0.1]])
    assert "highest over the other parameters" in figure.layout.title.text
    # for a drawdown the best is the smallest (shown in %)
    figure = plot_heatmap(frame, "a", "b", "max_drawdown")
    np.testing.assert_allclose(np.asarray(figure.data[0].z, dtype=float), [[10.0, 30.0]])
    assert "lowest over the other parameters" in figure.layout.title.text


def test_heatmap_colours_say_good_or_bad_whatever_the_metric():
    frame = pd.DataFrame(
        {
            "fast": [5, 10, 5, 10],
            "slow": [20, 20, 40, 40],
            "sharpe": [1.5, -0.5, 0.2, -2.0],
            "max_drawdown": [0.1, 0.4, 0.2, 0.3],
            "trade_count": [30, 12, 3, 40],
        }
    )
    sharpe = plot_heatmap(frame, "fast", "slow", "sharpe").data[0]
    drawdown = plot_heatmap(frame, "fast", "slow", "max_drawdown").data[0]
    # plotly colours a scale's first colour at the lowest value: red for a low Sharpe, green
    # for a low drawdown
    assert sharpe.colorscale[0][1] == drawdown.colorscale[-1][1]
    assert sharpe.colorscale[-1][1] == drawdown.colorscale[0][1]
    red, green = sharpe.colorscale[0][1], sharpe.colorscale[-1][1]
    assert rgb_of(red)[0] > rgb_of(red)[1] and rgb_of(green)[1] > rgb_of(green)[0]
    assert sharpe.zmid == 0 and drawdown.zmid is None  # Sharpe's sign matters: 0 is neutral
    # the parameters are named on the axes and in the hover text, with the trade count
    figure = plot_heatmap(frame, "fast", "slow", "sharpe")
    assert figure.layout.xaxis.title.text == "fast" and figure.layout.yaxis.title.text == "slow"
    assert "fast=%{x}" in sharpe.hovertemplate and "slow=%{y}" in sharpe.hovertemplate
    assert "trades" in sharpe.hovertemplate
    assert "%" in drawdown.colorbar.title.text


def test_heatmap_leaves_out_rows_with_too_few_trades():
    frame = pd.DataFrame(
        {
            "fast": [5, 10, 5, 10],
            "slow": [20, 20, 40, 40],
            "sharpe": [1.5, -0.5, 9.0, -2.0],
            "trade_count": [30, 12, 1, 40],
        }
    )
    z = np.asarray(
        plot_heatmap(frame, "fast", "slow", "sharpe", min_trades=10).data[0].z, dtype=float
    )
    assert np.isnan(z[1, 0]) and z[0, 0] == 1.5 and z[1, 1] == -2.0


def rgb_of(color: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", color)[:3])


def test_heatmap_names_missing_columns():
    frame = pd.DataFrame({"fast": [1], "slow": [2], "sharpe": [0.1]})
    with pytest.raises(ValueError, match="'sortino' is not in the sweep frame"):
        plot_heatmap(frame, "fast", "slow", "sortino")
