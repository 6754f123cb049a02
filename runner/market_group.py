"""The bots of one market, advanced together: one transaction and one publish per round.

When a ``market:`` message (or the poll interval) wakes a market, the runner runs one **pass**
of its :class:`MarketGroup` in a worker thread. A pass repeats **rounds** until no member has a
stored bar left to process:

1. every member without pending bars gets the next ones after its cursor from the market's
   shared :class:`~runner.market_data.MarketFeed` (one database read for the whole group when a
   new bar arrived), or from the database itself if it lags behind the feed's memory;
2. every member with a pending bar prepares its next one (:meth:`runner.bot.Bot.prepare`:
   decision on the history window, fill with ``step`` from its state, which it keeps). A member
   whose strategy raises leaves the group with its error; the others go on;
3. the prepared bars, at most one per bot, are committed in ONE transaction
   (:func:`runner.ledger.write_bars`: each bot's signal, fills, state and equity atomically,
   exactly once per (bot, bar) by ``uq_signals_bot_ts``);
4. only after the commit do the written bots adopt their new state, and all their messages go
   out in one :meth:`publish_many` (one Redis round trip). A bot whose bar the database already
   held reloads its state from the database (:meth:`~runner.bot.Bot.recover`).

If reading or committing fails (the database is unreachable), nothing of the round was
written: the pass raises, and the runner hands the error to every member, which recovers from
the database before it rejoins. A bot that lags (restarted, started late) advances one bar per
round next to the others, so the bots that are up to date still answer a new bar in the first
round of a pass. In a replay (``follow=False``) every member leaves once no bar is left for it.

A pass and the members it holds belong to one worker thread at a time (the runner runs one pass
per group at once); :meth:`MarketGroup.join` is the only method other threads call.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from sqlalchemy import Connection

from runner.bot import Bot
from runner.ledger import write_bars
from runner.market_data import MarketFeed, bars_after


@dataclass(eq=False)
class Member:
    """A bot in a :class:`MarketGroup`.

    Attributes
    ----------
    bot : Bot
        Recovered (not stale) when it joins.
    should_stop : callable
        ``should_stop()`` is checked before every round; when true the bot leaves (its last
        bar is committed).
    on_leave : callable
        ``on_leave(error)`` is called once, from the pass's thread, when the bot leaves: with
        ``None`` when it stopped or (replay) finished, else with the exception that made it
        leave (its strategy's :class:`~runner.bot.StrategyError`, a database error...). The bot
        is then stale unless it left with ``None``.
    """

    bot: Bot
    should_stop: Callable[[], bool]
    on_leave: Callable[[BaseException | None], None]
    pending: deque = field(default_factory=deque)


class MarketGroup:
    """The bots of one market that process its bars together; see the module docstring.

    Parameters
    ----------
    feed : MarketFeed
        The market's shared reader of new bars.
    publish_many : callable
        ``publish_many([(channel, payload), ...])`` of the bus; called only after commits.
    follow : bool
        ``True`` (live): members stay when no bar is left; ``False`` (replay): they leave.
    until_ts : int, optional
        Bars with a later close time are not processed (the end of a replay).
    chunk : int
        Bars read from the database per query.
    write_lock : context manager, optional
        Held around each round's transaction. SQLite has one writer at a time and its busy
        handler sleeps, so the runner gives all its groups one lock there; PostgreSQL needs none.
    """

    def __init__(self, feed: MarketFeed, publish_many: Callable[[Iterable[tuple[str, dict]]], None], *,
                 follow: bool = True, until_ts: int | None = None, chunk: int = 2000,
                 write_lock: AbstractContextManager | None = None) -> None:
        self.feed = feed
        self.publish_many = publish_many
        self.follow = follow
        self.until_ts = until_ts
        self.chunk = chunk
        self.write_lock = write_lock if write_lock is not None else nullcontext()
        self.notified_at = -math.inf
        """``time.monotonic()`` of the latest ``market:`` message (set by the runner)."""
        self.members: list[Member] = []
        self._joining: deque[Member] = deque()

    def join(self, member: Member) -> None:
        """Add ``member`` before the next round (thread-safe); the caller wakes the runner's pass."""
        self._joining.append(member)

    @property
    def idle(self) -> bool:
        """No member and nobody joining: a pass would have nothing to do."""
        return not self.members and not self._joining

    def run_pass(self, connection: Connection) -> None:
        """Advance every member until no stored bar is left for any of them.

        ``connection`` is the calling thread's own (not in a transaction). Database errors
        propagate (then call :meth:`fail_all`); a member's own failure only ends that member.
        """
        started = time.monotonic()  # a read that starts after this includes every bar announced so far
        while True:
            self._admit()
            fresh_since = max(started, self.notified_at)
            batch = [member for member in self.members if self._has_next(connection, member, fresh_since)]
            if not batch:
                if self._joining:
                    continue
                if not self.follow:
                    for member in list(self.members):
                        self._leave(member, None)
                return
            self._round(connection, batch)

    def fail_all(self, error: BaseException) -> None:
        """Make every member leave with ``error`` (after a pass raised it)."""
        for member in list(self.members):
            self._leave(member, error)

    def _admit(self) -> None:
        while self._joining:
            self.members.append(self._joining.popleft())
        for member in list(self.members):
            if member.should_stop():
                self._leave(member, None)

    def _has_next(self, connection: Connection, member: Member, fresh_since: float) -> bool:
        """Whether ``member`` has a bar to process, reading the next ones if it has none pending."""
        if not member.pending:
            after = member.bot.after
            rows = self.feed.bars_after(connection, after, fresh_since=fresh_since, until_ts=self.until_ts,
                                        limit=self.chunk)
            if rows is None:  # behind the feed's memory: read on its own
                rows = bars_after(connection, self.feed.market, after, until_ts=self.until_ts, limit=self.chunk)
            if connection.in_transaction():
                connection.rollback()  # end the read transaction before the round's write
            member.pending.extend(rows)
        return bool(member.pending)

    def _round(self, connection: Connection, batch: list[Member]) -> None:
        """Prepare the next bar of every member of ``batch``, commit them together, then publish."""
        prepared = []
        reload = []
        for member in batch:
            try:
                bar = member.bot.prepare(member.pending.popleft())
            except Exception as exc:  # noqa: BLE001 - one bot's failure must not stop the others
                self._leave(member, exc)
                continue
            if bar is None:
                reload.append(member)
            else:
                prepared.append((member, bar))
        with self.write_lock:
            written = write_bars(connection, [bar.record for _, bar in prepared])
        messages = []
        for member, bar in prepared:
            if bar.record.bot_id in written:
                member.bot.adopt(bar)
                messages.extend(member.bot.messages(bar))
            else:  # recorded before (a retry, another runner): the database wins
                reload.append(member)
        if messages:
            self.publish_many(messages)
        for member in reload:
            member.pending.clear()
            member.bot.recover(connection, member.bot.begin_ts)
        if reload and connection.in_transaction():
            connection.rollback()

    def _leave(self, member: Member, error: BaseException | None) -> None:
        self.members.remove(member)
        member.pending.clear()
        member.on_leave(error)
