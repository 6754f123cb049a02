"""The service a paper bot gave: decisions on time, their latency, restart gaps, fills against a
past open, and slippage against the next open.

Definitions (all times ms UTC, wall clock for ``created_at``/``stored``):

* a **live decision** is one at a bar stored after the bot was registered (``bots.created_at``);
  decisions on bars that were history when the bot started (a replay, a ``start`` in the past)
  are not judged for timeliness;
* its **latency** is ``decision time - time the bar was first stored`` (the bar's close time
  when its storage was not recorded); it is **on time** when the latency is at most
  ``on_time_ms``;
* a bar's **delay** is ``first stored - close time``: how late the pipeline stored it;
* a **late run** is a sequence of consecutive late live decisions, explained by the bot's
  events in between: a runner start (``started``/``restarted``: the runner was down, a
  *restart gap*), a stop (``stop_requested``), else slow decisions; late first decisions are
  the runner's *startup*;
* a **fill against a past open** executes a late live decision (reason ``signal``): paper
  trading fills it at the open of the bar after the decision's bar, as the backtest does, but
  that open (the decision bar's close) had passed by more than the decision's latency when the
  decision was made; a live order could not have had it;
* **slippage against the next open** is, per signal fill, ``side * (price / open - 1)`` in
  basis points against the stored open of its bar (positive: worse than the open). Paper fills
  pay the configured ``slippage_bps`` on the open they saw; a revised open shows as a
  difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from candela.cli.live.records import BotRecords

RESTART_EVENTS = ("started", "restarted")


@dataclass(frozen=True)
class LateRun:
    """Consecutive late live decisions and why they were late.

    Attributes
    ----------
    first_ts, last_ts : int
        Close times of the first and last bar decided late.
    decisions : int
    longest_ms : float
        The largest latency in the run.
    cause : str
        ``restart`` (the runner was down: a restart gap), ``stopped`` (the bot was stopped from
        the command line or the monitor), ``startup`` (the bot's first decisions, while its
        runner was starting) or ``slow``.
    down_from, down_to : float
        The restart gap or the stop: from the last decision before the run (or the stop
        request) to the runner's start (or the start request); ``nan`` for ``slow``.
    crashed : bool
        A crash was recorded inside the gap.
    """

    first_ts: int
    last_ts: int
    decisions: int
    longest_ms: float
    cause: str
    down_from: float = math.nan
    down_to: float = math.nan
    crashed: bool = False


@dataclass(frozen=True)
class PastOpenFill:
    """A signal fill executing a decision made ``late_ms`` after its bar was stored."""

    bar_ts: int
    ts: int
    side: str
    price: float
    decision_ts: int
    decided_at: float
    late_ms: float


@dataclass
class Service:
    """Timeliness and slippage of one bot (see the module docstring for the definitions)."""

    on_time_ms: int
    decisions: int
    live: int = 0
    on_time: int = 0
    latency_ms: np.ndarray = field(default_factory=lambda: np.empty(0))
    bar_delay_ms: np.ndarray = field(default_factory=lambda: np.empty(0))
    late_runs: list[LateRun] = field(default_factory=list)
    past_open_fills: list[PastOpenFill] = field(default_factory=list)
    slippage_bps: np.ndarray = field(default_factory=lambda: np.empty(0))
    slippage_bar_ts: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    configured_slippage_bps: float = 0.0

    @property
    def on_time_share(self) -> float:
        """On-time live decisions / live decisions (``nan`` without live decisions)."""
        return self.on_time / self.live if self.live else math.nan

    @property
    def off_configured(self) -> np.ndarray:
        """Close times of the signal fills whose slippage against the stored open is not the
        configured one (to 1e-6 bp)."""
        off = np.abs(self.slippage_bps - self.configured_slippage_bps) > 1e-6
        return self.slippage_bar_ts[off]


def service_statistics(records: BotRecords, on_time_ms: int = 5_000) -> Service:
    """Compute :class:`Service` from a bot's records."""
    signals = records.signals
    service = Service(
        on_time_ms=int(on_time_ms),
        decisions=len(signals),
        configured_slippage_bps=float(records.config.costs.slippage_bps),
    )
    if signals.empty:
        return service
    bars = records.bars
    ts = signals["ts"].to_numpy(dtype=np.int64)
    made = signals["created_at"].to_numpy(dtype=np.float64)
    first_stored = bars["first_stored_at"].reindex(ts).to_numpy(dtype=np.float64)
    known = ~np.isnan(first_stored)
    available = np.where(known, first_stored, ts.astype(np.float64))
    live = available >= records.registered_at
    latency = made - available
    late = live & (latency > on_time_ms)
    service.live = int(live.sum())
    service.on_time = int((live & ~late).sum())
    service.latency_ms = latency[live]
    service.bar_delay_ms = (first_stored - ts)[live & known]
    service.late_runs = _late_runs(records, ts, made, latency, late)
    service.past_open_fills = _past_open_fills(records, ts, made, latency, late)
    service.slippage_bps, service.slippage_bar_ts = _slippage(records)
    return service


def _late_runs(records: BotRecords, ts, made, latency, late) -> list[LateRun]:
    """Runs of consecutive late decisions, each explained by the bot's events in between."""
    runs = []
    index = 0
    while index < len(ts):
        if not late[index]:
            index += 1
            continue
        end = index
        while end + 1 < len(ts) and late[end + 1]:
            end += 1
        # since the decision before the run (or the bot's registration) until the run's last one
        since = float(made[index - 1]) if index > 0 else float(records.registered_at)
        run = LateRun(
            int(ts[index]),
            int(ts[end]),
            end - index + 1,
            float(latency[index : end + 1].max()),
            "slow" if index else "startup",
        )
        runs.append(run if index == 0 else _explained(records.events, since, float(made[end]), run))
        index = end + 1
    return runs


def _explained(events, since: float, until: float, run: LateRun) -> LateRun:
    """``run`` with its cause: a stop from the command line, else a runner start, else slow."""
    inside = events[(events["ts"] > since) & (events["ts"] <= until)]
    starts = inside.loc[inside["event"].isin(RESTART_EVENTS), "ts"]
    stops = inside.loc[inside["event"] == "stop_requested", "ts"]
    crashed = bool((inside["event"] == "crashed").any())
    if len(stops):
        stopped = float(stops.iloc[0])
        resumed = inside.loc[
            (inside["event"] == "start_requested") & (inside["ts"] >= stopped), "ts"
        ]
        back = resumed if len(resumed) else starts
        down_to = float(back.iloc[0]) if len(back) else math.nan
        return replace(run, cause="stopped", down_from=stopped, down_to=down_to, crashed=crashed)
    if len(starts):
        return replace(
            run, cause="restart", down_from=since, down_to=float(starts.iloc[-1]), crashed=crashed
        )
    return run


def _past_open_fills(records: BotRecords, ts, made, latency, late) -> list[PastOpenFill]:
    found = []
    for fill in records.trades.itertuples(index=False):
        if fill.reason != "signal":
            continue
        position = int(np.searchsorted(ts, int(fill.bar_ts))) - 1  # the decision it executes
        if position >= 0 and late[position]:
            found.append(
                PastOpenFill(
                    int(fill.bar_ts),
                    int(fill.ts),
                    str(fill.side),
                    float(fill.price),
                    int(ts[position]),
                    float(made[position]),
                    float(latency[position]),
                )
            )
    return found


def _slippage(records: BotRecords) -> tuple[np.ndarray, np.ndarray]:
    trades = records.trades
    fills = trades[trades["reason"] == "signal"]
    fills = fills[fills["bar_ts"].isin(records.bars.index)]
    if fills.empty:
        return np.empty(0), np.empty(0, dtype=np.int64)
    opens = records.bars["open"].reindex(fills["bar_ts"]).to_numpy(dtype=np.float64)
    side = np.where(fills["side"].to_numpy() == "buy", 1.0, -1.0)
    bps = side * (fills["price"].to_numpy(dtype=np.float64) / opens - 1.0) * 1e4
    return bps, fills["bar_ts"].to_numpy(dtype=np.int64)
