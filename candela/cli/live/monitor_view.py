"""How the live monitor looks: its chart (a plotly ``FigureWidget``), its banner and its table
of bots as HTML (:mod:`candela.cli.live.monitor` fills them in).

Numbers go through :mod:`research.formatting`; a flagged bot's row is red, the charted one blue.
"""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from candela.cli.live import snapshot
from research.formatting import (
    fmt_count,
    fmt_duration,
    fmt_money,
    fmt_number,
    fmt_percent,
    fmt_time,
)

RED, GREEN, GREY = "#c62828", "#2e7d32", "#757575"


def times(values):
    import pandas as pd

    return pd.to_datetime(np.asarray(values, dtype=np.int64), unit="ms", utc=True)


def figure() -> go.FigureWidget:
    figure = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28], vertical_spacing=0.04
    )
    figure.add_trace(
        go.Candlestick(
            name="bars",
            showlegend=False,
            increasing_line_color="#26a69a",
            decreasing_line_color="#ef5350",
        ),
        row=1,
        col=1,
    )
    figure.add_trace(
        go.Scatter(
            name="buy",
            mode="markers",
            hovertemplate="%{text}<extra></extra>",
            marker=dict(
                symbol="triangle-up",
                size=15,
                color="#1565c0",
                line=dict(color="#0d2a4f", width=1.5),
            ),
        ),
        row=1,
        col=1,
    )
    figure.add_trace(
        go.Scatter(
            name="sell",
            mode="markers",
            hovertemplate="%{text}<extra></extra>",
            marker=dict(
                symbol="triangle-down",
                size=15,
                color="#ef6c00",
                line=dict(color="#5a2900", width=1.5),
            ),
        ),
        row=1,
        col=1,
    )
    figure.add_trace(
        go.Scatter(name="equity", mode="lines", line=dict(color="#6a1b9a", width=1.5)), row=2, col=1
    )
    figure.update_layout(
        height=520,
        width=1000,
        margin=dict(l=80, r=20, t=50, b=30),
        xaxis_rangeslider_visible=False,
        legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"),
        title=dict(text="no bot yet", x=0.01, font=dict(size=14)),
        template="plotly_white",
    )
    figure.update_yaxes(title_text="price", tickformat=",.8~f", row=1, col=1)
    figure.update_yaxes(title_text="equity", tickformat=",.2f", row=2, col=1)
    return go.FigureWidget(figure)


def banner(rows: list[snapshot.BotRow], notices: list[dict]) -> str:
    flagged = [row for row in rows if row.flags]
    if not rows:
        text, color = (
            "no bot in the database yet: 'candela run' registers the bots of config/bots/",
            GREY,
        )
        lines = []
    elif flagged:
        text, color = f"{len(flagged)} of {len(rows)} bot(s) need attention", RED
        lines = [_flag_text(row) for row in flagged]
    else:
        text, color = (
            f"all {len(rows)} bot(s) healthy: heartbeats fresh, markets delivering bars",
            GREEN,
        )
        lines = []
    lines += [
        f"notice at {fmt_time(notice.get('at'))}: {_notice_text(notice)}" for notice in notices[-3:]
    ]
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return (
        f"<div style='border-left:6px solid {color};background:{color}14;"
        "padding:6px 12px;margin:4px 0'>"
        f"<b style='color:{color}'>{html.escape(text)}</b>"
        + (f"<ul style='margin:4px 0 0 0'>{items}</ul>" if items else "")
        + "</div>"
    )


def _flag_text(row: snapshot.BotRow) -> str:
    parts = []
    for flag in row.flags:
        if flag == "heartbeat stale":
            age = (
                "none yet"
                if row.heartbeat_age_ms is None
                else f"last {fmt_duration(row.heartbeat_age_ms)} ago"
            )
            parts.append(f"heartbeat stale ({age}): is its runner running?")
        elif flag == "market stalled":
            condition = row.market_condition or {}
            parts.append(
                f"the bars of {' '.join(row.market)} stopped (last bar "
                f"{fmt_time(condition.get('last_bar_ts'))}, "
                f"noticed {fmt_time(condition.get('at'))})"
            )
        else:
            parts.append(flag)
    return f"{row.bot_id}: " + "; ".join(parts)


def _notice_text(notice: dict) -> str:
    details = {key: value for key, value in notice.items() if key not in ("event", "at")}
    subject = details.pop("bot_id", None) or " ".join(
        str(details.pop(key)) for key in ("exchange", "symbol", "timeframe") if key in details
    )
    return f"{notice.get('event')} {subject}".strip()


_COLUMNS = ("bot", "status", "heartbeat", "position", "equity", "P&L", "last decision", "behind")
_LEFT = {"bot", "status", "last decision"}


def table(rows: list[snapshot.BotRow], chosen: str | None) -> str:
    head = "".join(
        f"<th style='text-align:{'left' if name in _LEFT else 'right'};padding:3px 10px'"
        f"{_HELP.get(name, '')}>{name}</th>"
        for name in _COLUMNS
    )
    body = []
    for row in rows:
        cells = _cells(row)
        style = (
            f"background:{RED}1a"
            if row.flags
            else ("background:#e3f2fd" if row.bot_id == chosen else "")
        )
        body.append(
            f"<tr style='{style};border-bottom:1px solid #e0e0e0'>"
            + "".join(
                f"<td style='text-align:{'left' if name in _LEFT else 'right'};"
                "padding:4px 10px;white-space:nowrap;"
                f"vertical-align:top'>{cell}</td>"
                for name, cell in zip(_COLUMNS, cells, strict=True)
            )
            + "</tr>"
        )
    return (
        "<table style='border-collapse:collapse;font-size:13px'>"
        f"<thead><tr style='border-bottom:1px solid #999'>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


_HELP = {
    "behind": " title='stored bars of its market the bot has not processed yet'",
    "heartbeat": " title='time since the runner last confirmed the bot is running'",
}


def _small(text: str) -> str:
    return f"<br><span style='color:{GREY};font-size:11px'>{html.escape(text)}</span>"


def _cells(row: snapshot.BotRow) -> list[str]:
    heartbeat = (
        "none yet" if row.heartbeat_age_ms is None else f"{fmt_duration(row.heartbeat_age_ms)} ago"
    )
    pnl = "-"
    if row.pnl is not None:
        color = GREEN if row.pnl >= 0 else RED
        pnl = f"<span style='color:{color}'>{fmt_money(row.pnl, row.initial_cash)}</span>" + _small(
            fmt_percent(row.pnl_fraction, signed=True)
        )
    decision = (
        "-"
        if row.last_action is None
        else (
            f"{html.escape(row.last_action)} {fmt_number(row.last_target, 3)}"
            + _small(fmt_time(row.last_signal_ts))
        )
    )
    flags = "".join(f"<br><b style='color:{RED}'>{html.escape(flag)}</b>" for flag in row.flags)
    return [
        f"<b>{html.escape(row.bot_id)}</b>" + _small(f"{row.strategy} {' '.join(row.market)}"),
        html.escape(row.status) + flags,
        heartbeat,
        "-" if row.position is None else fmt_number(row.position),
        "-" if row.equity is None else fmt_money(row.equity, row.initial_cash),
        pnl,
        decision,
        "-" if row.bars_behind is None else fmt_count(row.bars_behind),
    ]
