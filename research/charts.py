"""Plotly charts of backtests and sweeps.

:func:`plot_result` draws one backtest: candlesticks with the strategy's price overlays and
its trades, one pane per other indicator, the equity curve and the drawdown. :func:`plot_heatmap`
draws one stat of a sweep over two parameters. Both return a ``plotly.graph_objects.Figure``;
``fig.show()`` displays it in a notebook, and ::

    fig.write_html("backtest.html", include_plotlyjs=True)

writes a standalone file with plotly.js embedded, which opens offline (no CDN).
All times on the x axis are UTC; a bar is drawn at its close time (docs/architecture.md §2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

LONG_COLOR = "#26a69a"
SHORT_COLOR = "#ef5350"
ENTRY_COLOR = "#1565c0"
EXIT_COLOR = "#f57c00"
EQUITY_COLOR = "#37474f"
DRAWDOWN_COLOR = "#c62828"
DEFAULT_MAX_BARS = 200_000


def plot_result(
    result: Any,
    *,
    overlays: Sequence[str] | None = None,
    title: str | None = None,
    height: int | None = None,
    max_bars: int | None = DEFAULT_MAX_BARS,
) -> go.Figure:
    """Plot a backtest :class:`~research.backtesting.Result`.

    Panes, top to bottom, sharing one UTC time axis (bars drawn at their close time):

    1. **price**: candlesticks, the indicators named in ``overlays`` as lines, and the trades:
       a marker per entry and per exit at the fill price and fill time (a fill at a bar's
       open sits at the previous bar's close time, which is the same instant), a triangle
       pointing up for a buy and down for a sell (long entries and short exits are buys),
       with the side, price, size and, for exits, the exit reason and P&L on hover;
    2. one pane per remaining indicator (e.g. RSI);
    3. **equity** (marked at each close);
    4. **drawdown**: ``100 * (equity / peak - 1)`` with the peak taken over the initial cash
       and every close so far, so its lowest point is ``-100 * stats["max_drawdown"]``.

    Parameters
    ----------
    result : Result
        A backtest result (uses ``bars``, ``indicators``, ``trades``, ``equity``,
        ``initial_cash``, ``spec_name`` and ``params``). A result loaded from the database
        without its bars is drawn without candles and indicators.
    overlays : sequence of str, optional
        Indicator names to draw on the price pane. Default: ``result.spec.overlays`` when the
        result carries its spec, else every indicator whose values lie within the price range.
    title : str, optional
        Figure title; default ``"<strategy> (<params>)"``.
    height : int, optional
        Figure height in pixels; default grows with the number of panes.
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
    drawdown_all = drawdown_percent(equity_all, getattr(result, "initial_cash", None))
    if bars is not None:
        times_all = pd.to_datetime(np.asarray(bars.ts), unit="ms", utc=True)
    else:
        times_all = pd.DatetimeIndex(pd.to_datetime(result.equity.index, utc=True))
    first = 0
    if max_bars is not None and len(times_all) > max_bars:
        first = len(times_all) - int(max_bars)
    window = slice(first, None)
    times = times_all[window]
    indicators = {name: np.asarray(values, dtype=float)[window]
                  for name, values in (getattr(result, "indicators", None) or {}).items()}
    if bars is None:
        indicators = {}
    overlay_names = _overlay_names(result, indicators, overlays, bars)
    pane_names = [name for name in indicators if name not in overlay_names]
    n_rows = 3 + len(pane_names)
    row_heights = [0.5] + [0.5 / (n_rows - 1)] * (n_rows - 1)
    subtitles = ["price"] + pane_names + ["equity", "drawdown %"]
    figure = make_subplots(rows=n_rows, cols=1, shared_xaxes=True, vertical_spacing=0.03,
                           row_heights=row_heights, subplot_titles=subtitles)
    if bars is not None:
        figure.add_trace(go.Candlestick(
            x=times, open=bars.open[window], high=bars.high[window], low=bars.low[window],
            close=bars.close[window], name="price",
            increasing_line_color=LONG_COLOR, decreasing_line_color=SHORT_COLOR,
        ), row=1, col=1)
    for name in overlay_names:
        figure.add_trace(go.Scatter(x=times, y=indicators[name], mode="lines", name=name,
                                    line={"width": 1.2}), row=1, col=1)
    trades = getattr(result, "trades", None)
    if first and trades is not None and len(trades):
        entered = pd.to_datetime(trades["entry_time"], utc=True)
        trades = trades[(entered >= times[0] - _bar_length(times_all)).to_numpy()]
    for trace in _trade_traces(trades):
        figure.add_trace(trace, row=1, col=1)
    for offset, name in enumerate(pane_names):
        figure.add_trace(go.Scatter(x=times, y=indicators[name], mode="lines", name=name,
                                    line={"width": 1.2}), row=2 + offset, col=1)
    figure.add_trace(go.Scatter(x=times, y=equity_all[window], mode="lines", name="equity",
                                line={"color": EQUITY_COLOR, "width": 1.5}), row=n_rows - 1, col=1)
    figure.add_trace(go.Scatter(x=times, y=drawdown_all[window], mode="lines", name="drawdown",
                                fill="tozeroy", line={"color": DRAWDOWN_COLOR, "width": 1}),
                     row=n_rows, col=1)
    label = title or _default_title(result)
    if first:
        label += f" (last {len(times):,} of {len(times_all):,} bars)"
    figure.update_layout(
        title=label,
        height=height or 520 + 160 * (n_rows - 1),
        hovermode="x unified",
        legend={"orientation": "h", "y": 1.02, "x": 0, "yanchor": "bottom"},
        margin={"l": 60, "r": 20, "t": 80, "b": 40},
    )
    figure.update_xaxes(rangeslider_visible=False)
    figure.update_xaxes(title_text="time (UTC, bar close)", row=n_rows, col=1)
    return figure


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


def _bar_length(times: pd.DatetimeIndex) -> pd.Timedelta:
    if len(times) < 2:
        return pd.Timedelta(0)
    return (times[1:] - times[:-1]).min()


def plot_heatmap(sweep_frame: pd.DataFrame, x: str, y: str, metric: str, *,
                 title: str | None = None) -> go.Figure:
    """Plot ``metric`` of a sweep over parameters ``x`` (columns) and ``y`` (rows).

    Combinations the sweep skipped (invalid, or not sampled) are empty cells. When other
    parameters were swept too, each cell shows the best (maximum) ``metric`` over them, and
    the title says so.

    Parameters
    ----------
    sweep_frame : DataFrame
        :attr:`research.sweeps.SweepResult.frame` (or any frame with columns ``x``, ``y`` and
        ``metric``).
    x, y : str
        Parameter columns for the horizontal and vertical axes.
    metric : str
        The stat column to colour by.

    Raises
    ------
    ValueError
        If a column is missing (the message lists the available ones) or ``x == y``.
    """
    for name in (x, y, metric):
        if name not in sweep_frame.columns:
            raise ValueError(f"column {name!r} is not in the sweep frame; available: "
                             f"{', '.join(map(str, sweep_frame.columns))}")
    if x == y:
        raise ValueError("x and y must be two different parameters")
    values = pd.to_numeric(sweep_frame[metric], errors="coerce")
    table = (sweep_frame.assign(**{metric: values})
             .pivot_table(index=y, columns=x, values=metric, aggfunc="max", dropna=False)
             .sort_index().sort_index(axis=1))
    aggregated = sweep_frame.duplicated(subset=[x, y]).any()
    label = f"{metric} (best over other parameters)" if aggregated else metric
    figure = go.Figure(go.Heatmap(
        z=table.to_numpy(dtype=float), x=list(table.columns), y=list(table.index),
        colorscale="RdYlGn", colorbar={"title": {"text": metric}},
        hovertemplate=f"{x}=%{{x}}<br>{y}=%{{y}}<br>{metric}=%{{z:.4g}}<extra></extra>",
    ))
    figure.update_layout(title=title or label, xaxis_title=x, yaxis_title=y)
    return figure


# --------------------------------------------------------------------------- helpers


def _as_array(values: Any) -> np.ndarray:
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype=float)
    return np.asarray(values, dtype=float)


def _default_title(result: Any) -> str:
    name = getattr(result, "spec_name", "backtest")
    params = getattr(result, "params", None)
    if params is not None and hasattr(params, "_asdict"):
        text = ", ".join(f"{key}={value}" for key, value in params._asdict().items())
        return f"{name} ({text})"
    return str(name)


def _overlay_names(result: Any, indicators: dict[str, np.ndarray], overlays: Sequence[str] | None,
                   bars: Any) -> list[str]:
    if overlays is None:
        spec = getattr(result, "spec", None)
        overlays = getattr(spec, "overlays", None)
    if overlays is not None:
        unknown = [name for name in overlays if name not in indicators]
        if unknown:
            raise ValueError(f"overlay {unknown[0]!r} is not an indicator of this result; "
                             f"indicators: {', '.join(indicators) or 'none'}")
        return list(overlays)
    if bars is None or len(bars) == 0:
        return []
    low, high = float(np.nanmin(bars.low)), float(np.nanmax(bars.high))
    chosen = []
    for name, values in indicators.items():
        finite = values[np.isfinite(values)]
        if len(finite) and low * 0.5 <= finite.min() and finite.max() <= high * 2.0:
            chosen.append(name)
    return chosen


def _trade_traces(trades: pd.DataFrame | None) -> list[go.Scatter]:
    """Entry and exit markers; one point per trade entry and one per closed trade's exit."""
    if trades is None or len(trades) == 0:
        trades = pd.DataFrame(columns=["entry_time", "exit_time", "side", "size", "entry_price",
                                       "exit_price", "pnl", "return_pct", "exit_reason"])
    long = _is_long(trades["side"]) if len(trades) else np.zeros(0, dtype=bool)
    entry_symbols = np.where(long, "triangle-up", "triangle-down")
    entry_text = [f"entry {'long' if is_long else 'short'}<br>price {price:.6g}<br>size {size:.6g}"
                  for is_long, price, size in zip(long, trades["entry_price"], trades["size"])]
    entries = go.Scatter(
        x=_utc(trades["entry_time"]), y=trades["entry_price"].to_numpy(dtype=float),
        mode="markers", name="entries", text=entry_text, hoverinfo="text+x",
        marker={"symbol": list(entry_symbols), "size": 11, "color": ENTRY_COLOR,
                "line": {"width": 1, "color": "white"}},
    )
    closed = trades["exit_time"].notna().to_numpy() if len(trades) else np.zeros(0, dtype=bool)
    exited = trades[closed]
    exit_symbols = np.where(long[closed], "triangle-down", "triangle-up")
    exit_text = [
        f"exit {'long' if is_long else 'short'} ({reason})<br>price {price:.6g}<br>size {size:.6g}"
        f"<br>P&L {pnl:.2f} ({ret:.2f} %)"
        for is_long, reason, price, size, pnl, ret in zip(
            long[closed], exited["exit_reason"], exited["exit_price"], exited["size"],
            exited["pnl"], _return_percent(exited))
    ]
    exits = go.Scatter(
        x=_utc(exited["exit_time"]), y=exited["exit_price"].to_numpy(dtype=float),
        mode="markers", name="exits", text=exit_text, hoverinfo="text+x",
        marker={"symbol": list(exit_symbols), "size": 11, "color": EXIT_COLOR,
                "line": {"width": 1, "color": "white"}},
    )
    return [entries, exits]


def _is_long(side: pd.Series) -> np.ndarray:
    if side.dtype == object or isinstance(side.dtype, pd.StringDtype) or side.dtype.name == "category":
        return side.astype(str).str.lower().isin(["long", "buy", "1", "1.0"]).to_numpy()
    return (side.to_numpy(dtype=float) > 0)


def _return_percent(trades: pd.DataFrame) -> np.ndarray:
    if "return_pct" not in trades:
        return np.full(len(trades), np.nan)
    return trades["return_pct"].to_numpy(dtype=float)


def _utc(times: pd.Series) -> pd.DatetimeIndex:
    if len(times) == 0:
        return pd.DatetimeIndex([], tz="UTC")
    if pd.api.types.is_integer_dtype(times) or pd.api.types.is_float_dtype(times):
        return pd.to_datetime(times.to_numpy(), unit="ms", utc=True)
    return pd.DatetimeIndex(pd.to_datetime(times, utc=True))
