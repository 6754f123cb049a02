"""The runner process: an asyncio loop hosting many bots (docs/architecture.md §6).

Each bot has a supervisor task. Its life is one loop:

1. **recover** (startup and crash recovery are the same code): load the bot's state, cursor and
   history window from the database;
2. **join its market's group** (:class:`runner.market_group.MarketGroup`) and stay there until
   it stops, fails or (replay) reaches ``until``.

Each market has a task that runs a *pass* of its group in a worker thread whenever a ``market:``
message arrives (or the poll interval elapses: a lost message only delays a bar, and the
startup catch-up needs none). A pass processes every stored bar after each member's cursor
through the per-bar path, one round per bar: the bots' decisions one after the other, ONE
transaction for all their records, then ONE publish of all their messages (see
:mod:`runner.market_group`). Catching up at startup, following live bars and replaying are
this same pass.

Failures:

* the strategy raises (:class:`~runner.bot.StrategyError`): the bot publishes ``crashed``, waits
  a backoff and restarts from 1; after ``max_restarts_per_hour`` restarts within an hour it is
  marked ``failed`` and stops, while the other bots run on;
* the database is unreachable: every bot of the pass waits with exponential backoff and starts
  again from 1 (nothing partial was written: each batch is one transaction). The runner says so
  once (:attr:`Runner.database`, a ``database_unavailable`` notice) and once when it is back;
* Redis is unreachable: publishing is queued by the bus, bars keep being processed (the database
  poll replaces the lost ``market:`` messages); the bus says so once and once when it is back.

``candela bots stop|start ID`` changes ``bots.status``; the runner polls it and stops or
(re)starts the bot. Heartbeats go to ``bots.heartbeat_at`` and ``status:{bot_id}``. When the
runner stops hosting a bot it records a ``stopped`` (or, at the end of a replay, ``finished``)
event, so that a bot whose runner vanished (killed, crashed, the machine gone) is told apart by
its last event, a ``started`` one, and its stale heartbeat. :attr:`Runner.progress` counts the
bars committed and left per bot.

A portfolio bot (:mod:`runner.portfolio_bot`) has a group of its own
(:class:`~runner.portfolio_bot.PortfolioGroup`), woken by the ``market:`` messages of every
market of its universe; it is supervised, recovered and restarted like any other bot.
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

from candela.core.bus import SYSTEM_EVENTS, Bus, market_channel, status_channel
from candela.core.db import DatabaseUnavailableError, now_ms
from runner import registry
from runner.bot import Bot, StrategyError, ThreadConnections
from runner.config import BotConfig
from runner.health import HealthSettings, HealthWatch
from runner.market_data import MarketFeed
from runner.market_group import BATCH_BARS, BATCH_SECONDS, MarketGroup, Member
from runner.outage import Outage
from runner.portfolio_bot import PortfolioBot, PortfolioGroup
from runner.portfolio_config import PortfolioBotConfig, bot_markets
from runner.progress import Progress, count_bars_after

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
        Worker threads: each market's passes, the bots' recoveries and the status poll run
        there (one market never runs two passes at once). Each keeps one database connection,
        and the status poll borrows more: size the engine's pool above it
        (``candela.core.db.connect(url, pool_size=workers + 5)``, as ``candela run`` does).
    chunk : int
        Bars read from the database per query while catching up.
    batch_bars : int
        Most bars of each bot committed in one transaction while catching up or replaying
        (:mod:`runner.market_group`; 1 commits every bar on its own). A live bar is committed
        as soon as it is processed, whatever this is.
    batch_seconds : float
        Longest time a processed bar waits for its batch's commit.
    """

    poll_interval: float = 1.0
    heartbeat_interval: float = 5.0
    restart_backoff: tuple[float, ...] = (1.0, 5.0, 30.0)
    max_restarts_per_hour: int = 3
    database_retry: tuple[float, float] = (0.2, 5.0)
    workers: int = 10
    chunk: int = 2000
    batch_bars: int = BATCH_BARS
    batch_seconds: float = BATCH_SECONDS


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
    stop_requested: bool = False
    running: bool = False
    started: bool = False
    registered_at: int = 0


@dataclass
class _Market:
    group: MarketGroup
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class Runner:
    """Host bots in one asyncio process; see the module docstring.

    Parameters
    ----------
    engine : Engine
        The database (migrated).
    bus : Bus
        Where signals, trades and status are published and ``market:`` messages come from.
    configs : list of BotConfig
        The bots (validated, strategies resolved).
    settings : RunnerSettings
    replay : Replay, optional
        Replay stored bars and return when every bot reached the end, instead of following live.
    health : HealthSettings, optional
        Thresholds of the conditions a live runner announces on ``system:events`` at each
        heartbeat (:mod:`runner.health`; default: :meth:`HealthSettings.for_heartbeat`).
    """

    def __init__(
        self,
        engine: Engine,
        bus: Bus,
        configs: list[BotConfig],
        *,
        settings: RunnerSettings = RunnerSettings(),
        replay: Replay | None = None,
        health: HealthSettings | None = None,
    ) -> None:
        ids = [config.bot_id for config in configs]
        if len(set(ids)) != len(ids):
            raise ValueError("bot ids must be unique")
        self.engine = engine
        self.bus = bus
        self.settings = settings
        self.replay = replay
        self.slots = {
            config.bot_id: _BotSlot(config, BotReport(config.bot_id)) for config in configs
        }
        self._stopping = False
        self.progress = Progress(ids)
        """Bars committed and left per bot (:class:`runner.progress.Progress`)."""
        self.database = Outage(
            "database", "every bot waits at its last committed bar", notice=self._notice
        )
        """Whether the database is reachable: one warning per outage, one line when it is back."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None
        self._connections = ThreadConnections(engine)
        until = replay.to_ts if replay is not None else None
        single = [config for config in configs if not isinstance(config, PortfolioBotConfig)]
        self._markets = {
            market_channel(*market): _Market(
                MarketGroup(
                    MarketFeed(market),
                    bus.publish_many,
                    follow=replay is None,
                    until_ts=until,
                    chunk=settings.chunk,
                    write_lock=write_lock,
                    batch_bars=settings.batch_bars,
                    batch_seconds=settings.batch_seconds,
                    writer=self._connections.get,
                    on_commit=self.progress.committed,
                )
            )
            for market in {config.market for config in single}
        }
        # a portfolio bot has a group of its own, woken by any of its markets
        self._listeners: dict[str, list[_Market]] = {
            channel: [market] for channel, market in self._markets.items()
        }
        for config in configs:
            if isinstance(config, PortfolioBotConfig):
                group = _Market(
                    PortfolioGroup(
                        bus.publish_many,
                        follow=replay is None,
                        until_ts=until,
                        write_lock=write_lock,
                    )
                )
                self._markets[_portfolio_key(config.bot_id)] = group
                for market in config.markets:
                    self._listeners.setdefault(market_channel(*market), []).append(group)
        by_market: dict[tuple[str, str, str], list[str]] = {}
        for config in configs:
            for market in bot_markets(config):
                by_market.setdefault(market, []).append(config.bot_id)
        self._health = (
            None
            if replay is not None
            else HealthWatch(
                engine,
                by_market,
                settings=health or HealthSettings.for_heartbeat(settings.heartbeat_interval),
            )
        )

    # ------------------------------------------------------------------ public

    def request_stop(self) -> None:
        """Ask every bot to finish its current bar and the runner to return (thread-safe)."""
        self._stopping = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake_all)

    def bot_states(self) -> dict[str, str]:
        """``{bot_id: state}``: ``running`` (in its market's group), ``waiting`` (active, but
        recovering, restarting after a crash or waiting for the database), ``stopped``,
        ``failed`` or ``finished`` (its replay is done)."""
        states = {}
        for bot_id, slot in self.slots.items():
            status = slot.report.status
            waiting = "waiting" if status == "active" else status
            states[bot_id] = "running" if slot.running else waiting
        return states

    async def run(self) -> dict[str, BotReport]:
        """Run until every bot finished its replay, or until :meth:`request_stop` (live)."""
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(
            max_workers=self.settings.workers, thread_name_prefix="bot"
        )
        subscription = None
        try:
            await self._retry_database(self._register)
            self._notice("runner_started", bots=sorted(self.slots), replay=self.replay is not None)
            channels = sorted(self._listeners)
            if channels:
                subscription = self.bus.subscribe(channels, self._on_market_message)
            passes = [
                asyncio.create_task(self._run_passes(market)) for market in self._markets.values()
            ]
            watchers = [asyncio.create_task(self._watch_statuses())]
            supervisors = [
                asyncio.create_task(self._supervise(slot)) for slot in self.slots.values()
            ]
            await asyncio.gather(*supervisors)
            self._stopping = True
            self._wake_all()
            await asyncio.gather(*passes)  # every bot left its group: they return at once
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            self._notice(
                "runner_stopped", bots={bot: slot.report.status for bot, slot in self.slots.items()}
            )
        finally:
            self._stopping = True  # whatever ended the run, every loop of the runner ends too
            if subscription is not None:
                subscription.close()
            self._executor.shutdown(wait=True)
            for market in self._markets.values():
                market.group.close()
            self._connections.close_all()
        return {bot_id: slot.report for bot_id, slot in self.slots.items()}

    # ------------------------------------------------------------------ setup

    def _register(self) -> None:
        changes = registry.register_bots(self.engine, [slot.config for slot in self.slots.values()])
        for bot_id, change in changes.items():
            self._notice(
                "bot_new_version" if change == "new_version" else "bot_reconfigured", bot_id=bot_id
            )
        with self.engine.connect() as connection:
            for slot in self.slots.values():
                row = registry.bot_row(connection, slot.config.bot_id)
                slot.registered_at = int(row.created_at)
                slot.report.status = row.status

    def _on_market_message(self, channel: str, payload: dict) -> None:
        if self._loop is None:
            return
        for market in self._listeners.get(channel, ()):
            market.group.notified_at = time.monotonic()
            self._loop.call_soon_threadsafe(market.wake.set)

    def _wake_all(self) -> None:
        for slot in self.slots.values():
            slot.wake.set()
        for market in self._markets.values():
            market.wake.set()

    def _market_of(self, slot: _BotSlot) -> _Market:
        if isinstance(slot.config, PortfolioBotConfig):
            return self._markets[_portfolio_key(slot.config.bot_id)]
        return self._markets[market_channel(*slot.config.market)]

    # ------------------------------------------------------------------ supervision

    async def _supervise(self, slot: _BotSlot) -> None:
        """One bot's life: wait until active, recover, follow in its market's group; restart on crashes."""
        bot_id = slot.config.bot_id
        database_wait = self.settings.database_retry[0]
        restarted = False
        while not self._stopping:
            if slot.report.status != "active":
                if self.replay is not None:
                    return  # a stopped or failed bot has nothing to replay
                await self._sleep_or_wake(slot.wake, self.settings.poll_interval)
                continue
            slot.stop_requested = False
            bot = (
                PortfolioBot(slot.config, chunk=self.settings.chunk)
                if isinstance(slot.config, PortfolioBotConfig)
                else Bot(slot.config)
            )
            try:
                await self._in_thread(self._recover, bot, slot)
                self.database.succeeded()
                slot.running = slot.started = True
                self._status(bot_id, "restarted" if restarted else "started", cursor=bot.cursor)
                await self._in_thread(
                    registry.record_event,
                    self.engine,
                    bot_id,
                    "restarted" if restarted else "started",
                    None,
                    count_restart=restarted,
                )
                restarted = False
                database_wait = self.settings.database_retry[0]
                await self._follow(bot, slot)
                if self.replay is not None and not self._stopping and not slot.stop_requested:
                    slot.report.status = "finished"
                    await self._lifecycle_event(
                        bot_id, "finished", f"replay done; last bar {bot.cursor}"
                    )
                    return
            except DATABASE_ERRORS as exc:
                self.database.failed(_first_line(exc))
                _log.debug(
                    "bot %s: database unavailable (%s); retrying in %.1fs",
                    bot_id,
                    _first_line(exc),
                    database_wait,
                )
                await asyncio.sleep(database_wait)
                database_wait = min(database_wait * 2, self.settings.database_retry[1])
            except Exception as exc:  # noqa: BLE001 - a crashing bot must not take the others down
                restarted = await self._after_crash(slot, exc)
                if not restarted and self.replay is not None:
                    return
            finally:
                slot.running = False
                slot.report.bars += bot.bars_processed
            if slot.stop_requested and not self._stopping:
                self._status(bot_id, "stopped")
                await self._lifecycle_event(bot_id, "stopped", "stopped from the command line")
        if slot.report.status == "active":
            self._status(bot_id, "stopped")
            if slot.started:
                await self._lifecycle_event(bot_id, "stopped", "the runner stopped")

    async def _lifecycle_event(self, bot_id: str, event: str, detail: str) -> None:
        """Record that the runner no longer hosts ``bot_id`` (``candela bots list`` tells a bot
        whose runner stopped it from one whose runner vanished by this)."""
        try:
            await self._in_thread(registry.record_event, self.engine, bot_id, event, detail)
        except DATABASE_ERRORS as exc:
            self.database.failed(_first_line(exc))

    def _recover(self, bot: Bot, slot: _BotSlot) -> None:
        begin = slot.config.start
        if begin is None:
            begin = self.replay.from_ts if self.replay and self.replay.from_ts is not None else None
        if begin is None:
            begin = -(2**62) if self.replay is not None else slot.registered_at
        connection = self._connections.get()
        try:
            bot.recover(connection, begin)
            until = self.replay.to_ts if self.replay is not None else None
            left = max(
                count_bars_after(connection, market, bot.after, until)
                for market in bot_markets(slot.config)
            )
            self.progress.recovered(slot.config.bot_id, left)
            if connection.in_transaction():
                connection.rollback()
        except BaseException:
            self._connections.discard()
            raise

    async def _follow(self, bot: Bot, slot: _BotSlot) -> None:
        """Put the recovered ``bot`` in its market's group until it leaves.

        Returns when the bot stopped (or, in a replay, finished); raises the error it left with.
        """
        if self._stopping:  # the market's passes may have ended: do not join
            return
        loop = asyncio.get_running_loop()
        left: asyncio.Future = loop.create_future()

        def on_leave(error: BaseException | None) -> None:  # from the pass's thread
            loop.call_soon_threadsafe(_settle, left, error)

        market = self._market_of(slot)
        market.group.join(Member(bot, lambda: self._stopping or slot.stop_requested, on_leave))
        market.wake.set()
        await left

    async def _run_passes(self, market: _Market) -> None:
        """Run a pass of the market's group on every wake-up and at least every poll interval.

        Returns once the runner is stopping and the group is empty (no bot joins any more then).
        """
        while not (self._stopping and market.group.idle):
            await self._sleep_or_wake(market.wake, self.settings.poll_interval)
            market.wake.clear()
            if market.group.idle:
                continue
            try:
                await self._in_thread(self._pass, market.group)
                self.database.succeeded()
            except Exception as exc:  # noqa: BLE001 - database errors: every member recovers
                if isinstance(exc, DATABASE_ERRORS):
                    self.database.failed(_first_line(exc))
                market.group.fail_all(exc)

    def _pass(self, group: MarketGroup) -> None:
        connection = self._connections.get()
        try:
            group.run_pass(connection)
        except BaseException:
            self._connections.discard()  # after an error the connection may be broken
            raise

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
            await self._retry_database(
                registry.set_status,
                self.engine,
                bot_id,
                "failed",
                error=message,
                event="failed",
                detail=message,
            )
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
        registry.record_event(self.engine, bot_id, "crashed", message)
        now = now_ms()
        with self.engine.connect() as connection:
            since = now - HOUR_MS
            manual = registry.last_event_ts(connection, bot_id, "start_requested")
            if manual is not None:
                since = max(since, manual)
            return registry.count_events(connection, bot_id, "restarted", since)

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
                        self._market_of(slot).wake.set()
                    slot.report.status = status if slot.report.status != "finished" else "finished"
                    if status == "active":
                        slot.wake.set()
                if time.monotonic() - last_heartbeat >= self.settings.heartbeat_interval:
                    running = [bot_id for bot_id, slot in self.slots.items() if slot.running]
                    await self._in_thread(registry.touch_heartbeats, self.engine, running)
                    self.bus.publish_many(
                        [_status_message(bot_id, "heartbeat") for bot_id in running]
                    )
                    last_heartbeat = time.monotonic()
                    if (
                        self._health is not None
                    ):  # stalled markets, stale heartbeats (runner.health)
                        self.bus.publish_many(await self._in_thread(self._health.check, running))
                self.database.succeeded()
            except DATABASE_ERRORS as exc:
                self.database.failed(_first_line(exc))
            await asyncio.sleep(self.settings.poll_interval)

    def _read_statuses(self) -> dict[str, str]:
        connection = (
            self._connections.get()
        )  # the worker thread's own connection: no extra checkout
        try:
            statuses = registry.bot_statuses(connection, list(self.slots))
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
                result = await self._in_thread(function, *args, **kwargs)
            except DATABASE_ERRORS as exc:
                self.database.failed(_first_line(exc))
                await asyncio.sleep(wait)
                wait = min(wait * 2, self.settings.database_retry[1])
                continue
            self.database.succeeded()
            return result

    async def _sleep_or_wake(self, wake: asyncio.Event, timeout: float) -> None:
        try:
            await asyncio.wait_for(wake.wait(), timeout)
        except TimeoutError:
            pass

    def _status(self, bot_id: str, event: str, **details) -> None:
        self.bus.publish(*_status_message(bot_id, event, **details))

    def _notice(self, event: str, **details) -> None:
        self.bus.publish(SYSTEM_EVENTS, dict(event=event, at=now_ms(), **details))


def _portfolio_key(bot_id: str) -> str:
    """The key of a portfolio bot's own group (not a bus channel)."""
    return f"portfolio:{bot_id}"


def _status_message(bot_id: str, event: str, **details) -> tuple[str, dict]:
    """``(channel, payload)`` of a lifecycle event on ``status:{bot_id}``."""
    return status_channel(bot_id), dict(bot_id=bot_id, event=event, at=now_ms(), **details)


def _settle(future: asyncio.Future, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
