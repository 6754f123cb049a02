"""The runner process: an asyncio loop hosting many bots (DESIGN.md §6).

Each bot has a supervisor task. Its life is one loop:

1. **recover** (startup and crash recovery are the same code): load the bot's state, cursor and
   warm-up window from the database;
2. **catch up**: process every stored bar after the cursor through the per-bar path
   (:meth:`runner.bot.Bot.catch_up`, one transaction per bar) in a worker thread;
3. **follow**: wait for a ``market:`` message (or the poll interval: a lost message only delays
   a bar) and go to 2. In a replay the bot stops when it reaches ``until``.

Failures:

* the strategy raises (:class:`~runner.bot.StrategyError`): the bot publishes ``crashed``, waits
  a backoff and restarts from 1; after ``max_restarts_per_hour`` restarts within an hour it is
  marked ``failed`` and stops, while the other bots run on;
* the database is unreachable: the bot waits with exponential backoff and starts again from 1
  (nothing partial was written: each bar is one transaction);
* Redis is unreachable: publishing is queued by the bus, bars keep being processed (the database
  poll replaces the lost ``market:`` messages).

``candela bots stop|start ID`` changes ``bots.status``; the runner polls it and stops or
(re)starts the bot. Heartbeats go to ``bots.heartbeat_at`` and ``status:{bot_id}``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from candela.bus import SYSTEM_EVENTS, market_channel, status_channel
from candela.db import DatabaseUnavailableError, now_ms
from runner import ledger
from runner.bot import Bot, StrategyError, ThreadConnections
from runner.config import BotConfig
from runner.market_data import MarketFeed

_log = logging.getLogger(__name__)

DATABASE_ERRORS = (OperationalError, DBAPIError, DatabaseUnavailableError, ConnectionError)
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class RunnerSettings:
    """Timing knobs of the runner (seconds unless noted).

    Attributes
    ----------
    poll_interval : float
        How often the database is checked for new bars and ``bots.status`` changes.
    heartbeat_interval : float
        How often ``bots.heartbeat_at`` is touched and a heartbeat published per bot.
    restart_backoff : tuple of float
        Waits before the 1st, 2nd, 3rd... restart of a crashed bot (the last one repeats).
    max_restarts_per_hour : int
        Restarts allowed within one hour; the next crash marks the bot ``failed``.
    database_retry : tuple of float
        First and longest wait between attempts while the database is unreachable (doubling).
    workers : int
        Threads running bots' bars concurrently (one bot never runs two bars at once). Each
        keeps one database connection, and the status poll borrows more: size the engine's pool
        above it (``candela.db.connect(url, pool_size=workers + 5)``, as ``candela run`` does).
    chunk : int
        Bars read from the database per query while catching up.
    """

    poll_interval: float = 1.0
    heartbeat_interval: float = 5.0
    restart_backoff: tuple[float, ...] = (1.0, 5.0, 30.0)
    max_restarts_per_hour: int = 3
    database_retry: tuple[float, float] = (0.2, 5.0)
    workers: int = 10
    chunk: int = 2000


@dataclass(frozen=True)
class Replay:
    """Replay stored bars with ``from_ts <= ts <= to_ts`` (either bound optional) and stop."""

    from_ts: int | None = None
    to_ts: int | None = None


@dataclass
class BotReport:
    """What happened to one bot during :meth:`Runner.run`."""

    bot_id: str
    status: str = "active"
    bars: int = 0
    restarts: int = 0
    last_error: str | None = None


@dataclass
class _BotSlot:
    config: BotConfig
    report: BotReport
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    notified_at: float | None = None  # time.monotonic() of the last market: message
    stop_requested: bool = False
    running: bool = False
    registered_at: int = 0


class Runner:
    """Host bots in one asyncio process; see the module docstring.

    Parameters
    ----------
    engine : Engine
        The database (migrated).
    bus : InProcessBus or RedisBus
        Where signals, trades and status are published and ``market:`` messages come from.
    configs : list of BotConfig
        The bots (validated, strategies resolved).
    settings : RunnerSettings
    replay : Replay, optional
        Replay stored bars and return when every bot reached the end, instead of following live.
    """

    def __init__(self, engine: Engine, bus, configs: list[BotConfig], *, settings: RunnerSettings = RunnerSettings(),
                 replay: Replay | None = None) -> None:
        ids = [config.bot_id for config in configs]
        if len(set(ids)) != len(ids):
            raise ValueError("bot ids must be unique")
        self.engine = engine
        self.bus = bus
        self.settings = settings
        self.replay = replay
        self.slots = {config.bot_id: _BotSlot(config, BotReport(config.bot_id)) for config in configs}
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._by_market: dict[str, list[_BotSlot]] = {}
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None
        self._feeds = {config.market: MarketFeed(config.market) for config in configs}
        self._connections = ThreadConnections(engine)

    # ------------------------------------------------------------------ public

    def request_stop(self) -> None:
        """Ask every bot to finish its current bar and the runner to return (thread-safe)."""
        self._stopping = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake_all)

    async def run(self) -> dict[str, BotReport]:
        """Run until every bot finished its replay, or until :meth:`request_stop` (live)."""
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=self.settings.workers, thread_name_prefix="bot")
        subscription = None
        try:
            await self._retry_database(self._register)
            self._notice("runner_started", bots=sorted(self.slots), replay=self.replay is not None)
            channels = sorted(self._by_market)
            if channels:
                subscription = self.bus.subscribe(channels, self._on_market_message)
            watchers = [asyncio.create_task(self._watch_statuses())]
            supervisors = [asyncio.create_task(self._supervise(slot)) for slot in self.slots.values()]
            await asyncio.gather(*supervisors)
            self._stopping = True
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            self._notice("runner_stopped", bots={bot: slot.report.status for bot, slot in self.slots.items()})
        finally:
            if subscription is not None:
                subscription.close()
            self._executor.shutdown(wait=True)
            self._connections.close_all()
        return {bot_id: slot.report for bot_id, slot in self.slots.items()}

    # ------------------------------------------------------------------ setup

    def _register(self) -> None:
        changed = ledger.register_bots(self.engine, [slot.config for slot in self.slots.values()])
        for bot_id in changed:
            self._notice("bot_reconfigured", bot_id=bot_id)
        with self.engine.connect() as connection:
            for slot in self.slots.values():
                row = ledger.bot_row(connection, slot.config.bot_id)
                slot.registered_at = int(row.created_at)
                slot.report.status = row.status
        self._by_market = {}
        for slot in self.slots.values():
            channel = market_channel(*slot.config.market)
            self._by_market.setdefault(channel, []).append(slot)

    def _on_market_message(self, channel: str, payload: dict) -> None:
        if self._loop is None:
            return
        received = time.monotonic()
        for slot in self._by_market.get(channel, ()):
            slot.notified_at = received
            self._loop.call_soon_threadsafe(slot.wake.set)

    def _wake_all(self) -> None:
        for slot in self.slots.values():
            slot.wake.set()

    # ------------------------------------------------------------------ supervision

    async def _supervise(self, slot: _BotSlot) -> None:
        """One bot's life: wait until active, recover, catch up, follow; restart on crashes."""
        bot_id = slot.config.bot_id
        database_wait = self.settings.database_retry[0]
        restarted = False
        while not self._stopping:
            if slot.report.status != "active":
                if self.replay is not None:
                    return  # a stopped or failed bot has nothing to replay
                await self._sleep_or_wake(slot, self.settings.poll_interval)
                continue
            slot.stop_requested = False
            bot = Bot(slot.config, self.bus.publish, write_lock=self._write_lock,
                      feed=self._feeds[slot.config.market], connections=self._connections)
            try:
                await self._in_thread(self._recover, bot, slot)
                slot.running = True
                self._status(bot_id, "restarted" if restarted else "started", cursor=bot.cursor)
                await self._in_thread(ledger.record_event, self.engine, bot_id,
                                      "restarted" if restarted else "started", None, count_restart=restarted)
                restarted = False
                database_wait = self.settings.database_retry[0]
                while not self._stopping and not slot.stop_requested:
                    slot.wake.clear()
                    fresh_since, slot.notified_at = slot.notified_at, None
                    count = await self._in_thread(self._catch_up, bot, slot, fresh_since)
                    slot.report.bars += count
                    if self.replay is not None:
                        if not self._stopping and not slot.stop_requested:
                            slot.report.status = "finished"
                        return
                    await self._sleep_or_wake(slot, self.settings.poll_interval)
            except DATABASE_ERRORS as exc:
                _log.warning("bot %s: database unavailable (%s); retrying in %.1fs", bot_id,
                             _first_line(exc), database_wait)
                self._notice("database_unavailable", bot_id=bot_id, error=_first_line(exc))
                await asyncio.sleep(database_wait)
                database_wait = min(database_wait * 2, self.settings.database_retry[1])
            except Exception as exc:  # noqa: BLE001 - a crashing bot must not take the others down
                restarted = await self._after_crash(slot, exc)
                if not restarted and self.replay is not None:
                    return
            finally:
                slot.running = False
            if slot.stop_requested and not self._stopping:
                self._status(bot_id, "stopped")
        if slot.report.status == "active":
            self._status(bot_id, "stopped")

    def _recover(self, bot: Bot, slot: _BotSlot) -> None:
        begin = slot.config.start
        if begin is None:
            begin = self.replay.from_ts if self.replay and self.replay.from_ts is not None else None
        if begin is None:
            begin = -(2**62) if self.replay is not None else slot.registered_at
        connection = self._connections.get()
        try:
            bot.recover(connection, begin)
            if connection.in_transaction():
                connection.rollback()
        except BaseException:
            self._connections.discard()
            raise

    def _catch_up(self, bot: Bot, slot: _BotSlot, fresh_since: float | None) -> int:
        until = self.replay.to_ts if self.replay is not None else None
        return bot.catch_up(
            self.engine,
            until_ts=until,
            should_stop=lambda: self._stopping or slot.stop_requested,
            chunk=self.settings.chunk,
            fresh_since=fresh_since,
        )

    async def _after_crash(self, slot: _BotSlot, error: Exception) -> bool:
        """Record the crash; wait the backoff and return ``True`` to restart, or mark failed."""
        bot_id = slot.config.bot_id
        if isinstance(error, StrategyError):
            message = str(error)
            _log.error("%s", message)
        else:
            message = f"bot {bot_id!r}: {error.__class__.__name__}: {error}"
            _log.exception("%s", message)
        slot.report.last_error = message
        self._status(bot_id, "crashed", error=message, bar_ts=getattr(error, "bar_ts", None))
        while True:
            try:
                restarts = await self._in_thread(self._crash_bookkeeping, bot_id, message)
                break
            except DATABASE_ERRORS:
                await asyncio.sleep(self.settings.database_retry[1])
        if restarts >= self.settings.max_restarts_per_hour:
            await self._retry_database(ledger.set_status, self.engine, bot_id, "failed",
                                       error=message, event="failed", detail=message)
            slot.report.status = "failed"
            self._status(bot_id, "failed", error=message)
            self._notice("bot_failed", bot_id=bot_id, error=message)
            return False
        backoff = self.settings.restart_backoff
        wait = backoff[min(restarts, len(backoff) - 1)]
        await asyncio.sleep(wait)
        slot.report.restarts += 1
        return not self._stopping

    def _crash_bookkeeping(self, bot_id: str, message: str) -> int:
        """Log the crash; return how many restarts the bot had in the last hour (since a manual start)."""
        ledger.record_event(self.engine, bot_id, "crashed", message)
        now = now_ms()
        with self.engine.connect() as connection:
            since = now - HOUR_MS
            manual = ledger.last_event_ts(connection, bot_id, "start_requested")
            if manual is not None:
                since = max(since, manual)
            return ledger.count_events(connection, bot_id, "restarted", since)

    # ------------------------------------------------------------------ watchers

    async def _watch_statuses(self) -> None:
        """Poll ``bots.status`` (stop/start from another terminal) and send heartbeats."""
        last_heartbeat = 0.0
        while not self._stopping:
            try:
                statuses = await self._in_thread(self._read_statuses)
                for bot_id, status in statuses.items():
                    slot = self.slots[bot_id]
                    if status == slot.report.status:
                        continue
                    if status == "stopped" and slot.report.status in ("active",):
                        slot.stop_requested = True
                        slot.wake.set()
                    slot.report.status = status if slot.report.status != "finished" else "finished"
                    if status == "active":
                        slot.wake.set()
                if time.monotonic() - last_heartbeat >= self.settings.heartbeat_interval:
                    running = [bot_id for bot_id, slot in self.slots.items() if slot.running]
                    await self._in_thread(ledger.touch_heartbeats, self.engine, running)
                    for bot_id in running:
                        self._status(bot_id, "heartbeat")
                    last_heartbeat = time.monotonic()
            except DATABASE_ERRORS as exc:
                _log.warning("status poll failed: %s", _first_line(exc))
            await asyncio.sleep(self.settings.poll_interval)

    def _read_statuses(self) -> dict[str, str]:
        connection = self._connections.get()  # the worker thread's own connection: no extra checkout
        try:
            statuses = ledger.bot_statuses(connection, list(self.slots))
        except BaseException:
            self._connections.discard()
            raise
        if connection.in_transaction():
            connection.rollback()
        return statuses

    # ------------------------------------------------------------------ helpers

    async def _in_thread(self, function, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: function(*args, **kwargs))

    async def _retry_database(self, function, *args, **kwargs):
        wait = self.settings.database_retry[0]
        while True:
            try:
                return await self._in_thread(function, *args, **kwargs)
            except DATABASE_ERRORS as exc:
                _log.warning("database unavailable (%s); retrying in %.1fs", _first_line(exc), wait)
                await asyncio.sleep(wait)
                wait = min(wait * 2, self.settings.database_retry[1])

    async def _sleep_or_wake(self, slot: _BotSlot, timeout: float) -> None:
        try:
            await asyncio.wait_for(slot.wake.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def _status(self, bot_id: str, event: str, **details) -> None:
        self.bus.publish(status_channel(bot_id), dict(bot_id=bot_id, event=event, at=now_ms(), **details))

    def _notice(self, event: str, **details) -> None:
        self.bus.publish(SYSTEM_EVENTS, dict(event=event, at=now_ms(), **details))


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
