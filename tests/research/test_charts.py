"""research.charts: the backtest chart's panes, traces and trade markers; the sweep heatmap;
standalone HTML that needs no network."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from market_files import read_market_bars
from research.backtesting import backtest
from research.charts import plot_heatmap, plot_result
from research.storage import load_run, save_result
from research.sweeps import sweep
from research.types import Bars, Costs, Stops
from strategies.registry import get_strategy

HOUR_MS = 3_600_000


@pytest.fixture(scope="module")
def bars() -> Bars:
    return read_market_bars("binance_ETH-USDT_1h.csv.gz", HOUR_MS)


@pytest.fixture(scope="module")
def sma_result(bars):
    return backtest(get_strategy("sma_cross"), bars, {"fast": 10, "slow": 30}, Costs())


def traces_on(figure: go.Figure, axis: str) -> list:
    return [trace for trace in figure.data if (trace.yaxis or "y") == axis]


def pane_axes(figure: go.Figure) -> list[str]:
    return sorted({trace.yaxis or "y" for trace in figure.data},
                  key=lambda name: int(name[1:] or 1))


def test_panes_price_indicators_equity_drawdown(sma_result):
    figure = plot_result(sma_result)
    assert pane_axes(figure) == ["y", "y2", "y3"]  # sma overlays live on the price pane
    price = traces_on(figure, "y")
    assert isinstance(price[0], go.Candlestick)
    assert [t.name for t in price[1:3]] == ["sma_fast", "sma_slow"]
    np.testing.assert_array_equal(price[1].y, sma_result.indicators["sma_fast"])
    (equity,) = traces_on(figure, "y2")
    np.testing.assert_array_equal(equity.y, sma_result.equity.to_numpy())
    (drawdown,) = traces_on(figure, "y3")
    peak = sma_result.equity.clip(lower=sma_result.initial_cash).cummax()
    expected = (sma_result.equity / peak - 1.0) * 100.0
    np.testing.assert_allclose(drawdown.y, expected.to_numpy(), rtol=1e-12)
    assert np.nanmax(drawdown.y) <= 0.0
    assert np.nanmin(drawdown.y) == pytest.approx(-100 * sma_result.stats["max_drawdown"],
                                                 rel=1e-12)


def test_x_axis_is_utc_bar_close_time(sma_result, bars):
    candles = plot_result(sma_result).data[0]
    times = pd.DatetimeIndex(candles.x)
    assert str(times.tz) == "UTC"
    assert times[0].value // 1_000_000 == bars.ts[0]
    assert len(times) == len(bars)


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


def test_long_histories_draw_only_their_last_bars(sma_result, bars):
    figure = plot_result(sma_result, max_bars=300)
    candles = figure.data[0]
    assert len(candles.x) == 300
    assert pd.DatetimeIndex(candles.x)[-1].value // 1_000_000 == bars.ts[-1]
    assert "last 300 of 1,498 bars" in figure.layout.title.text
    entries = next(t for t in figure.data if t.name == "entries")
    first_close = pd.Timestamp(int(bars.ts[-300]), unit="ms", tz="UTC")
    expected = sma_result.trades[sma_result.trades["entry_time"] >= first_close - pd.Timedelta("1h")]
    assert 0 < len(entries.x) == len(expected) < len(sma_result.trades)
    (drawdown,) = traces_on(figure, "y3")
    full = plot_result(sma_result, max_bars=None)
    np.testing.assert_array_equal(drawdown.y, traces_on(full, "y3")[0].y[-300:])


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
    assert pane_axes(figure) == ["y"] + [f"y{i}" for i in range(2, len(names) + 4)]
    price_names = {t.name for t in traces_on(figure, "y")}
    assert not price_names & set(names)


def test_explicit_overlays_win_and_unknown_ones_are_rejected(sma_result):
    figure = plot_result(sma_result, overlays=["sma_fast"])
    assert len(pane_axes(figure)) == 4  # price, sma_slow, equity, drawdown
    with pytest.raises(ValueError, match="not an indicator"):
        plot_result(sma_result, overlays=["sma_medium"])


def test_stop_exits_show_their_reason(bars):
    result = backtest(get_strategy("sma_cross"), bars, {"fast": 10, "slow": 30}, Costs(),
                      stops=Stops(stop_loss=0.01))
    reasons = set(result.trades["exit_reason"])
    assert "stop_loss" in reasons
    exits = next(t for t in plot_result(result).data if t.name == "exits")
    assert sum("stop_loss" in text for text in exits.text) == \
        int((result.trades["exit_reason"] == "stop_loss").sum())


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
    result = sweep(spec, bars, {"fast": [5, 10, 20, 30], "slow": [20, 30, 60]}, progress=False,
                   keep_best=0)
    figure = plot_heatmap(result.frame, "fast", "slow", "sharpe")
    (heatmap,) = figure.data
    assert list(heatmap.x) == [5, 10, 20, 30] and list(heatmap.y) == [20, 30, 60]
    z = np.asarray(heatmap.z, dtype=float)
    for row in result.frame.itertuples():
        assert z[list(heatmap.y).index(row.slow), list(heatmap.x).index(row.fast)] == row.sharpe
    # fast >= slow was never evaluated: empty cells
    assert np.isnan(z[0, 2]) and np.isnan(z[0, 3]) and np.isnan(z[1, 3])
    assert result.heatmap("fast", "slow").data[0].z is not None


def test_heatmap_takes_the_best_over_other_parameters():
    frame = pd.DataFrame({"a": [1, 1, 2, 2], "b": [1, 1, 1, 1], "c": [0, 1, 0, 1],
                          "sharpe": [0.5, 0.9, -0.1, -0.3]})
    figure = plot_heatmap(frame, "a", "b", "sharpe")
    np.testing.assert_array_equal(np.asarray(figure.data[0].z, dtype=float), [[0.9, -0.1]])
    assert "best over other parameters" in figure.layout.title.text


def test_heatmap_names_missing_columns():
    frame = pd.DataFrame({"fast": [1], "slow": [2], "sharpe": [0.1]})
    with pytest.raises(ValueError, match="'sortino' is not in the sweep frame"):
        plot_heatmap(frame, "fast", "slow", "sortino")
