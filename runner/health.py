"""Conditions a live runner announces on ``system:events``: stalled markets, stale heartbeats,
bots left behind (docs/architecture.md §5, §6).

At every heartbeat a live runner (not a replay) calls :meth:`HealthWatch.check`, which looks at
the database and returns the messages of the conditions that **changed** since the last check:

``market_stalled`` / ``market_resumed``
    A market of the runner's bots whose newest stored bar is overdue: the wall clock is past
    ``newest close + timeframe + market_grace``, so the next bar should have been stored by now
    (the collector or the exchange stopped). Resumed when a newer bar is stored in time again.
``heartbeat_stale`` / ``heartbeat_resumed``
    A bot marked ``active`` in the database, hosted by **another** runner (or by none), whose
    heartbeat is older than ``stale_after``: its runner died, hangs, or lost its database.
    Bots that never had a heartbeat are not judged.
``bot_behind`` / ``bot_caught_up``
    A bot of this runner that has been behind its market's newest stored bar for longer than
    ``stale_after`` (it is catching up, or its strategy is stuck on a bar).

Payloads: ``{"event", "at" (wall clock ms), ...}`` with ``exchange``/``symbol``/``timeframe``,
``last_bar_ts``, ``overdue_ms`` and ``bots`` for markets; ``bot_id``, ``heartbeat_at``,
``age_ms`` for heartbeats; ``bot_id``, ``cursor_ts``, ``newest_ts``, ``bars_behind`` for bots.
Each change is also appended to ``bot_events`` for every bot it concerns (the event name,
the payload as JSON in ``detail``), so a monitor that starts later finds the conditions in
force: Redis notifies, the database remembers. A runner that restarts announces the
conditions in force again at its first check.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, func, select

from candela.core import schema
from candela.core.bus import SYSTEM_EVENTS
from candela.core.db import now_ms
from candela.core.timeframes import timeframe_to_ms
from runner.progress import count_bars_after

MARKET_EVENTS = ("market_stalled", "market_resumed")
HEARTBEAT_EVENTS = ("heartbeat_stale", "heartbeat_resumed")
BEHIND_EVENTS = ("bot_behind", "bot_caught_up")
CONDITION_EVENTS = MARKET_EVENTS + HEARTBEAT_EVENTS + BEHIND_EVENTS
"""Every event name :class:`HealthWatch` publishes (first of each pair: the condition starts)."""


@dataclass(frozen=True)
class HealthSettings:
    """Thresholds of :class:`HealthWatch` (milliseconds).

    Attributes
    ----------
    stale_after_ms : int
        A heartbeat older than this is stale; a bot behind its market for longer is behind.
    market_grace_ms : int
        How long past its due time (close of the newest bar + one timeframe) the next bar may
        take to be stored before the market counts as stalled.
    """

    stale_after_ms: int = 15_000
    market_grace_ms: int = 30_000

    @classmethod
    def for_heartbeat(cls, heartbeat_interval: float) -> HealthSettings:
        """Three heartbeats missed make a heartbeat stale (at least 15 s, as the default)."""
        return cls(stale_after_ms=max(int(3_000 * heartbeat_interval), 15_000))


class HealthWatch:
    """Track the conditions of the module docstring for one runner; see :meth:`check`.

    Parameters
    ----------
    engine : Engine
        The runner's database.
    markets : dict
        ``{(exchange, symbol, timeframe): [bot_id, ...]}``: the runner's bots by market.
    settings : HealthSettings
    clock : callable
        Wall clock in ms UTC.
    """

    def __init__(
        self,
        engine: Engine,
        markets: dict[tuple[str, str, str], list[str]],
        *,
        settings: HealthSettings = HealthSettings(),
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.engine = engine
        self.markets = {market: sorted(bots) for market, bots in markets.items()}
        self.hosted = {bot for bots in self.markets.values() for bot in bots}
        self.settings = settings
        self.clock = clock
        self.stalled: set[tuple[str, str, str]] = set()
        self.stale: set[str] = set()
        self.behind: set[str] = set()
        self._behind_since: dict[str, int] = {}

    def check(self, running: Iterable[str]) -> list[tuple[str, dict]]:
        """Look at the database now; record and return ``(channel, payload)`` of every change.

        ``running`` are the hosted bots following their market at the moment (the others are
        starting, backing off after a crash, or stopped: not judged as behind). Database errors
        propagate (the caller's heartbeat loop logs them and tries again later).
        """
        now = self.clock()
        running = set(running)
        with self.engine.connect() as connection:
            newest = {market: _newest_bar(connection, market) for market in self.markets}
            events = self._markets(now, newest)
            events += self._heartbeats(connection, now)
            events += self._behind(connection, now, running, newest)
        if events:
            self._record(events)
        return [(SYSTEM_EVENTS, event) for event in events]

    # ------------------------------------------------------------------ conditions

    def _markets(self, now: int, newest: dict) -> list[dict]:
        events = []
        for market, last in newest.items():
            if last is None:
                continue  # no bar at all: the runner reports its bots idle; nothing to time
            overdue = now - (last + timeframe_to_ms(market[2]) + self.settings.market_grace_ms)
            stalled = overdue > 0
            if stalled == (market in self.stalled):
                continue
            (self.stalled.add if stalled else self.stalled.discard)(market)
            exchange, symbol, timeframe = market
            events.append(
                dict(
                    event=MARKET_EVENTS[0] if stalled else MARKET_EVENTS[1],
                    at=now,
                    exchange=exchange,
                    symbol=symbol,
                    timeframe=timeframe,
                    last_bar_ts=last,
                    overdue_ms=max(overdue, 0),
                    bots=self.markets[market],
                )
            )
        return events

    def _heartbeats(self, connection: Connection, now: int) -> list[dict]:
        rows = connection.execute(
            select(schema.bots.c.bot_id, schema.bots.c.heartbeat_at).where(
                schema.bots.c.status == "active", schema.bots.c.heartbeat_at.is_not(None)
            )
        ).all()
        ages = {
            row.bot_id: (int(row.heartbeat_at), now - int(row.heartbeat_at))
            for row in rows
            if row.bot_id not in self.hosted
        }
        events = []
        for bot_id in sorted(set(ages) | self.stale):
            heartbeat_at, age = ages.get(bot_id, (None, None))
            stale = age is not None and age > self.settings.stale_after_ms
            if stale == (bot_id in self.stale):
                continue
            (self.stale.add if stale else self.stale.discard)(bot_id)
            events.append(
                dict(
                    event=HEARTBEAT_EVENTS[0] if stale else HEARTBEAT_EVENTS[1],
                    at=now,
                    bot_id=bot_id,
                    heartbeat_at=heartbeat_at,
                    age_ms=age,
                )
            )
        return events

    def _behind(
        self, connection: Connection, now: int, running: set[str], newest: dict
    ) -> list[dict]:
        cursors = dict(
            connection.execute(
                select(schema.bot_state.c.bot_id, schema.bot_state.c.cursor_ts).where(
                    schema.bot_state.c.bot_id.in_(sorted(self.hosted))
                )
            ).all()
        )
        events = []
        for market, bots in self.markets.items():
            last = newest[market]
            for bot_id in bots:
                cursor = cursors.get(bot_id)
                lagging = (
                    bot_id in running and last is not None and cursor is not None and cursor < last
                )
                if not lagging:
                    self._behind_since.pop(bot_id, None)
                    if bot_id in self.behind:
                        self.behind.discard(bot_id)
                        if bot_id in running:  # a bot that stopped has not caught up: no news
                            events.append(
                                dict(
                                    event=BEHIND_EVENTS[1],
                                    at=now,
                                    bot_id=bot_id,
                                    cursor_ts=cursor,
                                    newest_ts=last,
                                    bars_behind=0,
                                )
                            )
                    continue
                since = self._behind_since.setdefault(bot_id, now)
                if bot_id in self.behind or now - since <= self.settings.stale_after_ms:
                    continue
                self.behind.add(bot_id)
                events.append(
                    dict(
                        event=BEHIND_EVENTS[0],
                        at=now,
                        bot_id=bot_id,
                        cursor_ts=cursor,
                        newest_ts=last,
                        bars_behind=count_bars_after(connection, market, cursor, last),
                    )
                )
        return events

    # ------------------------------------------------------------------ records

    def _record(self, events: list[dict]) -> None:
        rows = []
        for event in events:
            bots = event["bots"] if "bots" in event else [event["bot_id"]]
            detail = json.dumps(event, sort_keys=True)
            rows += [
                dict(bot_id=bot_id, ts=event["at"], event=event["event"], detail=detail)
                for bot_id in bots
            ]
        with self.engine.begin() as connection:
            connection.execute(schema.bot_events.insert(), rows)


def _newest_bar(connection: Connection, market: tuple[str, str, str]) -> int | None:
    exchange, symbol, timeframe = market
    value = connection.execute(
        select(func.max(schema.ohlcv.c.ts)).where(
            schema.ohlcv.c.exchange == exchange,
            schema.ohlcv.c.symbol == symbol,
            schema.ohlcv.c.timeframe == timeframe,
        )
    ).scalar()
    return None if value is None else int(value)
