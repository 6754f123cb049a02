"""Charts of a portfolio backtest: equity against the equal-weight buy-and-hold book, drawdown,
weights over time as a stacked area, and contribution by market."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from research.charts import drawdown_percent

DEFAULT_HEIGHT = 900
#: Qualitative colours, one per market (cycled past ten markets).
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def plot_portfolio(
    result: Any, *, title: str | None = None, height: int | None = None
) -> go.Figure:
    """Plot a :class:`~research.portfolio.result.PortfolioResult`.

    Panes, top to bottom (the first three share one UTC time axis, bars drawn at their close
    time):

    1. **equity** after each close and the **equal-weight buy-and-hold book** (dashed);
    2. **drawdown %** of the equity (``100 * (equity / peak - 1)``, the peak over the initial
       cash and every close so far);
    3. **weights**: each market's share of the equity (position at its last close over the
       equity), stacked: longs above 0, shorts below; the gap to the top is cash;
    4. **contribution by market**: each market's profit in the quote currency (its fills'
       cash flows and its final position at its last close), sorted, green for a gain and red
       for a loss.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    figure = make_subplots(
        rows=4,
        cols=1,
        vertical_spacing=0.07,
        row_heights=[0.34, 0.14, 0.28, 0.24],
        subplot_titles=("equity", "drawdown %", "weights", "contribution by market"),
    )
    times = result.index
    equity = np.asarray(result.equity_values, dtype=np.float64)
    figure.add_trace(
        go.Scatter(
            x=times,
            y=equity,
            name="equity",
            line={"color": "#1f3b73"},
            hovertemplate="%{y:,.2f}<extra>equity</extra>",
        ),
        row=1,
        col=1,
    )
    figure.add_trace(
        go.Scatter(
            x=times,
            y=result.benchmark.to_numpy(),
            name="equal-weight buy and hold",
            line={"color": "#888888", "dash": "dash"},
            hovertemplate="%{y:,.2f}<extra>buy and hold</extra>",
        ),
        row=1,
        col=1,
    )
    figure.add_trace(
        go.Scatter(
            x=times,
            y=drawdown_percent(equity, result.initial_cash),
            name="drawdown",
            fill="tozeroy",
            line={"color": "#b22222"},
            showlegend=False,
            hovertemplate="%{y:.2f}%<extra>drawdown</extra>",
        ),
        row=2,
        col=1,
    )
    weights = result.weights
    for j, market in enumerate(weights.columns):
        colour = PALETTE[j % len(PALETTE)]
        values = weights[market].to_numpy()
        for sign, group in ((1.0, "long"), (-1.0, "short")):
            part = np.where(sign * values > 0.0, values, 0.0)
            if not np.any(part):
                continue
            figure.add_trace(
                go.Scatter(
                    x=times,
                    y=part,
                    name=market,
                    legendgroup=market,
                    stackgroup=group,
                    line={"width": 0.5, "color": colour},
                    showlegend=sign > 0 or not np.any(values > 0.0),
                    hovertemplate="%{y:.1%}<extra>" + market + "</extra>",
                ),
                row=3,
                col=1,
            )
    contribution = result.contribution.sort_values()
    figure.add_trace(
        go.Bar(
            x=contribution.index.tolist(),
            y=contribution.to_numpy(),
            showlegend=False,
            marker={"color": np.where(contribution.to_numpy() >= 0.0, "#2e7d32", "#c62828")},
            hovertemplate="%{x}: %{y:,.2f}<extra>contribution</extra>",
        ),
        row=4,
        col=1,
    )
    for row in (2, 3):
        figure.update_xaxes(matches="x", row=row, col=1)
    figure.update_yaxes(tickformat=".0%", row=3, col=1)
    figure.update_layout(
        title=title or f"{result.spec_name} ({_params_text(result.params)})",
        height=height or DEFAULT_HEIGHT,
        hovermode="x unified",
        template="plotly_white",
        legend={"orientation": "h", "y": -0.05},
    )
    return figure


def _params_text(params: Any) -> str:
    if params is None or not hasattr(params, "_asdict"):
        return ""
    return ", ".join(f"{key}={value}" for key, value in params._asdict().items())
