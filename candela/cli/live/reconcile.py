"""Paper against backtest, fill by fill, each difference with its cause (`candela bots reconcile`).

:func:`reconcile` compares the fills a bot recorded with the backtest of its stored config on
the bars stored **now** over the same span (its first to its last decision, with the history
window before), and explains each difference by a counterfactual chain of backtests:

1. **the bars the bot consumed**: every bar it decided at, as stored when it decided
   (:meth:`~candela.cli.live.records.BotRecords.version_at`), and the history bars stored by
   its first decision. The backtest of its config on them must give its recorded decisions and
   fills: this is the parity contract (docs/architecture.md §3). A decision that differs was
   made by other strategy code (``signals.strategy_hash``) or another config
   (``signals.config_hash``); if neither changed, the difference is *unexplained* and a bug.
2. **one bar event at a time**, in close-time order, until the bars are the stored ones:

   * ``revised``: a bar the bot consumed was revised after its decision (the stored values
     differ from the ones it used; see ``store_bars(..., revise=True)``);
   * ``late``: a bar the bot never decided at, stored only after the bot had passed it
     (decided a later bar): its decisions around it lacked it;
   * ``missed``: a bar the bot never decided at although it was stored before the bot passed
     it (or when its storage time was not recorded);
   * ``removed``: a bar the bot decided at that is no longer stored (the chain's last step
     leaves it out).

   Each step is a backtest; the fills a step changes are caused by its event (and everything
   that follows from them: a changed decision shifts the fills after it).

A difference is a fill present on one side only, or present on both with another side,
reason, size, price or fee (compared exactly: the same bars and config give the same fills
bit for bit). Each carries every cause that changed it along the chain, and a primary one: the
last that changed the trade itself (presence, side, reason, price); a fill that differs only
in size and fee (a *knock-on*: the equity differs since an earlier difference) goes with the
first cause that changed it. Timeliness
(late decisions, restart gaps, fills against a past open, slippage against the next open) is
:mod:`candela.cli.live.service`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from candela.cli.live.records import VALUES, BotRecords
from candela.cli.live.service import Service, service_statistics

COMPARED = ("side", "reason", "size", "price", "fee")
"""Fill fields that must be equal for a paper fill and a backtest fill to match."""

ESSENTIAL = ("side", "reason", "price")
"""Fill fields whose difference is a different trade; a difference in size and fee alone
follows from a different equity (an earlier difference), see :attr:`FillDifference.knock_on`."""

MAX_STEPS = 200
"""Most backtests in the chain; more bar events are grouped into consecutive runs."""


@dataclass(frozen=True)
class BarEvent:
    """A bar that differs between what the bot consumed and what is stored now.

    Attributes
    ----------
    ts : int
        The bar's close time.
    kind : str
        ``revised``, ``late``, ``missed`` or ``removed`` (see the module docstring).
    moment : float
        When the bot used the bar (its decision at it, or at its first decision for a history
        bar), or, for a bar it never decided at, when it passed it (its decision at the next
        bar); ``nan`` if it never did.
    stored_at : float
        When the stored version was stored (``revised``: when the revision happened; ``late``
        and ``missed``: when the bar was first stored); ``nan`` if not recorded.
    used, stored : tuple of float or None
        ``(open, high, low, close, volume)`` the bot used and the stored ones (``None``: absent).
    """

    ts: int
    kind: str
    moment: float
    stored_at: float
    used: tuple | None
    stored: tuple | None

    @property
    def changed(self) -> list[tuple[str, float, float]]:
        """``(field, used, stored)`` of each value a revision changed."""
        if self.used is None or self.stored is None:
            return []
        return [
            (name, a, b)
            for name, a, b in zip(VALUES, self.used, self.stored, strict=True)
            if a != b
        ]


@dataclass(frozen=True)
class DecisionMismatch:
    """A decision of the bot that its config's backtest, on the bars it consumed, does not give.

    ``kind`` is ``strategy_changed`` (the decision's ``strategy_hash`` differs from today's
    strategy source), ``config_changed`` (its ``config_hash`` differs from the stored config's)
    or ``unexplained``; ``unexplained_fill`` marks a fill that differs although every decision
    before it agrees (``ts`` is then the fill's bar).
    """

    ts: int
    kind: str
    paper: float
    backtest: float
    recorded_hash: str | None
    current_hash: str | None


Cause = BarEvent | DecisionMismatch


@dataclass
class FillDifference:
    """One fill that differs: on one side only, or on both with other values."""

    bar_ts: int
    seq: int
    paper: dict | None
    backtest: dict | None
    causes: list[Cause] = field(default_factory=list)
    """Every cause that changed this fill along the chain, in chain order."""
    primary: Cause | None = None
    """The cause to show it under: the last one that changed its presence, side, reason or
    price; for a :attr:`knock_on` difference, the first one that changed it."""

    @property
    def kind(self) -> str:
        """``paper only``, ``backtest only`` or ``different``."""
        if self.backtest is None:
            return "paper only"
        return "backtest only" if self.paper is None else "different"

    @property
    def knock_on(self) -> bool:
        """The same trade on both sides (side, reason, price), another size or fee: the account's
        equity differs because of an earlier difference."""
        return self.kind == "different" and _same(self.paper, self.backtest, ESSENTIAL)


@dataclass
class Reconciliation:
    """The result of :func:`reconcile`; :func:`candela.cli.live.text.reconciliation_text` shows it.

    Attributes
    ----------
    records : BotRecords
    paper_fills, backtest_fills : list of dict
        Recorded fills, and the fills of the backtest on the stored bars (same keys as the
        ``trades`` table).
    differences : list of FillDifference
        In fill order.
    mismatches : list of DecisionMismatch
        Decisions the backtest on the consumed bars does not reproduce.
    events : list of BarEvent
        In close-time order.
    service : Service
    steps : int
        Backtests run along the chain (after the one on the consumed bars).
    """

    records: BotRecords
    paper_fills: list[dict]
    backtest_fills: list[dict]
    differences: list[FillDifference]
    mismatches: list[DecisionMismatch]
    events: list[BarEvent]
    service: Service
    steps: int = 0

    @property
    def agrees(self) -> bool:
        """No fill differs, no decision differs, and no bar differs from what the bot used."""
        return not (self.differences or self.mismatches or self.events)


def reconcile(
    records: BotRecords, *, on_time_ms: int = 5_000, backtest: Callable | None = None
) -> Reconciliation:
    """Reconcile a bot's records (:func:`~candela.cli.live.records.load_records`).

    Parameters
    ----------
    records : BotRecords
    on_time_ms : int
        A decision made within this many ms of its bar being stored is on time
        (:func:`~candela.cli.live.service.service_statistics`).
    backtest : callable, optional
        ``backtest(bars, start_ts) -> Result`` of the bot's config; default
        :func:`candela.cli.strategy_model.backtest_from` with the config's strategy, params,
        costs, stops, risk and cash (what ``candela backtest --bot`` runs).
    """
    run = backtest or _config_backtest(records.config)
    signals = records.signals
    paper = [_fill(row) for row in records.trades.to_dict("records")]
    if signals.empty:
        return Reconciliation(
            records, paper, [], [], [], [], service_statistics(records, on_time_ms)
        )
    start = int(signals["ts"].iloc[0])
    table, events = _consumed_bars(records)
    tf = records.timeframe_ms

    first = run(table.bars(tf), start)
    mismatches = _mismatches(records, first)
    chain = [_keyed(first, tf)]
    steps = _groups([event for event in events if event.kind != "removed"])
    removed = [event for event in events if event.kind == "removed"]
    if removed:  # last: the chain cannot rebuild them, it leaves them out
        steps.append(removed)
    for group in steps:
        for event in group:
            table.set(event.ts, event.stored)
        chain.append(_keyed(run(table.bars(tf), start), tf))
    final = chain[-1]
    recorded = {(fill["bar_ts"], seq): fill for fill, seq in _sequence(paper)}
    differences = []
    for key in sorted(set(recorded) | set(final)):
        mine, theirs = recorded.get(key), final.get(key)
        if _same(mine, theirs):
            continue
        difference = FillDifference(key[0], key[1], mine, theirs)
        essential: list[Cause] = []
        if not _same(mine, chain[0].get(key)):
            cause = _decision_cause(records, mismatches, key[0])
            difference.causes.append(cause)
            if not _same(mine, chain[0].get(key), ESSENTIAL):
                essential.append(cause)
        for index, group in enumerate(steps, start=1):
            before, after = chain[index - 1].get(key), chain[index].get(key)
            if not _same(before, after):
                difference.causes.extend(event for event in group if event not in difference.causes)
                if not _same(before, after, ESSENTIAL):
                    essential.extend(group)
        if difference.causes:
            difference.primary = (
                difference.causes[0] if difference.knock_on or not essential else essential[-1]
            )
        differences.append(difference)
    return Reconciliation(
        records,
        paper,
        list(final.values()),
        differences,
        mismatches,
        events,
        service_statistics(records, on_time_ms),
        steps=len(steps),
    )


# --------------------------------------------------------------------------- the bars consumed


class _BarTable:
    """Every bar of the span in close-time order: its values and whether it is in the set.

    The chain of backtests changes one bar at a time (:meth:`set`) and reads the set as
    :class:`~research.types.Bars` (:meth:`bars`) without rebuilding it from scratch.
    """

    def __init__(self, ts: np.ndarray, values: np.ndarray, present: np.ndarray) -> None:
        self.ts, self.values, self.present = ts, values, present

    def set(self, ts: int, values: tuple | None) -> None:
        """Put bar ``ts`` in the set with ``values``, or take it out (``None``)."""
        index = int(np.searchsorted(self.ts, ts))
        self.present[index] = values is not None
        if values is not None:
            self.values[index] = values

    def bars(self, timeframe_ms: int):
        from research.types import Bars

        columns = self.values[self.present]
        return Bars(
            self.ts[self.present],
            *(np.ascontiguousarray(columns[:, i]) for i in range(len(VALUES))),
            timeframe_ms,
        )


def _consumed_bars(records: BotRecords) -> tuple[_BarTable, list[BarEvent]]:
    """The bars as the bot consumed them, and every bar event (module docstring).

    Vectorized for the common bar (never revised, stored before the bot used it); bars with
    revisions, bars stored after the bot passed them and bars no longer stored go one by one.
    """
    signals, bars = records.signals, records.bars
    decided = signals["ts"].to_numpy(dtype=np.int64)
    made = signals["created_at"].to_numpy(dtype=np.float64)
    stored_ts = bars.index.to_numpy(dtype=np.int64)
    revised_ts = records.revisions["ts"].to_numpy(dtype=np.int64)
    ts = np.union1d(stored_ts, np.union1d(revised_ts, decided))
    stored = np.isin(ts, stored_ts)
    values = np.full((len(ts), len(VALUES)), np.nan)
    values[stored] = bars[list(VALUES)].to_numpy(dtype=np.float64)
    first_stored = np.full(len(ts), np.nan)
    first_stored[stored] = bars["first_stored_at"].to_numpy(dtype=np.float64)
    # when the bot used each bar: its decision at it; the first decision for the history
    # before; for a bar it never decided at, its decision at the next bar (nan: none)
    position = np.searchsorted(decided, ts)
    clipped = np.minimum(position, len(decided) - 1)
    at_bar = decided[clipped] == ts
    moment = np.where(position < len(decided), made[clipped], np.nan)
    moment = np.where(ts < decided[0], made[0], moment)
    simple = stored & ~np.isin(ts, revised_ts) & ~np.isnan(moment)
    there = at_bar | np.isnan(first_stored) | (first_stored <= moment)
    present = simple & there
    events: list[BarEvent] = []
    for index in np.flatnonzero((simple & ~there) | (~simple & ~np.isnan(moment))):
        bar_ts, when = int(ts[index]), float(moment[index])
        now = tuple(values[index].tolist()) if stored[index] else None
        if at_bar[index]:  # it decided at it, so the bar was there: which version?
            used = _version_used(records, bar_ts, when)
        else:
            used = records.version_at(bar_ts, when)
        if used is not None:
            present[index] = True
            values[index] = used
        if at_bar[index] and (used is None or now is None):
            events.append(BarEvent(bar_ts, "removed", when, math.nan, used, now))
        elif used is not None and now is not None and used != now:
            events.append(
                BarEvent(bar_ts, "revised", when, _revised_at(records, bar_ts, when), used, now)
            )
        elif used is None and now is not None:
            stored_at = float(first_stored[index])
            kind = "late" if not math.isnan(stored_at) and stored_at > when else "missed"
            events.append(BarEvent(bar_ts, kind, when, stored_at, None, now))
    return _BarTable(ts, values, present), events


def _version_used(records: BotRecords, ts: int, moment: float) -> tuple | None:
    """The version of bar ``ts`` current at ``moment`` (the first not replaced by then, whatever
    its storage time says: clocks of two machines may differ), ``None`` if none is known."""
    chain = records.versions(ts)
    for values, _stored, replaced in chain:
        if replaced > moment:
            return values
    return None


def _revised_at(records: BotRecords, ts: int, moment: float) -> float:
    """When the version the bot used was replaced (the first revision after ``moment``)."""
    for _values, _stored, replaced in records.versions(ts):
        if replaced > moment:
            return replaced
    return math.nan


def _groups(events: Sequence[BarEvent]) -> list[list[BarEvent]]:
    """The events as at most :data:`MAX_STEPS` runs of consecutive events."""
    if len(events) <= MAX_STEPS:
        return [[event] for event in events]
    size = math.ceil(len(events) / MAX_STEPS)
    return [list(events[i : i + size]) for i in range(0, len(events), size)]


# --------------------------------------------------------------------------- fills and decisions


def _config_backtest(config) -> Callable:
    from candela.cli import strategy_model

    spec = config.spec

    def run(bars, start_ts):
        return strategy_model.backtest_from(
            spec,
            bars,
            config.params,
            config.costs,
            stops=config.stops,
            risk=config.risk,
            initial_cash=config.initial_cash,
            start_ts=start_ts,
        )

    return run


def _fill(row: dict) -> dict:
    fill = {
        name: row[name]
        for name in (
            "bar_ts",
            "ts",
            "side",
            "size",
            "price",
            "fee",
            "reason",
            "realized_pnl",
            "cash_after",
            "position_after",
        )
    }
    for name in ("bar_ts", "ts"):
        fill[name] = int(fill[name])
    return fill


def _sequence(fills: list[dict]):
    """``(fill, its order within its bar)``."""
    previous, seq = None, 0
    for fill in fills:
        seq = seq + 1 if fill["bar_ts"] == previous else 0
        previous = fill["bar_ts"]
        yield fill, seq


def _keyed(result, timeframe_ms: int) -> dict[tuple[int, int], dict]:
    from research.kernels.records import fill_rows

    rows = [_fill(row) for row in fill_rows(result.fill_rows, timeframe_ms)]
    return {(fill["bar_ts"], seq): fill for fill, seq in _sequence(rows)}


def _same(a: dict | None, b: dict | None, fields: Sequence[str] = COMPARED) -> bool:
    if a is None or b is None:
        return a is b
    return all(a[name] == b[name] for name in fields)


def _mismatches(records: BotRecords, result) -> list[DecisionMismatch]:
    """Decisions whose recorded target the backtest on the consumed bars does not give."""
    from runner.strategy_source import strategy_source_hash

    target = pd.Series(
        np.nan_to_num(result.target, nan=0.0), index=np.asarray(result.ts, dtype=np.int64)
    )
    strategy_hash = strategy_source_hash(records.config.spec)
    config_hash = records.config.config_hash
    found = []
    for row in records.signals.itertuples(index=False):
        backtest = float(target.get(int(row.ts), math.nan))
        if backtest == float(row.raw_target):
            continue
        if row.strategy_hash is not None and row.strategy_hash != strategy_hash:
            found.append(
                DecisionMismatch(
                    int(row.ts),
                    "strategy_changed",
                    float(row.raw_target),
                    backtest,
                    row.strategy_hash,
                    strategy_hash,
                )
            )
        elif row.config_hash is not None and row.config_hash != config_hash:
            found.append(
                DecisionMismatch(
                    int(row.ts),
                    "config_changed",
                    float(row.raw_target),
                    backtest,
                    row.config_hash,
                    config_hash,
                )
            )
        else:
            found.append(
                DecisionMismatch(
                    int(row.ts),
                    "unexplained",
                    float(row.raw_target),
                    backtest,
                    row.strategy_hash,
                    strategy_hash,
                )
            )
    return found


def _decision_cause(records: BotRecords, mismatches: list[DecisionMismatch], bar_ts: int) -> Cause:
    """Why a paper fill differs from the backtest on the consumed bars: the latest differing
    decision before its bar (a fill executes an earlier decision), else a config change seen in
    the hashes, else an unexplained fill (``kind`` ``unexplained_fill``)."""
    earlier = [mismatch for mismatch in mismatches if mismatch.ts < bar_ts]
    if earlier:
        return earlier[-1]
    signals = records.signals
    row = (
        signals[signals["ts"] <= bar_ts].iloc[-1]
        if (signals["ts"] <= bar_ts).any()
        else signals.iloc[0]
    )
    current = records.config.config_hash
    if row["config_hash"] is not None and row["config_hash"] != current:
        return DecisionMismatch(
            int(row["ts"]),
            "config_changed",
            float(row["raw_target"]),
            math.nan,
            row["config_hash"],
            current,
        )
    return DecisionMismatch(
        bar_ts, "unexplained_fill", math.nan, math.nan, row["config_hash"], current
    )
