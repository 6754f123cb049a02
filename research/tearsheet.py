"""The analyses of a strategy report: monthly returns, the worst drawdowns, rolling Sharpe and
the trades, as tables and plotly figures.

Each function takes a :class:`~research.result.Result` (or its equity and trades) and returns a
DataFrame of numbers (fractions, times and durations, as in :mod:`research.metrics`) or a
figure; :mod:`research.formatting` turns the tables into text. ``notebooks/02_report.ipynb``
uses them all.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from research.charts import BENCHMARK_COLOR, EQUITY_COLOR, LOSS_COLOR, WIN_COLOR, TimeAxis
from research.metrics import YEAR_MS, buy_and_hold

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: Windows :func:`rolling_sharpe` chooses from: the longest that fits four times into the run.
ROLLING_WINDOWS = ("90D", "30D", "7D", "1D")


def _equity(result: Any) -> pd.Series:
    equity = result.equity
    return equity[equity.notna()]


def monthly_returns(result: Any) -> pd.DataFrame:
    """Return per calendar month (UTC): one row per year, one column per month (``Jan`` ...
    ``Dec``) and the year's return in column ``year``; fractions.

    A month's return is its last equity over the previous month's last equity (the initial
    cash before the first month) minus 1. A month without a bar is ``nan``; the next month with
    bars is then measured from the last equity before the gap.
    """
    equity = _equity(result)
    month_end = equity.groupby(
        equity.index.to_period("M")
        if equity.index.tz is None
        else equity.index.tz_localize(None).to_period("M")
    ).last()
    previous = month_end.shift(1).fillna(float(result.initial_cash))
    returns = month_end / previous - 1.0
    table = pd.DataFrame(
        index=sorted({p.year for p in returns.index}), columns=list(MONTHS) + ["year"], dtype=float
    )
    for period, value in returns.items():
        table.loc[period.year, MONTHS[period.month - 1]] = value
    year_end = month_end.groupby([p.year for p in month_end.index]).last()
    year_start = year_end.shift(1).fillna(float(result.initial_cash))
    table["year"] = (year_end / year_start - 1.0).reindex(table.index)
    table.index.name = "year"
    return table


def plot_monthly_returns(table: pd.DataFrame, title: str = "monthly returns (%)") -> go.Figure:
    """:func:`monthly_returns` as a heatmap: red losses, green gains, centred on 0; blank
    months had no bar."""
    months = table[list(MONTHS)]
    z = months.to_numpy(dtype=float) * 100.0
    text = [["" if np.isnan(value) else f"{value:+.1f} %" for value in row] for row in z]
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=list(MONTHS),
            y=[str(year) for year in months.index],
            colorscale="RdYlGn",
            zmid=0.0,
            xgap=2,
            ygap=2,
            text=text,
            texttemplate="%{text}",
            textfont={"size": 11},
            colorbar={"title": {"text": "return %"}},
            hovertemplate="%{x} %{y}: %{z:+.2f} %<extra></extra>",
        )
    )
    figure.update_layout(
        title=title,
        height=140 + 45 * len(months),
        plot_bgcolor="white",
        margin={"l": 60, "r": 20, "t": 50, "b": 30},
    )
    figure.update_yaxes(type="category", autorange="reversed")
    return figure


def drawdown_periods(result: Any, n: int = 5) -> pd.DataFrame:
    """The ``n`` deepest drawdowns, deepest first.

    A drawdown starts at a peak of the equity (the initial cash counts as a peak, at the first
    bar's open), reaches its trough, and ends at the first close back at or above the peak
    (``recovered`` is ``NaT`` while still under water).

    Returns
    -------
    DataFrame
        Columns ``peak``, ``trough``, ``recovered`` (UTC times), ``depth`` (fraction of the
        peak, positive), ``to_trough`` and ``length`` (durations: peak to trough, peak to
        recovery or to the last bar).
    """
    equity = _equity(result)
    columns = ["peak", "trough", "recovered", "depth", "to_trough", "length"]
    if len(equity) == 0:
        return pd.DataFrame(columns=columns)
    values = equity.to_numpy(dtype=float)
    times = equity.index
    timeframe = pd.Timedelta(milliseconds=int(getattr(result, "timeframe_ms", 0) or 0))
    start = times[0] - timeframe
    peak_value, peak_time = float(result.initial_cash), start
    trough_value, trough_time = peak_value, start
    periods = []
    for value, time in zip(values, times):
        if value >= peak_value:
            if trough_value < peak_value:
                periods.append((peak_time, trough_time, time, 1.0 - trough_value / peak_value))
            peak_value, peak_time, trough_value, trough_time = value, time, value, time
        elif value < trough_value:
            trough_value, trough_time = value, time
    if trough_value < peak_value:
        periods.append((peak_time, trough_time, pd.NaT, 1.0 - trough_value / peak_value))
    frame = pd.DataFrame(periods, columns=columns[:4])
    if len(frame) == 0:
        return pd.DataFrame(columns=columns)
    frame["recovered"] = pd.to_datetime(frame["recovered"], utc=True)
    frame["to_trough"] = frame["trough"] - frame["peak"]
    frame["length"] = frame["recovered"].fillna(times[-1]) - frame["peak"]
    frame = frame.sort_values("depth", ascending=False, kind="stable").head(n)
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="rank")
    return frame


def default_window(result: Any) -> str:
    """The longest of :data:`ROLLING_WINDOWS` that fits four times into the run."""
    elapsed = pd.Timedelta(milliseconds=float(result.stats["elapsed_ms"]))
    for window in ROLLING_WINDOWS:
        if 4 * pd.Timedelta(window) <= elapsed:
            return window
    return ROLLING_WINDOWS[-1]


def rolling_sharpe(
    result: Any, window: str | None = None, min_bars: int | None = None
) -> pd.DataFrame:
    """Sharpe ratio over a trailing calendar ``window`` (e.g. ``"30D"``; default
    :func:`default_window`), for the strategy and for buy and hold.

    At each bar: ``mean / std(ddof=1)`` of the bar returns whose close lies in the window
    ``(t - window, t]``, times ``sqrt(bars_per_year)`` of the whole run
    (``stats["bars_per_year"]``, as the run's Sharpe); ``nan`` until a whole window lies
    inside the run (from the first bar's open), with fewer than ``min_bars`` returns in the
    window (default: a tenth of the bars a complete window holds, at least 20: gappy data
    gives no value from a handful of bars), or without variation.

    Returns
    -------
    DataFrame
        Columns ``strategy`` and ``buy_and_hold`` on the equity's UTC index; ``attrs["window"]``
        holds the window.
    """
    window = window or default_window(result)
    timeframe = pd.Timedelta(milliseconds=int(getattr(result, "timeframe_ms", 0) or 0))
    if min_bars is None:
        complete = pd.Timedelta(window) / timeframe if timeframe > pd.Timedelta(0) else 0
        min_bars = max(20, int(complete // 10))
    equity = _equity(result)
    scale = math.sqrt(
        float(
            result.stats.get(
                "bars_per_year", YEAR_MS / max(int(getattr(result, "timeframe_ms", 0) or 1), 1)
            )
        )
    )
    curves = {"strategy": equity.to_numpy(dtype=float)}
    bars = getattr(result, "bars", None)
    if bars is not None:
        curves["buy_and_hold"] = buy_and_hold(bars.open, bars.close, result.initial_cash)[
            : len(equity)
        ]
    frame = pd.DataFrame(index=equity.index)
    for name, values in curves.items():
        returns = pd.Series(values, index=equity.index).pct_change()
        returns.iloc[0] = values[0] / float(result.initial_cash) - 1.0
        rolling = returns.rolling(window, min_periods=min_bars)
        std = rolling.std()
        frame[name] = (rolling.mean() / std.where(std > 0)) * scale
    if len(frame):
        frame.loc[frame.index < frame.index[0] - timeframe + pd.Timedelta(window)] = np.nan
    frame.attrs["window"] = window
    return frame


def plot_rolling_sharpe(frame: pd.DataFrame, timeframe_ms: int = 0) -> go.Figure:
    """:func:`rolling_sharpe` as lines (buy and hold dashed) with the zero line; lines break
    at data gaps and long gaps are cut out of the time axis, as in the backtest chart."""
    window = frame.attrs.get("window", "")
    ts = frame.index.as_unit("ms").asi8
    if not timeframe_ms and len(ts) > 1:
        timeframe_ms = int(np.diff(ts).min())
    axis = TimeAxis(ts, int(timeframe_ms))
    figure = go.Figure()
    if "buy_and_hold" in frame:
        figure.add_trace(
            go.Scatter(
                x=axis.line_x,
                y=axis.broken(frame["buy_and_hold"]),
                mode="lines",
                name="buy and hold",
                connectgaps=False,
                line={"color": BENCHMARK_COLOR, "width": 1.2, "dash": "dash"},
            )
        )
    figure.add_trace(
        go.Scatter(
            x=axis.line_x,
            y=axis.broken(frame["strategy"]),
            mode="lines",
            name="strategy",
            connectgaps=False,
            line={"color": EQUITY_COLOR, "width": 1.5},
        )
    )
    figure.add_hline(y=0.0, line={"color": "#616161", "width": 1})
    if len(ts):
        axis.apply(figure)
    figure.update_layout(
        title=f"rolling Sharpe ratio ({window} window, annualised)",
        height=340,
        plot_bgcolor="white",
        hovermode="x unified",
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
        xaxis_title="time (UTC, bar close)",
    )
    figure.update_xaxes(showgrid=True, gridcolor="#eeeeee")
    figure.update_yaxes(showgrid=True, gridcolor="#eeeeee", zeroline=False)
    return figure


def trade_analysis(trades: pd.DataFrame) -> pd.DataFrame:
    """Closed trades summarised for all trades, longs and shorts (one column each).

    Rows: ``trades``, ``win_rate`` (fraction with net P&L > 0), ``total_pnl``, ``average_pnl``,
    ``average_win``, ``average_loss``, ``payoff_ratio`` (``average_win / -average_loss``),
    ``best_return``, ``worst_return``, ``average_return`` (fractions of the entry notional),
    ``average_duration``, ``longest``; then one row ``exit: <reason>`` per exit reason
    (counts).
    """
    closed = trades[trades["exit_time"].notna()] if len(trades) else trades
    groups = {"all": closed}
    if len(closed):
        for side in ("long", "short"):
            part = closed[closed["side"] == side]
            if len(part):
                groups[side] = part
    rows: dict[str, dict[str, Any]] = {}
    reasons = sorted(set(closed["exit_reason"])) if len(closed) else []
    for name, part in groups.items():
        pnl = part["pnl"].astype(float) if len(part) else pd.Series(dtype=float)
        wins, losses = pnl[pnl > 0], pnl[pnl <= 0]
        average_win = wins.mean() if len(wins) else math.nan
        average_loss = losses.mean() if len(losses) else math.nan
        column = {
            "trades": len(part),
            "win_rate": (pnl > 0).mean() if len(pnl) else math.nan,
            "total_pnl": pnl.sum(),
            "average_pnl": pnl.mean() if len(pnl) else math.nan,
            "average_win": average_win,
            "average_loss": average_loss,
            "payoff_ratio": (
                average_win / -average_loss
                if len(wins) and len(losses) and average_loss < 0
                else math.nan
            ),
            "best_return": part["return"].max() if len(part) else math.nan,
            "worst_return": part["return"].min() if len(part) else math.nan,
            "average_return": part["return"].mean() if len(part) else math.nan,
            "average_duration": part["duration"].mean() if len(part) else pd.NaT,
            "longest": part["duration"].max() if len(part) else pd.NaT,
        }
        for reason in reasons:
            column[f"exit: {reason}"] = int((part["exit_reason"] == reason).sum())
        rows[name] = column
    return pd.DataFrame(rows)


#: Kinds of :func:`trade_analysis` rows, for :func:`format_trade_analysis`.
ANALYSIS_KINDS = {
    "trades": "count",
    "win_rate": "percent",
    "total_pnl": "money",
    "average_pnl": "money",
    "average_win": "money",
    "average_loss": "money",
    "payoff_ratio": "ratio",
    "best_return": "return",
    "worst_return": "return",
    "average_return": "return",
    "average_duration": "duration",
    "longest": "duration",
}


def plot_trade_returns(trades: pd.DataFrame) -> go.Figure:
    """Histogram of closed trades' returns (in %), winners and losers in their colours."""
    closed = trades[trades["exit_time"].notna()] if len(trades) else trades
    returns = closed["return"].astype(float).to_numpy() * 100.0 if len(closed) else np.empty(0)
    figure = go.Figure()
    for name, chosen, color in (
        ("winning", returns > 0, WIN_COLOR),
        ("losing", returns <= 0, LOSS_COLOR),
    ):
        figure.add_trace(
            go.Histogram(
                x=returns[chosen],
                name=f"{name} trades",
                marker={"color": color},
                opacity=0.8,
                bingroup="returns",
                hovertemplate="%{x} %: %{y} trades<extra></extra>",
            )
        )
    figure.update_layout(
        barmode="overlay",
        title="return per closed trade (%)",
        height=320,
        plot_bgcolor="white",
        xaxis_title="return of the trade (%)",
        yaxis_title="trades",
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
    )
    figure.update_xaxes(showgrid=True, gridcolor="#eeeeee", ticksuffix=" %")
    figure.update_yaxes(showgrid=True, gridcolor="#eeeeee")
    return figure
