"""The bots of one market, advanced together: batched transactions, one publish per commit.

When a ``market:`` message (or the poll interval) wakes a market, the runner runs one **pass**
of its :class:`MarketGroup` in a worker thread. A pass repeats **rounds** until no member has a
stored bar left to process:

1. every member without pending bars gets the next ones after its cursor from the market's
   shared :class:`~runner.market_data.MarketFeed` (one database read for the whole group when a
   new bar arrived), or from the database itself if it lags behind the feed's memory;
2. every member with a pending bar prepares its next one (:meth:`runner.bot.Bot.prepare`:
   decision on its history window, fill with ``step`` from its state) and takes the new state at once,
   so that its next bar continues from it; the bar's records wait in the group's **batch**. A
   member whose strategy raises leaves the group with its error once the batch is committed
   (its bars before the failing one included); the others go on. In a replay
   (``follow=False``) a round prepares a **block** of each member's pending bars instead, up
   to the rounds left in the batch, with one strategy evaluation
   (:meth:`runner.bot.Bot.prepare_block`, :mod:`runner.block`): the same records as that
   many single rounds;
3. the batch is committed in ONE transaction (:func:`runner.ledger.write_bars`: each bot's
   signals, fills, equity snapshots and final state, all or nothing per bot, exactly once per
   (bot, bar) by a compare-and-set on the bot's stored cursor) when it holds ``batch_bars``
   rounds, when its oldest bar waited ``batch_seconds``, when a member leaves or must reload,
   when no bar is left, and (following live bars) as soon as a member has processed the newest
   bar it knows of: a live bar is never held back;
4. only after the commit do the batch's messages go out, in bar order, in one
   :meth:`publish_many`. A bot whose cursor had moved (a retry, another runner) wrote nothing:
   it reloads its state from the database (:meth:`~runner.bot.Bot.recover`).

**A crash inside a batch** (the process killed, the database unreachable, the commit failing)
loses only the batch's uncommitted work: nothing of it is in the database and nothing of it was
published (step 4 follows the commit), each bot's cursor is still its last committed bar, and
the restarted bots process those bars again from there, with the same results. If reading or
committing fails, the pass raises, and the runner hands the error to every member, which
recovers from the database before it rejoins. A bot that lags (restarted, started late)
advances one bar per round next to the others. In a replay (``follow=False``) every member
leaves once no bar is left for it.

A pass and the members it holds belong to one worker thread at a time (the runner runs one pass
per group at once); :meth:`MarketGroup.join` is the only method other threads call.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from itertools import islice

from sqlalchemy import Connection

from runner.block import PreparedBlock
from runner.bot import RELOAD, Bot, PreparedBar
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


BATCH_BARS = 500
"""Default most rounds (bars of each bot) committed in one transaction."""

BATCH_SECONDS = 0.25
"""Default longest time a processed bar waits for its batch's commit, in seconds."""


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
        Held around each batch's transaction. SQLite has one writer at a time and its busy
        handler sleeps, so the runner gives all its groups one lock there; PostgreSQL needs none.
    batch_bars : int
        Most rounds committed in one transaction (1: every bar its own transaction).
    batch_seconds : float
        Longest time the oldest bar of a batch waits for the commit.
    writer : callable, optional
        ``writer()`` returns a database connection for the calling thread (like
        :meth:`runner.bot.ThreadConnections.get`). When given, a full batch is committed by the
        group's own writer thread while the next batch is being decided (at most one commit in
        flight; the next batch's commit waits for it, and only then are the earlier batch's
        messages published). Without it every commit happens in the pass's thread.
    on_commit : callable, optional
        ``on_commit({bot_id: bars written}, fills written)`` after every commit (progress).
    """

    def __init__(
        self,
        feed: MarketFeed,
        publish_many: Callable[[Iterable[tuple[str, dict]]], None],
        *,
        follow: bool = True,
        until_ts: int | None = None,
        chunk: int = 2000,
        write_lock: AbstractContextManager | None = None,
        batch_bars: int = BATCH_BARS,
        batch_seconds: float = BATCH_SECONDS,
        writer: Callable[[], Connection] | None = None,
        on_commit: Callable[[dict[str, int], int], None] | None = None,
    ) -> None:
        if batch_bars < 1:
            raise ValueError(f"batch_bars must be at least 1, got {batch_bars}")
        self.feed = feed
        self.publish_many = publish_many
        self.follow = follow
        self.until_ts = until_ts
        self.chunk = chunk
        self.write_lock = write_lock if write_lock is not None else nullcontext()
        self.batch_bars = batch_bars
        self.batch_seconds = batch_seconds
        self.on_commit = on_commit
        self.notified_at = -math.inf
        """``time.monotonic()`` of the latest ``market:`` message (set by the runner)."""
        self.members: list[Member] = []
        self._joining: deque[Member] = deque()
        self._batch: list[tuple[Member, PreparedBar | PreparedBlock]] = []
        self._rounds = 0
        self._batch_started = 0.0
        self._writer = writer
        self._writer_thread: ThreadPoolExecutor | None = None
        self._in_flight: tuple[list[tuple[Member, PreparedBar]], Future] | None = None

    def join(self, member: Member) -> None:
        """Add ``member`` before the next round (thread-safe); the caller wakes the runner's pass."""
        self._joining.append(member)

    @property
    def idle(self) -> bool:
        """No member and nobody joining: a pass would have nothing to do."""
        return not self.members and not self._joining

    def close(self) -> None:
        """Stop the writer thread (after the last pass)."""
        if self._writer_thread is not None:
            self._writer_thread.shutdown(wait=True)
            self._writer_thread = None

    def run_pass(self, connection: Connection) -> None:
        """Advance every member until no stored bar is left for any of them.

        ``connection`` is the calling thread's own (not in a transaction). Database errors
        propagate, with the uncommitted work dropped (then call :meth:`fail_all`); a member's
        own failure only ends that member.
        """
        started = (
            time.monotonic()
        )  # a read that starts after this includes every bar announced so far
        try:
            while True:
                self._admit(connection)
                fresh_since = max(started, self.notified_at)
                batch = [
                    member
                    for member in self.members
                    if self._has_next(connection, member, fresh_since)
                ]
                if not batch:
                    if self._joining:
                        continue
                    self._commit(connection)
                    if not self.follow:
                        for member in list(self.members):
                            self._leave(member, None)
                    return
                if self.follow:
                    self._round(connection, batch)
                else:
                    self._round_blocks(connection, batch)
                if self._due(batch):
                    # a full batch while catching up goes to the writer; a live bar is answered now
                    self._commit(connection, wait=self.follow and any(not m.pending for m in batch))
        except BaseException:
            self._abandon()
            raise

    def fail_all(self, error: BaseException) -> None:
        """Make every member leave with ``error`` (after a pass raised it)."""
        self._abandon()
        for member in list(self.members):
            self._leave(member, error)

    def _admit(self, connection: Connection) -> None:
        while self._joining:
            self.members.append(self._joining.popleft())
        stopping = [member for member in self.members if member.should_stop()]
        if stopping:
            self._commit(connection)  # a stopping bot's processed bars are committed first
            for member in stopping:
                self._leave(member, None)

    def _has_next(self, connection: Connection, member: Member, fresh_since: float) -> bool:
        """Whether ``member`` has a bar to process, reading the next ones if it has none pending."""
        if not member.pending:
            after = member.bot.after
            rows = self.feed.bars_after(
                connection, after, fresh_since=fresh_since, until_ts=self.until_ts, limit=self.chunk
            )
            if rows is None:  # behind the feed's memory: read on its own
                rows = bars_after(
                    connection, self.feed.market, after, until_ts=self.until_ts, limit=self.chunk
                )
            if connection.in_transaction():
                connection.rollback()  # end the read transaction before the batch's write
            member.pending.extend(rows)
        return bool(member.pending)

    def _round(self, connection: Connection, batch: list[Member]) -> None:
        """Prepare the next bar of every member of ``batch`` into the uncommitted batch."""
        if not self._batch:
            self._batch_started = time.monotonic()
        for member in batch:
            if not member.pending:  # it left, or reloaded, during this round
                continue
            try:
                prepared = member.bot.prepare(member.pending.popleft())
            except Exception as exc:  # noqa: BLE001 - one bot's failure must not stop the others
                self._commit(connection)  # its bars before this one are kept
                self._leave(member, exc)
                continue
            if prepared is None:  # the state is past this bar: the database wins
                self._commit(connection)
                self._reload(connection, member)
                continue
            member.bot.adopt(prepared)  # its next bar continues from here; undone unless committed
            self._batch.append((member, prepared))
        self._rounds += 1

    def _round_blocks(self, connection: Connection, batch: list[Member]) -> None:
        """Replay: prepare a block of bars of every member of ``batch`` (up to the rounds left
        in the batch) with one strategy evaluation each (:meth:`runner.bot.Bot.prepare_block`).

        What the block gives is what as many :meth:`_round` would, member by member: the same
        records, a failing strategy leaving after its bars before the failing one are
        committed, a bot past a bar reloading.
        """
        if not self._batch:
            self._batch_started = time.monotonic()
        room = max(self.batch_bars - self._rounds, 1)
        advanced = 0
        for member in batch:
            if not member.pending:  # it left, or reloaded, during this round
                continue
            rows = list(islice(member.pending, room))
            prepared, stop = member.bot.prepare_block(rows, member.pending)
            done = sum(part.bars for part in prepared)
            for _ in range(done):
                member.pending.popleft()
            self._batch.extend((member, part) for part in prepared)
            advanced = max(advanced, done)
            if stop is RELOAD:  # the state is past a bar: the database wins
                self._commit(connection)
                self._reload(connection, member)
            elif stop is not None:
                member.pending.popleft()  # the failing bar
                self._commit(connection)  # its bars before this one are kept
                self._leave(member, stop)
        self._rounds += max(advanced, 1)

    def _due(self, batch: list[Member]) -> bool:
        """Whether the batch should be committed now (see the module docstring, step 3)."""
        waited = time.monotonic() - self._batch_started
        if self._rounds >= self.batch_bars or waited >= self.batch_seconds:
            return True
        return self.follow and any(not member.pending for member in batch)

    # ------------------------------------------------------------------ commits

    def _commit(self, connection: Connection, *, wait: bool = True) -> None:
        """Commit the batch, publish its messages and reload the bots that were refused.

        With ``wait=False`` and a writer, the commit is handed to the writer thread and settled
        by the next call. Either way the batch in flight before is settled first.
        """
        self._settle(connection)
        batch, self._batch, self._rounds = self._batch, [], 0
        if not batch:
            return
        records = [prepared.record for _, prepared in batch]
        if wait or self._writer is None:
            try:
                written = self._write(connection, records)
            except BaseException:
                self._batch = batch  # dropped by run_pass's handler
                raise
            self._committed(connection, batch, written)
            return
        if self._writer_thread is None:
            self._writer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bot-writer")
        self._in_flight = (batch, self._writer_thread.submit(self._write_in_thread, records))

    def _write(self, connection: Connection, records: list) -> set[str]:
        with self.write_lock:
            return write_bars(connection, records)

    def _write_in_thread(self, records: list) -> set[str]:
        connection = self._writer()
        try:
            return self._write(connection, records)
        except BaseException:
            connection.invalidate()  # after an error the connection may be broken
            raise

    def _settle(self, connection: Connection) -> None:
        """Wait for the commit in flight (raising its error) and finish it."""
        if self._in_flight is None:
            return
        batch, future = self._in_flight
        self._in_flight = None
        try:
            written = future.result()
        except BaseException:
            _drop(batch)
            raise
        self._committed(connection, batch, written)

    def _committed(self, connection: Connection, batch: list, written: set[str]) -> None:
        """After the commit of ``batch``: publish the written bots' messages, reload the others."""
        messages, refused, counts, fills = [], {}, {}, 0
        for member, prepared in batch:
            bot_id = prepared.record.bot_id
            if bot_id in written:
                messages.extend(member.bot.messages(prepared))
                counts[bot_id] = counts.get(bot_id, 0) + prepared.bars
                fills += len(prepared.record.trades)
            else:  # its cursor had moved (a retry, another runner): the database wins
                member.bot.bars_processed -= prepared.bars
                refused[bot_id] = member
        if messages:
            self.publish_many(messages)
        if self.on_commit is not None and counts:
            self.on_commit(counts, fills)
        for member in refused.values():
            self._reload(connection, member)

    def _abandon(self) -> None:
        """After an error: settle the commit in flight (publishing it if it went through) and
        forget the uncommitted batch (its bots are stale now: they recover before going on)."""
        if self._in_flight is not None:
            batch, future = self._in_flight
            self._in_flight = None
            try:
                written = future.result()
            except BaseException:  # noqa: BLE001 - the error being raised already says enough
                _drop(batch)
            else:
                self.publish_many(
                    [
                        message
                        for member, prepared in batch
                        if prepared.record.bot_id in written
                        for message in member.bot.messages(prepared)
                    ]
                )
        _drop(self._batch)
        self._batch, self._rounds = [], 0

    def _reload(self, connection: Connection, member: Member) -> None:
        """Reload ``member`` from the database, forgetting its uncommitted bars."""
        mine = [entry for entry in self._batch if entry[0] is member]
        if mine:
            _drop(mine)
            self._batch = [entry for entry in self._batch if entry[0] is not member]
        member.pending.clear()
        member.bot.recover(connection, member.bot.begin_ts)
        if connection.in_transaction():
            connection.rollback()

    def _leave(self, member: Member, error: BaseException | None) -> None:
        self.members.remove(member)
        member.pending.clear()
        member.on_leave(error)


def _drop(batch: list[tuple[Member, PreparedBar]]) -> None:
    """Undo the provisional count of ``batch``'s bars (they were not committed)."""
    for member, prepared in batch:
        member.bot.bars_processed -= prepared.bars
