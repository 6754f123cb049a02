"""Plotly charts of backtests and sweeps.

:func:`plot_result` draws one backtest: candlesticks with the strategy's price series and its
trades, volume, one pane per other group of series, the equity curve against buy and hold, and
the drawdown. :func:`plot_heatmap` draws one stat of a sweep over two parameters. Both return a
``plotly.graph_objects.Figure``; ``fig.show()`` displays it in a notebook, and ::

    fig.write_html("backtest.html", include_plotlyjs=True)

writes a standalone file with plotly.js embedded, which opens offline (no CDN).
All times on the x axis are UTC; a bar is drawn at its close time (docs/architecture.md §2).
Lines break at data gaps (they are not drawn across missing bars), and the longest gaps are
cut out of the time axis and marked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from research.formatting import (
    STATS,
    decimals_for,
    fmt_duration,
    fmt_money,
    fmt_number,
    fmt_percent,
)
from research.metrics import LOWER_IS_BETTER, buy_and_hold

UP_COLOR = "#26a69a"  # candles: teal up, red down
DOWN_COLOR = "#ef5350"
#: Colours of the strategy's series: none of them near the candles' teal and red, nor near
#: the trades' dark green and dark red.
SERIES_COLORS = ("#1e88e5", "#fb8c00", "#8e24aa", "#6d4c41", "#3949ab", "#c0ca33", "#9e9d24")
WIN_COLOR = "#1b5e20"  # trades: dark green when they made money, dark red when they lost
LOSS_COLOR = "#b71c1c"
MARKER_COLOR = "#212121"
EQUITY_COLOR = "#263238"
BENCHMARK_COLOR = "#9e9e9e"
DRAWDOWN_COLOR = "#c62828"
DEFAULT_MAX_BARS = 200_000
#: Height that fits a laptop screen (about 900 px of browser window).
DEFAULT_HEIGHT = 820
#: Gaps cut out of the time axis: at most this many, each longer than
#: ``LONG_GAP_SHARE`` of the drawn span and than ``LONG_GAP_BARS`` bars.
MAX_CUT_GAPS = 12
LONG_GAP_SHARE = 0.03
LONG_GAP_BARS = 50
#: Metrics whose natural zero the heatmap's colour scale centres on.
CENTRED_AT_ZERO = frozenset(
    {
        "sharpe",
        "sortino",
        "calmar",
        "total_return",
        "cagr",
        "excess_return",
        "expectancy",
        "buy_hold_sharpe",
        "buy_hold_return",
    }
)


def plot_result(
    result: Any,
    *,
    overlays: Sequence[str] | None = None,
    title: str | None = None,
    height: int | None = None,
    max_bars: int | None = DEFAULT_MAX_BARS,
) -> go.Figure:
    """Plot a backtest :class:`~research.result.Result`.

    Panes, top to bottom, sharing one UTC time axis (bars drawn at their close time):

    1. **price**: candlesticks (teal up, red down), the strategy's price series as lines in
       colours distinct from the candles, and the trades: a line from each entry to its exit,
       dark green for a winning trade and dark red for a losing one, a marker per entry and per exit at
       the fill price and time (a triangle up for a buy, down for a sell; long entries and
       short exits are buys) with the side, price, size and, for exits, the reason and P&L on
       hover;
    2. **volume**, coloured like its candle;
    3. one pane per other group of series;
    4. **equity** (marked at each close) and **buy and hold** on the same bars (the initial
       cash bought at the first open, no costs), dashed;
    5. **drawdown %**: ``100 * (equity / peak - 1)`` with the peak taken over the initial cash
       and every close so far, so its lowest point is ``-100 * stats["max_drawdown"]``.

    Which series go on the price pane and how the others are grouped: ``result.panes``
    (``{pane name: [series names]}``, the pane ``"price"`` drawn over the candles, the others
    in order) when the result has it; otherwise every series whose values lie within the price
    range goes on the price pane and each other one gets its own pane.

    Lines are not drawn across data gaps; gaps longer than ``LONG_GAP_SHARE`` of the span (at
    most ``MAX_CUT_GAPS`` of them) are cut out of the time axis and marked with a dotted line.

    Parameters
    ----------
    result : Result
        A backtest result (uses ``bars``, ``indicators``, ``panes`` if present, ``trades``,
        ``equity``, ``initial_cash``, ``timeframe_ms``, ``spec_name`` and ``params``). A result
        loaded from the database without its bars is drawn without candles, volume, series
        and benchmark.
    overlays : sequence of str, optional
        Series to draw on the price pane, overriding ``result.panes`` (each other series then
        gets its own pane).
    title : str, optional
        Figure title; default ``"<strategy> (<params>)"``.
    height : int, optional
        Figure height in pixels; default :data:`DEFAULT_HEIGHT`, which fits a laptop screen.
    max_bars : int or None
        Draw at most this many of the last bars (a browser struggles with millions of
        candles); the trades shown are those entered in that window, the drawdown is still
        measured from the start. ``None`` draws everything.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    bars = getattr(result, "bars", None)
    equity_all = _as_array(result.equity)
    initial_cash = getattr(result, "initial_cash", None)
    drawdown_all = drawdown_percent(equity_all, initial_cash)
    if bars is not None:
        ts_all = np.asarray(bars.ts, dtype=np.int64)
    else:
        ts_all = pd.DatetimeIndex(pd.to_datetime(result.equity.index, utc=True)).as_unit("ms").asi8
    first = 0
    if max_bars is not None and len(ts_all) > max_bars:
        first = len(ts_all) - int(max_bars)
    window = slice(first, None)
    ts = ts_all[window]
    timeframe_ms = _timeframe_ms(result, ts_all)
    axis = TimeAxis(ts, timeframe_ms)
    series = {
        name: np.asarray(values, dtype=float)[window]
        for name, values in (getattr(result, "indicators", None) or {}).items()
    }
    if bars is None:
        series = {}
    groups = pane_groups(result, series, overlays, bars)
    other_panes = [name for name in groups if name != "price"]
    has_bars = bars is not None
    titles = ["price"] + (["volume"] if has_bars else []) + other_panes + ["equity", "drawdown %"]
    weights = [5.0] + ([1.0] if has_bars else []) + [1.6] * len(other_panes) + [2.2, 1.2]
    figure = make_subplots(
        rows=len(titles),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.025,
        row_heights=[w / sum(weights) for w in weights],
        subplot_titles=titles,
    )
    row = {name: i + 1 for i, name in enumerate(titles)}
    if has_bars:
        _add_candles(figure, bars, window, axis, row)
    for color_index, (pane, names) in _numbered(groups):
        for offset, name in enumerate(names):
            color = SERIES_COLORS[(color_index + offset) % len(SERIES_COLORS)]
            figure.add_trace(
                go.Scatter(
                    x=axis.line_x,
                    y=axis.broken(series[name]),
                    mode="lines",
                    name=name,
                    line={"width": 1.4, "color": color},
                    connectgaps=False,
                    legendgroup=pane,
                ),
                row=row[pane],
                col=1,
            )
    trades = getattr(result, "trades", None)
    if first and trades is not None and len(trades):
        entered = pd.to_datetime(trades["entry_time"], utc=True)
        start = pd.Timestamp(int(ts[0]) - timeframe_ms, unit="ms", tz="UTC")
        trades = trades[(entered >= start).to_numpy()]
    for trace in trade_traces(trades):
        figure.add_trace(trace, row=1, col=1)
    figure.add_trace(
        go.Scatter(
            x=axis.line_x,
            y=axis.broken(equity_all[window]),
            mode="lines",
            name="equity",
            line={"color": EQUITY_COLOR, "width": 1.6},
            connectgaps=False,
        ),
        row=row["equity"],
        col=1,
    )
    if has_bars and initial_cash is not None and len(bars):
        benchmark = buy_and_hold(bars.open, bars.close, initial_cash)[window]
        figure.add_trace(
            go.Scatter(
                x=axis.line_x,
                y=axis.broken(benchmark),
                mode="lines",
                name="buy and hold",
                line={"color": BENCHMARK_COLOR, "width": 1.3, "dash": "dash"},
                connectgaps=False,
            ),
            row=row["equity"],
            col=1,
        )
    figure.add_trace(
        go.Scatter(
            x=axis.line_x,
            y=axis.broken(drawdown_all[window]),
            mode="lines",
            name="drawdown",
            fill="tozeroy",
            line={"color": DRAWDOWN_COLOR, "width": 1},
            connectgaps=False,
            showlegend=False,
        ),
        row=row["drawdown %"],
        col=1,
    )
    label = title or default_title(result)
    if first:
        label += f" (last {len(ts):,} of {len(ts_all):,} bars)"
    figure.update_layout(
        title={"text": label, "x": 0.01, "y": 0.99, "yanchor": "top"},
        height=height or DEFAULT_HEIGHT,
        hovermode="x unified",
        legend={
            "orientation": "h",
            "y": 1.0,
            "x": 0.99,
            "xanchor": "right",
            "yanchor": "bottom",
            "font": {"size": 11},
        },
        margin={"l": 70, "r": 20, "t": 70, "b": 40},
        plot_bgcolor="white",
        bargap=0,
    )
    figure.update_xaxes(rangeslider_visible=False, showgrid=True, gridcolor="#eeeeee")
    axis.apply(figure)
    if has_bars and len(bars):
        figure.update_yaxes(tickformat=f",.{price_decimals(bars.close[window])}f", row=1, col=1)
    for annotation in figure.layout.annotations[: len(titles)]:  # pane titles: top left
        annotation.update(x=0.0, xanchor="left", font={"size": 12, "color": "#424242"})
    figure.update_yaxes(showgrid=True, gridcolor="#eeeeee", zeroline=False)
    figure.update_yaxes(tickformat=",.0f", ticksuffix=" %", row=row["drawdown %"], col=1)
    figure.update_xaxes(title_text="time (UTC, bar close)", row=len(titles), col=1)
    return figure


def pane_groups(
    result: Any, series: Mapping[str, np.ndarray], overlays: Sequence[str] | None, bars: Any
) -> dict[str, list[str]]:
    """The panes of the chart's series: ``{"price": [...], other pane: [...], ...}``.

    ``overlays`` (explicit) wins; then ``result.panes``; else the range heuristic of
    :func:`plot_result`. Series the result does not hold are an error for ``overlays``, left
    out for ``result.panes``.
    """
    if overlays is not None:
        unknown = [name for name in overlays if name not in series]
        if unknown:
            raise ValueError(
                f"overlay {unknown[0]!r} is not an indicator of this result; "
                f"indicators: {', '.join(series) or 'none'}"
            )
        groups = {"price": list(overlays)}
        groups.update({name: [name] for name in series if name not in overlays})
        return groups
    panes = getattr(result, "panes", None)
    if panes:
        groups = {"price": [name for name in panes.get("price", ()) if name in series]}
        for pane, names in panes.items():
            if pane != "price":
                present = [name for name in names if name in series]
                if present:
                    groups[str(pane)] = present
        return groups
    price = _price_range_series(series, bars)
    groups = {"price": price}
    groups.update({name: [name] for name in series if name not in price})
    return groups


def _price_range_series(series: Mapping[str, np.ndarray], bars: Any) -> list[str]:
    if bars is None or len(bars) == 0:
        return []
    low, high = float(np.nanmin(bars.low)), float(np.nanmax(bars.high))
    chosen = []
    for name, values in series.items():
        finite = values[np.isfinite(values)]
        if len(finite) and low * 0.5 <= finite.min() and finite.max() <= high * 2.0:
            chosen.append(name)
    return chosen


def _numbered(groups: dict[str, list[str]]):
    """``(pane, names)`` with names numbered across panes, for distinct colours."""
    start = 0
    for pane, names in groups.items():
        yield start, (pane, names)
        start += len(names)


def drawdown_percent(equity: Any, initial_cash: float | None = None) -> np.ndarray:
    """Return ``100 * (equity / peak - 1)``: 0 at a new peak, negative below it.

    The peak is the running maximum of the equity (NaN bars ignored), and of ``initial_cash``
    when given (as :func:`research.metrics.compute_stats` measures the maximum drawdown).
    """
    values = _as_array(equity)
    start = values if initial_cash is None else np.fmax(values, float(initial_cash))
    peak = np.fmax.accumulate(start)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 100.0 * (values / peak - 1.0)


def _add_candles(
    figure: go.Figure, bars: Any, window: slice, axis: TimeAxis, row: dict[str, int]
) -> None:
    opens, closes = bars.open[window], bars.close[window]
    figure.add_trace(
        go.Candlestick(
            x=axis.x,
            open=opens,
            high=bars.high[window],
            low=bars.low[window],
            close=closes,
            name="price",
            increasing={"line": {"color": UP_COLOR}, "fillcolor": UP_COLOR},
            decreasing={"line": {"color": DOWN_COLOR}, "fillcolor": DOWN_COLOR},
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    colors = np.where(closes >= opens, UP_COLOR, DOWN_COLOR)
    figure.add_trace(
        go.Bar(
            x=axis.x,
            y=bars.volume[window],
            name="volume",
            marker={"color": list(colors), "line": {"width": 0}},
            opacity=0.6,
            showlegend=False,
        ),
        row=row["volume"],
        col=1,
    )


class TimeAxis:
    """The x values of one chart: bar times, the same with a blank point inside each gap (so
    that lines break there), and the long gaps cut out of the axis (:meth:`apply`)."""

    def __init__(self, ts: np.ndarray, timeframe_ms: int):
        self.ts = np.asarray(ts, dtype=np.int64)
        self.x = _utc_ms(self.ts)
        steps = np.diff(self.ts)
        self.gap_after = np.flatnonzero(steps > timeframe_ms) if timeframe_ms else np.empty(0, int)
        blanks = self.ts[self.gap_after] + (timeframe_ms if timeframe_ms else 0)
        self.line_x = _utc_ms(np.insert(self.ts, self.gap_after + 1, blanks))
        span = int(self.ts[-1] - self.ts[0]) if len(self.ts) > 1 else 0
        lengths = steps[self.gap_after] if len(self.gap_after) else np.empty(0, np.int64)
        long = np.flatnonzero(
            (lengths > LONG_GAP_SHARE * span) & (lengths > LONG_GAP_BARS * max(timeframe_ms, 1))
        )
        long = long[np.argsort(lengths[long])[::-1][:MAX_CUT_GAPS]]
        self.cut_gaps = sorted(
            (int(self.ts[self.gap_after[i]]), int(self.ts[self.gap_after[i] + 1]) - timeframe_ms)
            for i in long
        )
        self.timeframe_ms = timeframe_ms

    def apply(self, figure: go.Figure) -> None:
        """Cut the long gaps out of every x axis of ``figure``, set its range and ticks, and
        mark each cut with a dotted line labelled with the gap's length (top of the first
        pane)."""
        figure.update_xaxes(rangebreaks=self.rangebreaks(), range=self.range(), **self.ticks())
        for start, end in self.cut_gaps:
            figure.add_vline(x=_utc_ms(start), line={"color": "#757575", "width": 1, "dash": "dot"})
            figure.add_annotation(
                x=_utc_ms(start),
                y=1.0,
                yref="y domain",
                showarrow=False,
                text=f" gap {fmt_duration(end - start)} ",
                font={"size": 10},
                xanchor="left",
                yanchor="top",
                bgcolor="rgba(255,255,255,0.8)",
            )

    def broken(self, values: np.ndarray) -> np.ndarray:
        """``values`` (one per bar) with ``nan`` at the blank points of :attr:`line_x`."""
        values = np.asarray(values, dtype=float)
        return np.insert(values, self.gap_after + 1, np.nan)

    def range(self) -> list | None:
        """The drawn span, half a bar beyond the first and last bar (set explicitly: plotly's
        autorange pads a date axis with cut-out gaps as if they were still there)."""
        if len(self.ts) == 0:
            return None
        half = self.timeframe_ms // 2
        return [_utc_ms(int(self.ts[0]) - half), _utc_ms(int(self.ts[-1]) + half)]

    def ticks(self) -> dict:
        """Tick labels at evenly spaced bars when gaps are cut out (plotly places ticks by
        calendar time and drops those inside a cut, leaving a long axis with one label)."""
        if not self.cut_gaps or len(self.ts) < 2:
            return {}
        positions = np.unique(np.linspace(0, len(self.ts) - 1, 9).round().astype(int))
        shown = int(self.ts[-1] - self.ts[0]) - sum(end - start for start, end in self.cut_gaps)
        pattern = "%Y-%m-%d" if shown > 5 * 86_400_000 else "%m-%d %H:%M"
        values = _utc_ms(self.ts[positions])
        return {"tickvals": list(values), "ticktext": [v.strftime(pattern) for v in values]}

    def rangebreaks(self) -> list[dict]:
        # the cut runs from just after the last bar before the gap to just before the blank
        # point's successor, so both edges stay visible
        margin = max(self.timeframe_ms, 1)
        return [
            {"bounds": [_utc_ms(start + margin), _utc_ms(end - margin)]}
            for start, end in self.cut_gaps
            if end - start > 2 * margin
        ]


def price_decimals(prices: np.ndarray) -> int:
    """Decimals of the price axis' labels: three significant digits of the typical price
    (``7,000``; ``0.0000230``), never an SI prefix such as ``23µ``."""
    finite = np.abs(np.asarray(prices, dtype=float))
    finite = finite[np.isfinite(finite) & (finite > 0)]
    if len(finite) == 0:
        return 2
    return decimals_for(float(np.median(finite)), 3)


def _timeframe_ms(result: Any, ts: np.ndarray) -> int:
    timeframe = int(getattr(result, "timeframe_ms", 0) or 0)
    bars = getattr(result, "bars", None)
    if not timeframe and bars is not None:
        timeframe = int(getattr(bars, "timeframe_ms", 0) or 0)
    if not timeframe and len(ts) > 1:
        timeframe = int(np.diff(ts).min())
    return timeframe


def trade_traces(trades: pd.DataFrame | None) -> list[go.Scatter]:
    """The trades on the price pane: entry-to-exit lines of the closed trades (``winning
    trades``, ``losing trades``), then the ``entries`` and ``exits`` markers."""
    if trades is None or len(trades) == 0:
        trades = pd.DataFrame(
            columns=[
                "entry_time",
                "exit_time",
                "side",
                "size",
                "entry_price",
                "exit_price",
                "pnl",
                "return",
                "exit_reason",
            ]
        )
    long = _is_long(trades["side"]) if len(trades) else np.zeros(0, dtype=bool)
    closed = trades["exit_time"].notna().to_numpy() if len(trades) else np.zeros(0, dtype=bool)
    exited = trades[closed]
    pnl = exited["pnl"].to_numpy(dtype=float)
    returns = _returns(exited)
    traces = []
    for name, chosen, color in (
        ("winning trades", pnl > 0, WIN_COLOR),
        ("losing trades", ~(pnl > 0), LOSS_COLOR),
    ):
        part = exited[chosen]
        x: list[Any] = []
        y: list[Any] = []
        text: list[str] = []
        for entry, exit_, p0, p1, profit, ret in zip(
            _utc(part["entry_time"]),
            _utc(part["exit_time"]),
            part["entry_price"],
            part["exit_price"],
            pnl[chosen],
            returns[chosen],
        ):
            label = f"P&L {fmt_money(profit)} ({fmt_percent(ret, signed=True)})"
            x += [entry, exit_, None]
            y += [p0, p1, None]
            text += [label, label, ""]
        traces.append(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                name=name,
                text=text,
                hoverinfo="text",
                line={"color": color, "width": 3},
                opacity=0.85,
                connectgaps=False,
            )
        )
    entry_text = [
        f"entry {'long' if is_long else 'short'}<br>price {fmt_number(price)}"
        f"<br>size {fmt_number(size)}"
        for is_long, price, size in zip(long, trades["entry_price"], trades["size"])
    ]
    traces.append(
        go.Scatter(
            x=_utc(trades["entry_time"]),
            y=trades["entry_price"].to_numpy(dtype=float),
            mode="markers",
            name="entries",
            text=entry_text,
            hoverinfo="text+x",
            marker={
                "symbol": list(np.where(long, "triangle-up", "triangle-down")),
                "size": 10,
                "color": MARKER_COLOR,
                "line": {"width": 1, "color": "white"},
            },
        )
    )
    exit_text = [
        f"exit {'long' if is_long else 'short'} ({reason})<br>price {fmt_number(price)}"
        f"<br>size {fmt_number(size)}<br>P&L {fmt_money(profit)} "
        f"({fmt_percent(ret, signed=True)})"
        for is_long, reason, price, size, profit, ret in zip(
            long[closed], exited["exit_reason"], exited["exit_price"], exited["size"], pnl, returns
        )
    ]
    traces.append(
        go.Scatter(
            x=_utc(exited["exit_time"]),
            y=exited["exit_price"].to_numpy(dtype=float),
            mode="markers",
            name="exits",
            text=exit_text,
            hoverinfo="text+x",
            marker={
                "symbol": list(np.where(long[closed], "triangle-down", "triangle-up")),
                "size": 10,
                "color": list(np.where(pnl > 0, WIN_COLOR, LOSS_COLOR)),
                "line": {"width": 1, "color": "white"},
            },
        )
    )
    return traces


# --------------------------------------------------------------------------- heatmap


def plot_heatmap(
    sweep_frame: pd.DataFrame,
    x: str,
    y: str,
    metric: str,
    *,
    title: str | None = None,
    min_trades: int = 0,
) -> go.Figure:
    """Plot ``metric`` of a sweep over parameters ``x`` (columns) and ``y`` (rows).

    Green is good: the colour scale runs red to green for a higher-is-better metric and green
    to red for a lower-is-better one (``LOWER_IS_BETTER``: drawdowns, volatility, fees), and
    is centred on 0 for metrics whose sign matters (Sharpe, returns, ...). Combinations the
    sweep skipped (invalid, or not sampled) and rows with fewer than ``min_trades`` closed
    trades are empty cells. When other parameters were swept too, each cell shows the best
    ``metric`` over them (the maximum, or the minimum for a lower-is-better metric), and the
    title says so. Hovering a cell names both parameters, the value and the trade count.

    Parameters
    ----------
    sweep_frame : DataFrame
        :attr:`research.sweeps.SweepResult.frame` (or any frame with columns ``x``, ``y`` and
        ``metric``).
    x, y : str
        Parameter columns for the horizontal and vertical axes.
    metric : str
        The stat column to colour by.
    min_trades : int
        Leave out rows with fewer closed trades (needs a ``trade_count`` column).

    Raises
    ------
    ValueError
        If a column is missing (the message lists the available ones) or ``x == y``.
    """
    for name in (x, y, metric):
        if name not in sweep_frame.columns:
            raise ValueError(
                f"column {name!r} is not in the sweep frame; available: "
                f"{', '.join(map(str, sweep_frame.columns))}"
            )
    if x == y:
        raise ValueError("x and y must be two different parameters")
    frame = sweep_frame
    if min_trades > 0 and "trade_count" in frame.columns:
        frame = frame[frame["trade_count"] >= min_trades]
    base = metric.removeprefix("oos_")
    lower_is_better = base in LOWER_IS_BETTER
    values = pd.to_numeric(frame[metric], errors="coerce")
    table = frame.assign(**{metric: values}).pivot_table(
        index=y, columns=x, values=metric, dropna=False, aggfunc="min" if lower_is_better else "max"
    )
    table = table.reindex(
        index=sorted(sweep_frame[y].unique()), columns=sorted(sweep_frame[x].unique())
    )
    trades = None
    if "trade_count" in frame.columns:
        trades = (
            frame.pivot_table(index=y, columns=x, values="trade_count", aggfunc="max", dropna=False)
            .reindex(index=table.index, columns=table.columns)
            .to_numpy(dtype=float)
        )
    aggregated = sweep_frame.duplicated(subset=[x, y]).any()
    percent = STATS.get(base, ("", ""))[0] in ("percent", "return")
    z = table.to_numpy(dtype=float)
    label = metric + (" (%)" if percent else "")
    heading = f"{metric} by {x} and {y}"
    if aggregated:
        heading += f" ({'lowest' if lower_is_better else 'highest'} over the other parameters)"
    if min_trades > 0:
        heading += f"; blank: invalid or fewer than {min_trades} trades"
    shown = z * 100.0 if percent else z
    hover = f"{x}=%{{x}}<br>{y}=%{{y}}<br>{metric}=%{{z:,.2f}}{' %' if percent else ''}"
    if trades is not None:
        hover += "<br>trades=%{customdata:,.0f}"
    heatmap = go.Heatmap(
        z=shown,
        x=list(table.columns),
        y=list(table.index),
        customdata=trades,
        colorscale="RdYlGn_r" if lower_is_better else "RdYlGn",
        colorbar={"title": {"text": label}},
        hovertemplate=hover + "<extra></extra>",
        xgap=1,
        ygap=1,
    )
    if base in CENTRED_AT_ZERO:
        heatmap.zmid = 0.0
    if z.size <= 400:
        heatmap.texttemplate = "%{z:,.2f}"
        heatmap.textfont = {"size": 10}
    figure = go.Figure(heatmap)
    figure.update_layout(
        title=title or heading, xaxis_title=x, yaxis_title=y, plot_bgcolor="white", height=560
    )
    figure.update_xaxes(type="category")
    figure.update_yaxes(type="category")
    return figure


# --------------------------------------------------------------------------- helpers


def _as_array(values: Any) -> np.ndarray:
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype=float)
    return np.asarray(values, dtype=float)


def default_title(result: Any) -> str:
    """``"<strategy> (<name>=<value>, ...)"``."""
    name = getattr(result, "spec_name", "backtest")
    params = getattr(result, "params", None)
    if params is not None and hasattr(params, "_asdict"):
        text = ", ".join(f"{key}={value}" for key, value in params._asdict().items())
        return f"{name} ({text})"
    return str(name)


def _is_long(side: pd.Series) -> np.ndarray:
    if (
        side.dtype == object
        or isinstance(side.dtype, pd.StringDtype)
        or side.dtype.name == "category"
    ):
        return side.astype(str).str.lower().isin(["long", "buy", "1", "1.0"]).to_numpy()
    return side.to_numpy(dtype=float) > 0


def _returns(trades: pd.DataFrame) -> np.ndarray:
    if "return" not in trades:
        return np.full(len(trades), np.nan)
    return trades["return"].to_numpy(dtype=float)


def _utc_ms(ms: Any) -> Any:
    if np.ndim(ms) == 0:
        return pd.Timestamp(int(ms), unit="ms", tz="UTC")
    return pd.to_datetime(np.asarray(ms, dtype=np.int64), unit="ms", utc=True)


def _utc(times: pd.Series) -> pd.DatetimeIndex:
    if len(times) == 0:
        return pd.DatetimeIndex([], tz="UTC")
    if pd.api.types.is_integer_dtype(times) or pd.api.types.is_float_dtype(times):
        return pd.to_datetime(times.to_numpy(), unit="ms", utc=True)
    return pd.DatetimeIndex(pd.to_datetime(times, utc=True))
