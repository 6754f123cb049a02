"""A reconciliation as text (``candela bots reconcile``) and as tables of text (the HTML report).

Numbers go through :mod:`research.formatting` (docs/architecture.md §2): times as UTC dates,
durations as ``2 min 10 s``, shares as percentages, prices with the digits they need.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from candela.cli.live.reconcile import BarEvent, Cause, FillDifference, Reconciliation
from candela.cli.live.service import Service
from research.formatting import fmt_count, fmt_duration, fmt_number, fmt_percent, fmt_time

MAX_LISTED = 20
"""Most differing trades listed per cause in the text report (the HTML report lists all)."""


def headline(rec: Reconciliation) -> str:
    """``bot ID: strategy (params) on market, version N``."""
    return f"bot {rec.records.bot_id}: {bot_line(rec)}"


def bot_line(rec: Reconciliation) -> str:
    """``strategy (params) on market, version N``."""
    config = rec.records.config
    params = ", ".join(f"{name}={value}" for name, value in config.params.items())
    market = f"{config.exchange} {config.symbol} {config.timeframe}"
    return f"{config.strategy} ({params}) on {market}, version {config.version}"


def agrees_line(rec: Reconciliation) -> str | None:
    """The one line of a bot with nothing to report, else ``None``."""
    service = rec.service
    if (
        not rec.agrees
        or service.late_runs
        or service.past_open_fills
        or len(service.off_configured)
    ):
        return None
    if rec.service.decisions == 0:
        return f"bot {rec.records.bot_id}: no decision recorded yet: nothing to reconcile"
    timely = (
        f"; {fmt_percent(service.on_time_share)} of {fmt_count(service.live)} live decisions "
        "on time"
        if service.live
        else ""
    )
    return (
        f"bot {rec.records.bot_id}: no differences: {fmt_count(len(rec.paper_fills))} fills over "
        f"{fmt_count(service.decisions)} decisions ({_span(rec)}) equal the backtest of its config "
        f"on the stored bars{timely}"
    )


def reconciliation_text(rec: Reconciliation) -> str:
    """The whole report: one line when nothing differs, else every section that has news."""
    line = agrees_line(rec)
    if line is not None:
        return line
    lines = [
        headline(rec),
        f"decisions: {fmt_count(rec.service.decisions)}, {_span(rec)}; fills: paper "
        f"{fmt_count(len(rec.paper_fills))}, backtest on the stored bars "
        f"{fmt_count(len(rec.backtest_fills))}",
    ]
    if rec.differences:
        lines += ["", f"{len(rec.differences)} fill(s) differ, by cause:"]
        for cause, differences in grouped(rec.differences):
            lines.append(f"  {describe(cause)}")
            trades = [difference for difference in differences if not difference.knock_on]
            lines += [f"    {fill_line(difference)}" for difference in trades[:MAX_LISTED]]
            if len(trades) > MAX_LISTED:
                lines.append(f"    ... and {len(trades) - MAX_LISTED} more")
            knock_on = len(differences) - len(trades)
            if knock_on:
                lines.append(
                    f"    {'and ' if trades else ''}{knock_on} fill(s) from "
                    f"{fmt_time(next(d for d in differences if d.knock_on).paper['ts'])} on: "
                    "the same trades, another size and fee (the equity differs from here on)"
                )
    else:
        lines += ["", "every fill equals the backtest's"]
    if rec.events:
        lines += ["", f"bars that differ from what the bot used ({len(rec.events)}):"]
        changed = _changed_fills(rec)
        shown = {difference.primary for difference in rec.differences}
        for event in rec.events:  # described above if it is a difference's cause
            text = label(event) if event in shown else describe(event)
            lines.append(f"  {text}: {changed.get(event, 0)} fill(s) changed")
    if rec.mismatches:
        lines += [
            "",
            f"decisions the backtest on the same bars does not give ({len(rec.mismatches)}):",
        ]
        lines += [f"  {describe(mismatch)}" for mismatch in rec.mismatches[:20]]
        if len(rec.mismatches) > 20:
            lines.append(f"  ... and {len(rec.mismatches) - 20} more")
    lines += ["", "service:"] + [f"  {line}" for line in service_lines(rec.service)]
    return "\n".join(lines)


def _span(rec: Reconciliation) -> str:
    ts = rec.records.signals["ts"]
    return f"bars {fmt_time(int(ts.iloc[0]))} to {fmt_time(int(ts.iloc[-1]))}"


def grouped(differences: list[FillDifference]) -> list[tuple[Cause | None, list[FillDifference]]]:
    """Differences by their primary cause, causes in chain order of their first difference."""
    groups: dict = {}
    for difference in differences:
        groups.setdefault(difference.primary, []).append(difference)
    return list(groups.items())


def _changed_fills(rec: Reconciliation) -> dict:
    counts: dict = {}
    for difference in rec.differences:
        for cause in difference.causes:
            counts[cause] = counts.get(cause, 0) + 1
    return counts


def describe(cause: Cause | None) -> str:
    """One sentence for a cause."""
    if cause is None:
        return "no cause found (a bug in the reconciliation: please report it)"
    if isinstance(cause, BarEvent):
        when = fmt_time(cause.ts)
        if cause.kind == "revised":
            changes = ", ".join(
                f"{name} {fmt_number(a)} -> {fmt_number(b)}" for name, a, b in cause.changed
            )
            return (
                f"bar {when} revised after the bot used it: {changes} "
                f"(used at {fmt_time(cause.moment)}, "
                f"revised at {fmt_time(cause.stored_at)})"
            )
        if cause.kind == "late":
            return (
                f"bar {when} arrived late: stored at {fmt_time(cause.stored_at)}, "
                "after the bot had "
                f"decided the next bar at {fmt_time(cause.moment)}; the bot never saw it"
            )
        if cause.kind == "missed":
            stored = (
                "at an unrecorded time"
                if math.isnan(cause.stored_at)
                else f"at {fmt_time(cause.stored_at)}"
            )
            return (
                f"bar {when} missed: stored {stored}, the bot decided the next bar at "
                f"{fmt_time(cause.moment)} without it"
            )
        return f"bar {when} removed: the bot decided at it, it is no longer stored"
    when = fmt_time(cause.ts)
    if cause.kind == "strategy_changed":
        return (
            f"strategy code changed: the decision at {when} was made by strategy source "
            f"{_short(cause.recorded_hash)}, the source is {_short(cause.current_hash)} now"
        )
    if cause.kind == "config_changed":
        return (
            f"config changed: the decisions up to {when} were made with config "
            f"{_short(cause.recorded_hash)}, the stored config is {_short(cause.current_hash)}"
        )
    if cause.kind == "unexplained_fill":
        return (
            f"unexplained: the fill in bar {when} differs from the backtest on the same bars, with "
            "the same decisions, config and code (a parity breach: please report it)"
        )
    return (
        f"unexplained: at {when} the bot recorded target {fmt_number(cause.paper)} where its "
        f"config's backtest on the same bars gives {fmt_number(cause.backtest)}, with the same "
        "config and code "
        "(a parity breach: please report it)"
    )


def label(cause: Cause | None) -> str:
    """A few words for a cause (the tables' ``cause`` column; :func:`describe` says it all)."""
    if cause is None:
        return "no cause found"
    if isinstance(cause, BarEvent):
        return f"bar {fmt_time(cause.ts)} {cause.kind}"
    return {
        "strategy_changed": "strategy code changed",
        "config_changed": "config changed",
        "unexplained_fill": "unexplained",
    }.get(cause.kind, f"unexplained decision at {fmt_time(cause.ts)}")


def _short(digest: str | None) -> str:
    return "(none)" if digest is None else digest[:12]


def fill_line(difference: FillDifference) -> str:
    """``2018-01-10 00:43 UTC  buy  paper only  1,234.5 at 0.0000313`` and the like."""
    fill = difference.paper or difference.backtest
    text = f"{fmt_time(fill['ts'])}  {fill['side']:<4}  {difference.kind:<13}"
    if difference.kind != "different":
        return (
            f"{text}  {fmt_number(fill['size'])} at {fmt_number(fill['price'])} ({fill['reason']})"
        )
    parts = []
    for name in ("side", "reason", "size", "price", "fee"):
        a, b = difference.paper[name], difference.backtest[name]
        if a != b:
            shown = (a, b) if isinstance(a, str) else (fmt_number(a), fmt_number(b))
            parts.append(f"{name} {shown[0]} (paper) vs {shown[1]} (backtest)")
    return f"{text}  {'; '.join(parts)}"


def service_lines(service: Service) -> list[str]:
    """The service section, one line per figure."""
    lines = []
    if service.live:
        lines.append(
            f"live decisions on time (within {fmt_duration(service.on_time_ms)} of the bar being "
            f"stored): {fmt_count(service.on_time)} of {fmt_count(service.live)} "
            f"({fmt_percent(service.on_time_share)})"
        )
        latency = service.latency_ms
        lines.append(
            "decision latency after the bar was stored: "
            f"median {fmt_duration(np.median(latency))}, "
            f"95th percentile {fmt_duration(np.percentile(latency, 95))}, "
            f"max {fmt_duration(latency.max())}"
        )
        if len(service.bar_delay_ms):
            delay = service.bar_delay_ms
            lines.append(
                f"bars stored after their close: median {fmt_duration(np.median(delay))}, "
                f"max {fmt_duration(delay.max())}"
            )
    else:
        lines.append(
            "no live decision: every decided bar was stored before the bot was registered "
            "(a replay or a start in the past), so timeliness is not judged"
        )
    history = service.decisions - service.live
    if history and service.live:
        lines.append(
            f"{fmt_count(history)} decision(s) on bars stored before the bot was registered "
            "(history) are not judged"
        )
    for run in service.late_runs:
        lines.append(late_run_line(run))
    if service.past_open_fills:
        lines.append(
            f"fills against a past open: {len(service.past_open_fills)} (they execute late "
            "decisions: paper filled them at the open after the decision's bar, which had passed "
            "when the decision was made; a live order could not have)"
        )
        lines += [
            f"  {fmt_time(fill.ts)} {fill.side} at {fmt_number(fill.price)}: decided "
            f"{fmt_duration(fill.late_ms)} after its bar was stored"
            for fill in service.past_open_fills[:10]
        ]
    if len(service.slippage_bps):
        bps = service.slippage_bps
        lines.append(
            f"slippage against the next open: {fmt_count(len(bps))} signal fills, mean "
            f"{fmt_number(bps.mean(), 4)} bp, max {fmt_number(bps.max(), 4)} bp (configured "
            f"{fmt_number(service.configured_slippage_bps, 4)} bp)"
        )
        off = service.off_configured
        if len(off):
            lines.append(
                f"  {len(off)} fill(s) off the configured slippage, against an open revised since: "
                + ", ".join(fmt_time(int(ts)) for ts in off[:5])
            )
    return lines


def late_run_line(run) -> str:
    """One late run and its cause."""
    span = (
        f"bar {fmt_time(run.first_ts)}"
        if run.first_ts == run.last_ts
        else f"bars {fmt_time(run.first_ts)} to {fmt_time(run.last_ts)}"
    )
    bars = (
        f"{run.decisions} decision(s) late ({span}), the latest by {fmt_duration(run.longest_ms)}"
    )
    if run.cause == "restart":
        crash = " after a crash" if run.crashed else ""
        return (
            f"restart gap{crash}: no decision from {fmt_time(run.down_from)} "
            "until the runner started at "
            f"{fmt_time(run.down_to)} ({fmt_duration(run.down_to - run.down_from)}): {bars}"
        )
    if run.cause == "stopped":
        until = "" if math.isnan(run.down_to) else f" to {fmt_time(run.down_to)}"
        return f"bot stopped from {fmt_time(run.down_from)}{until}: {bars}"
    if run.cause == "startup":
        return f"the bot's first decisions, while its runner was starting: {bars}"
    return f"slow decisions (no restart or stop in between): {bars}"


# --------------------------------------------------------------------------- tables for the report


def differences_frame(rec: Reconciliation) -> pd.DataFrame:
    """One row per differing fill: time, side, difference, paper and backtest fill, its primary
    cause (and the others that changed it along the chain)."""
    rows = []
    for difference in rec.differences:
        paper, backtest = difference.paper or {}, difference.backtest or {}
        fill = difference.paper or difference.backtest
        others = [label(cause) for cause in difference.causes if cause is not difference.primary]
        kind = "size and fee (knock-on)" if difference.knock_on else difference.kind
        rows.append(
            {
                "fill time": fmt_time(fill["ts"]),
                "side": fill["side"],
                "difference": kind,
                "paper": _fill_text(paper),
                "backtest": _fill_text(backtest),
                "cause": label(difference.primary)
                + (f" (also {', '.join(others)})" if others else ""),
            }
        )
    return pd.DataFrame(
        rows, columns=["fill time", "side", "difference", "paper", "backtest", "cause"]
    )


def _fill_text(fill: dict) -> str:
    if not fill:
        return "-"
    return f"{fmt_number(fill['size'])} at {fmt_number(fill['price'])} ({fill['reason']})"


def events_frame(rec: Reconciliation) -> pd.DataFrame:
    """One row per bar that differs from what the bot used."""
    changed = _changed_fills(rec)
    rows = [
        {
            "bar": fmt_time(event.ts),
            "kind": event.kind,
            "fills changed": fmt_count(changed.get(event, 0)),
            "what happened": describe(event).split(": ", 1)[1],
        }
        for event in rec.events
    ]
    return pd.DataFrame(rows, columns=["bar", "kind", "fills changed", "what happened"])


def service_frame(service: Service) -> pd.DataFrame:
    """The service figures as ``figure``/``value`` rows."""
    rows = [
        ("decisions", fmt_count(service.decisions)),
        ("live decisions", fmt_count(service.live)),
    ]
    if service.live:
        latency = service.latency_ms
        rows += [
            (
                f"on time (within {fmt_duration(service.on_time_ms)})",
                f"{fmt_count(service.on_time)} ({fmt_percent(service.on_time_share)})",
            ),
            ("decision latency, median", fmt_duration(np.median(latency))),
            ("decision latency, 95th percentile", fmt_duration(np.percentile(latency, 95))),
            ("decision latency, max", fmt_duration(latency.max())),
        ]
        if len(service.bar_delay_ms):
            rows.append(
                (
                    "bar stored after its close, median",
                    fmt_duration(np.median(service.bar_delay_ms)),
                )
            )
    rows += [
        ("late runs", fmt_count(len(service.late_runs))),
        ("fills against a past open", fmt_count(len(service.past_open_fills))),
    ]
    if len(service.slippage_bps):
        rows += [
            (
                "slippage against the next open, mean",
                f"{fmt_number(service.slippage_bps.mean(), 4)} bp",
            ),
            (
                "slippage against the next open, max",
                f"{fmt_number(service.slippage_bps.max(), 4)} bp",
            ),
            ("configured slippage", f"{fmt_number(service.configured_slippage_bps, 4)} bp"),
        ]
    return pd.DataFrame(rows, columns=["figure", "value"])
