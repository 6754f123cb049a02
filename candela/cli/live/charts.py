"""Plotly charts of a reconciliation for the HTML report (``notebooks/05_reconcile.ipynb``).

* :func:`fills_chart`: the close over the bot's span with the paper fills and the backtest's,
  the differing ones outlined in red, the bars that differ from what the bot used marked, and
  the bars decided late shaded;
* :func:`latency_chart`: each live decision's latency after its bar was stored (log scale),
  the on-time limit as a line, late decisions in red.

Times on the axes are bar close times (UTC); hover text goes through :mod:`research.formatting`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from candela.cli.live.reconcile import Reconciliation
from research.formatting import fmt_duration, fmt_number, fmt_time

PAPER = "#1f77b4"
BACKTEST = "#ff7f0e"
DIFFERS = "#d62728"
EVENT_COLORS = {"revised": "#9467bd", "late": "#8c564b", "missed": "#e377c2", "removed": "#7f7f7f"}


def _times(values) -> pd.DatetimeIndex:
    return pd.to_datetime(np.asarray(values, dtype=np.int64), unit="ms", utc=True)


def fills_chart(rec: Reconciliation) -> go.Figure:
    """Close, paper fills and backtest fills over the span; differences and bar events marked."""
    bars = rec.records.bars
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=_times(bars.index),
            y=bars["close"],
            mode="lines",
            name="close (stored)",
            line=dict(color="#888888", width=1),
            hoverinfo="skip",
        )
    )
    differing = {(d.bar_ts, d.seq) for d in rec.differences}
    for name, fills, color, symbol_buy, symbol_sell in (
        ("paper", rec.paper_fills, PAPER, "triangle-up", "triangle-down"),
        ("backtest", rec.backtest_fills, BACKTEST, "circle-open", "circle-open"),
    ):
        if not fills:
            continue
        keys = _keys(fills)
        frame = pd.DataFrame(fills)
        outline = [DIFFERS if key in differing else color for key in keys]
        symbols = [symbol_buy if side == "buy" else symbol_sell for side in frame["side"]]
        marker = (
            dict(color=color, size=10, symbol=symbols, line=dict(color=outline, width=2))
            if name == "paper"
            # an open symbol is drawn in its marker colour
            else dict(color=outline, size=15, symbol=symbols, line=dict(width=2))
        )
        figure.add_trace(
            go.Scatter(
                x=_times(frame["ts"]),
                y=frame["price"],
                mode="markers",
                name=f"{name} fills",
                marker=marker,
                text=[
                    f"{name}: {row.side} {fmt_number(row.size)} at {fmt_number(row.price)} "
                    f"({row.reason})<br>"
                    f"{fmt_time(row.ts)}"
                    for row in frame.itertuples()
                ],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    for event in rec.events:
        figure.add_vline(
            x=_times([event.ts])[0], line=dict(color=EVENT_COLORS[event.kind], dash="dot", width=1)
        )
    if rec.events:  # one legend entry per kind of bar event
        for kind in sorted({event.kind for event in rec.events}):
            figure.add_trace(
                go.Scatter(
                    x=[None],
                    y=[None],
                    mode="lines",
                    name=f"bar {kind}",
                    line=dict(color=EVENT_COLORS[kind], dash="dot"),
                )
            )
    step = pd.Timedelta(milliseconds=rec.records.timeframe_ms)
    for run in rec.service.late_runs:
        first, last = _times([run.first_ts, run.last_ts])
        figure.add_vrect(
            x0=first - step,
            x1=last,
            fillcolor="#d62728",
            opacity=0.08,
            line_width=0,
            annotation_text=f"decided late ({run.cause})",
            annotation_position="top left",
        )
    figure.update_layout(
        title="Fills: paper (filled triangles) and backtest on the stored bars (circles); "
        "red outline: differs",
        height=460,
        margin=dict(l=60, r=20, t=60, b=40),
        legend=dict(orientation="h", y=-0.15),
        hovermode="closest",
        yaxis=dict(tickformat=",.8~f", title="price"),
        xaxis=dict(title="time (UTC)"),
    )
    return figure


def _keys(fills: list[dict]) -> list[tuple[int, int]]:
    keys, previous, seq = [], None, 0
    for fill in fills:
        seq = seq + 1 if fill["bar_ts"] == previous else 0
        previous = fill["bar_ts"]
        keys.append((fill["bar_ts"], seq))
    return keys


def latency_chart(rec: Reconciliation) -> go.Figure | None:
    """Latency of each live decision after its bar was stored; ``None`` without live decisions."""
    service = rec.service
    if not service.live:
        return None
    signals = rec.records.signals
    ts = signals["ts"].to_numpy(dtype=np.int64)
    stored = rec.records.bars["first_stored_at"].reindex(ts).to_numpy(dtype=np.float64)
    available = np.where(np.isnan(stored), ts, stored)
    live = available >= rec.records.registered_at
    latency = (signals["created_at"].to_numpy(dtype=np.float64) - available)[live]
    seconds = np.maximum(latency, 1.0) / 1000.0  # a log axis has no 0: 1 ms at least
    late = latency > service.on_time_ms
    figure = go.Figure()
    for name, mask, color in (("on time", ~late, PAPER), ("late", late, DIFFERS)):
        if mask.any():
            figure.add_trace(
                go.Scatter(
                    x=_times(ts[live][mask]),
                    y=seconds[mask],
                    mode="markers",
                    name=name,
                    marker=dict(color=color, size=6),
                    text=[
                        f"bar {fmt_time(t)}: decided {fmt_duration(value)} after it was stored"
                        for t, value in zip(ts[live][mask], latency[mask], strict=True)
                    ],
                    hovertemplate="%{text}<extra></extra>",
                )
            )
    figure.add_hline(
        y=service.on_time_ms / 1000.0,
        line=dict(color="#444444", dash="dash"),
        annotation_text=f"on time: within {fmt_duration(service.on_time_ms)}",
        annotation_position="top left",
    )
    figure.update_layout(
        title="Decision latency after the bar was stored",
        height=320,
        margin=dict(l=60, r=20, t=60, b=40),
        legend=dict(orientation="h", y=-0.25),
        yaxis=dict(type="log", title="seconds", exponentformat="none", separatethousands=True),
        xaxis=dict(title="bar close (UTC)"),
    )
    return figure
