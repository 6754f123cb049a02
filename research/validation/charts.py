"""Plotly figures of the validation results: the parameter surface, the PBO, walk-forward
equity and parameter stability, the CPCV distribution. Percentages are shown in %, times in UTC
(:mod:`research.formatting` conventions); each figure's title says what it shows."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from research.metrics import LOWER_IS_BETTER


def plot_parallel(
    frame: pd.DataFrame, params: list[str], metric: str, *, min_trades: int = 0
) -> go.Figure:
    """Parallel coordinates: one line per valid parameter set, coloured by ``metric``
    (green is good), across the parameters and the metric."""
    rows = frame
    if "valid" in rows.columns:
        rows = rows[rows["valid"].to_numpy(dtype=bool)]
    if min_trades and "trade_count" in rows.columns:
        rows = rows[rows["trade_count"] >= min_trades]
    rows = rows[np.isfinite(pd.to_numeric(rows[metric], errors="coerce"))]
    values = rows[metric].to_numpy(dtype=float)
    scale = "RdYlGn_r" if metric in LOWER_IS_BETTER else "RdYlGn"
    dimensions = [{"label": name, "values": rows[name]} for name in params]
    dimensions.append({"label": metric, "values": values})
    figure = go.Figure(
        go.Parcoords(
            line={"color": values, "colorscale": scale, "showscale": True}, dimensions=dimensions
        )
    )
    figure.update_layout(
        title=f"{metric} across the parameters ({len(rows):,} parameter sets"
        f"{f' with at least {min_trades} trades' if min_trades else ''})",
        height=480,
    )
    return figure


def plot_pbo(overfitting: Any) -> go.Figure:
    """Left: the CSCV logits (negative: the in-sample winner ranked at or below the median
    out of sample). Right: the winner's in-sample against its out-of-sample Sharpe ratio, per
    split (annualised)."""
    pbo = overfitting.pbo
    scale = overfitting.annual_sharpe / overfitting.sharpe if overfitting.sharpe else 1.0
    figure = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(
            f"rank logits of the in-sample winner (PBO {pbo.pbo:.0%}: share at or below 0)",
            "in-sample vs out-of-sample Sharpe ratio of the winner",
        ),
    )
    logits = pbo.logits[np.isfinite(pbo.logits)]
    figure.add_trace(
        go.Histogram(x=logits, nbinsx=40, marker_color="#4c78a8", name="splits"), row=1, col=1
    )
    figure.add_vline(x=0.0, line_dash="dash", line_color="#d62728", row=1, col=1)
    figure.add_trace(
        go.Scattergl(
            x=pbo.is_sharpe * scale,
            y=pbo.oos_sharpe * scale,
            mode="markers",
            marker={"size": 4, "opacity": 0.4},
            name="splits",
        ),
        row=1,
        col=2,
    )
    figure.add_hline(y=0.0, line_dash="dash", line_color="#d62728", row=1, col=2)
    figure.update_xaxes(title_text="logit", row=1, col=1)
    figure.update_yaxes(title_text="splits", row=1, col=1)
    figure.update_xaxes(title_text="in-sample Sharpe", row=1, col=2)
    figure.update_yaxes(title_text="out-of-sample Sharpe", row=1, col=2)
    figure.update_layout(showlegend=False, height=420, plot_bgcolor="white")
    return figure


def plot_walkforward(walk: Any) -> go.Figure:
    """The stitched out-of-sample equity against buy and hold over the same bars, with each
    test window's start marked and labelled with the parameters it traded."""
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=walk.equity.index,
            y=walk.equity.to_numpy(),
            name="walk-forward (out of sample)",
            line={"color": "#1f77b4"},
        )
    )
    if walk.buy_hold is not None:
        figure.add_trace(
            go.Scatter(
                x=walk.buy_hold.index,
                y=walk.buy_hold.to_numpy(),
                name="buy and hold",
                line={"color": "#7f7f7f", "dash": "dot"},
            )
        )
    for row in walk.windows.itertuples():
        start = pd.Timestamp(row.test_start_ts, unit="ms", tz="UTC")
        chosen = ", ".join(f"{name}={getattr(row, name)}" for name in walk.param_names)
        figure.add_vline(x=start, line_color="#bbbbbb", line_width=1)
        figure.add_annotation(
            x=start,
            y=1.0,
            yref="paper",
            text=chosen or "flat",
            showarrow=False,
            textangle=-90,
            xanchor="left",
            yanchor="top",
            font={"size": 9, "color": "#555555"},
        )
    figure.update_layout(
        title="walk-forward: stitched out-of-sample equity (continuous "
        "capital) and the parameters each test window traded",
        yaxis_title="equity",
        height=480,
        plot_bgcolor="white",
        legend={"orientation": "h", "y": -0.15},
    )
    return figure


def plot_stability(walk: Any) -> go.Figure:
    """The value chosen for each parameter in each window (one subplot per parameter)."""
    names = list(walk.param_names)
    figure = make_subplots(
        rows=len(names),
        cols=1,
        shared_xaxes=True,
        subplot_titles=[f"{name} chosen per window" for name in names],
    )
    windows = walk.windows
    for i, name in enumerate(names, start=1):
        figure.add_trace(
            go.Scatter(x=windows["window"] + 1, y=windows[name], mode="lines+markers", name=name),
            row=i,
            col=1,
        )
    figure.update_xaxes(title_text="window", row=len(names), col=1, dtick=1)
    figure.update_layout(
        showlegend=False,
        height=max(260, 200 * len(names)),
        plot_bgcolor="white",
        title="parameter stability",
    )
    return figure


def plot_cv_paths(cv: Any) -> go.Figure:
    """Histogram of the out-of-sample Sharpe ratios of the CV paths (annualised)."""
    values = cv.paths["sharpe"].to_numpy(dtype=float)
    figure = go.Figure(
        go.Histogram(x=values, nbinsx=max(5, min(40, len(values))), marker_color="#54a24b")
    )
    median = float(np.nanmedian(values)) if len(values) else math.nan
    figure.add_vline(x=0.0, line_dash="dash", line_color="#d62728")
    if math.isfinite(median):
        figure.add_vline(x=median, line_color="#333333", annotation_text=f"median {median:.2f}")
    figure.update_layout(
        title=f"out-of-sample Sharpe ratio over {len(values)} {cv.method.upper()} paths",
        xaxis_title="annualised Sharpe ratio",
        yaxis_title="paths",
        height=380,
        plot_bgcolor="white",
    )
    return figure
