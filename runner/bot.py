"""One bot's per-bar path: decide on the warm-up window, fill with ``step_nb``, record, publish.

For every closed bar ``t`` (in stored order, gaps simply skipped as in the backtest):

1. the strategy's ``target`` (and ``indicators``) run on the last ``spec.required_bars(params)``
   bars ending at ``t`` (fewer at the very start of the history); its last value is the
   decision at ``t``'s close;
2. :func:`research.kernels.execution.step_nb` advances a **copy** of the persisted state with
   bar ``t`` and that decision: it fills the decision of bar ``t-1`` at ``t``'s open, checks the
   stops intrabar and applies the risk limits, exactly as the backtest loop does;
3. :func:`runner.ledger.write_bar` commits the signal, the fills, the state and an equity
   snapshot in one transaction; only then does the bot adopt the new state and publish on
   ``signals:{bot_id}``, ``trades:{bot_id}`` and ``status:{bot_id}``.

A failure anywhere before the commit leaves the bot's state (in memory and in the database) at
the previous bar, so the bar is simply processed again later. A bar that the database already
holds (``uq_signals_bot_ts``) is skipped and the bot reloads its state from the database.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection, Engine

from candela.bus import signals_channel, status_channel, trades_channel
from candela.db import now_ms
from research.kernels.execution import (
    F_AT_OPEN,
    F_CASH_AFTER,
    F_FEE,
    F_POSITION_AFTER,
    F_PRICE,
    F_REALIZED_PNL,
    F_REASON,
    F_SIDE,
    F_SIZE,
    HALT_NONE,
    MAX_FILLS_PER_BAR,
    N_FILL,
    REASON_NAMES,
    S_CASH,
    S_EQUITY,
    S_HALT,
    S_ORDERED_TARGET,
    S_PENDING_REASON,
    S_PENDING_TARGET,
    S_POSITION,
    REASON_SIGNAL,
    STATUS_BAD_BAR,
    STATUS_OUT_OF_ORDER,
    make_config,
    new_state,
    step_nb,
)
from research.types import Bars, StrategySpec
from runner.config import BotConfig
from runner.ledger import BarRecord, encode_state, load_state, write_bar
from runner.market_data import BarWindow, MarketFeed, bars_after, bars_through

_log = logging.getLogger(__name__)


class ThreadConnections:
    """One database connection per worker thread, kept between bars (no pool checkout per bar).

    On PostgreSQL the connections are in ``AUTOCOMMIT`` mode: each bar is ONE statement (see
    :func:`runner.ledger.write_bar`), which is then its own transaction and costs a single round
    trip, commit included.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: set[Connection] = set()

    def get(self) -> Connection:
        """This thread's connection, opened on first use."""
        connection = getattr(self._local, "connection", None)
        if connection is None or connection.closed or connection.invalidated:
            connection = self.engine.connect()
            if connection.dialect.name == "postgresql":
                connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            self._local.connection = connection
            with self._lock:
                self._all.add(connection)
        return connection

    def discard(self) -> None:
        """Close this thread's connection (the next :meth:`get` opens a fresh one)."""
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            with self._lock:
                self._all.discard(connection)
            _close_quietly(connection)

    def close_all(self) -> None:
        """Close every connection handed out (call when no thread uses them any more)."""
        with self._lock:
            connections, self._all = list(self._all), set()
        for connection in connections:
            _close_quietly(connection)


def _close_quietly(connection: Connection) -> None:
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - closing a dead connection may fail
        try:
            connection.invalidate()
        except Exception:  # noqa: BLE001
            pass


class StrategyError(RuntimeError):
    """The bot's strategy raised (or returned something unusable) at a bar.

    The runner restarts the bot with backoff (at most 3 times an hour), then marks it failed.
    """

    def __init__(self, bot_id: str, bar_ts: int, cause: BaseException | str) -> None:
        self.bot_id = bot_id
        self.bar_ts = bar_ts
        self.cause = cause
        super().__init__(f"bot {bot_id!r}: strategy failed at bar {bar_ts}: {cause!r}")


@dataclass
class Decision:
    """What the strategy said at one bar's close."""

    raw_target: float
    indicators: dict[str, float | None]


class Bot:
    """A bot: its config, strategy, execution config and the state of its last committed bar.

    Parameters
    ----------
    config : BotConfig
        Validated config; ``config.spec`` is the strategy.
    publish : callable
        ``publish(channel, payload)`` of the bus; called only after commits.
    write_lock : context manager, optional
        Held around each bar's transaction. SQLite has one writer at a time and its busy
        handler sleeps, so the runner gives all its bots one lock there; PostgreSQL needs none.
    feed : MarketFeed, optional
        Shared reader of the newest bars of the bot's market (else the bot reads them itself).
    connections : ThreadConnections, optional
        The runner's connection per worker thread (else the bot makes its own).
    """

    def __init__(self, config: BotConfig, publish: Callable[[str, dict], None], *,
                 write_lock: AbstractContextManager | None = None, feed: MarketFeed | None = None,
                 connections: ThreadConnections | None = None) -> None:
        if config.spec is None:
            raise ValueError(f"bot {config.bot_id!r}: config has no resolved strategy spec")
        self.config = config
        self.bot_id = config.bot_id
        self.spec: StrategySpec = config.spec
        self.params = self.spec.make_params(config.params)
        self.required_bars = self.spec.required_bars(self.params)
        self.execution_config = make_config(config.costs, config.stops, config.risk)
        self.timeframe_ms = config.timeframe_ms
        self.publish = publish
        self.write_lock = write_lock if write_lock is not None else nullcontext()
        self.feed = feed
        self.connections = connections
        self.state = new_state(config.initial_cash)
        self.cursor: int | None = None
        self.window = BarWindow(self.required_bars)
        self.bars_processed = 0
        self.window_stale = True  # until recover() loads the state and the warm-up window
        self.begin_ts = 0
        self._fills = np.empty((MAX_FILLS_PER_BAR, N_FILL))

    # ------------------------------------------------------------------ recovery

    def recover(self, connection: Connection, begin_ts: int) -> None:
        """Load the state and cursor of the last committed bar and refill the warm-up window.

        Startup and crash recovery are this one method: a bot never trusts its memory over the
        database. A bot without history starts fresh from ``begin_ts`` (close time of the first
        bar to trade) with the bars before it as warm-up.
        """
        loaded = load_state(connection, self.bot_id)
        self.window = BarWindow(self.required_bars)
        self.window_stale = False
        self.begin_ts = begin_ts
        if loaded is None:
            self.state = new_state(self.config.initial_cash)
            self.cursor = None
            history = bars_through(connection, self.config.market, begin_ts - 1, self.required_bars - 1)
        else:
            self.state, self.cursor = loaded
            history = bars_through(connection, self.config.market, self.cursor, self.required_bars)
        for bar in history:
            self.window.append(bar)

    # ------------------------------------------------------------------ the per-bar path

    def catch_up(
        self,
        engine: Engine,
        *,
        until_ts: int | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        chunk: int = 2000,
        on_bar: Callable[[int], None] | None = None,
        fresh_since: float | None = None,
    ) -> int:
        """Process every stored bar after the cursor (else from ``begin_ts``) up to ``until_ts``.

        One transaction per bar, on a connection the bot keeps between calls. Returns the number
        of bars processed. Database errors propagate (the bar stays unprocessed and the
        connection is dropped); a strategy error raises :class:`StrategyError`.

        ``fresh_since`` (a ``time.monotonic()`` value, default: now) is when the bot learnt of
        new bars, e.g. when the ``market:`` message arrived: a shared :class:`MarketFeed` read
        that started after it already holds them, so 100 bots woken by one message cause one
        database read, not 100.
        """
        woken = time.monotonic() if fresh_since is None else fresh_since
        processed = 0
        connection = self._connect(engine)
        try:
            while not should_stop():
                after = self.cursor if self.cursor is not None else self.begin_ts - 1
                rows = None
                if self.feed is not None:
                    rows = self.feed.bars_after(connection, after, fresh_since=woken, until_ts=until_ts, limit=chunk)
                if rows is None:
                    rows = bars_after(connection, self.config.market, after, until_ts=until_ts, limit=chunk)
                if connection.in_transaction():
                    connection.rollback()  # end the read transaction before the per-bar writes
                if not rows:
                    break
                for bar in rows:
                    if should_stop():
                        return processed
                    if self.process_bar(connection, bar):
                        processed += 1
                        if on_bar is not None:
                            on_bar(bar[0])
                    else:  # already recorded elsewhere: the database wins
                        self.recover(connection, self.begin_ts)
                        if connection.in_transaction():
                            connection.rollback()
                        break
        except BaseException:
            self.close()
            raise
        return processed

    def _connect(self, engine: Engine) -> Connection:
        if self.connections is None:
            self.connections = ThreadConnections(engine)
        return self.connections.get()

    def close(self) -> None:
        """Discard this thread's database connection (after an error it may be broken)."""
        if self.connections is not None:
            self.connections.discard()

    def decide(self, bars: Bars, bar_ts: int) -> Decision:
        """Run the strategy on the window ending at ``bar_ts``; its last value is the decision."""
        try:
            raw_target, values = self.spec.target_and_indicators(bars, self.params)
            target = np.asarray(raw_target, dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - any strategy failure restarts the bot
            raise StrategyError(self.bot_id, bar_ts, exc) from exc
        if target.shape != (len(bars),):
            raise StrategyError(
                self.bot_id, bar_ts, f"target returned shape {target.shape}, expected ({len(bars)},)"
            )
        indicators = {}
        for name, series in values.items():
            value = float(series[-1]) if len(series) else math.nan
            indicators[name] = None if math.isnan(value) else value
        return Decision(float(target[-1]), indicators)

    def process_bar(self, connection: Connection, bar: tuple) -> bool:
        """Decide, fill and commit one bar; publish after the commit.

        Returns ``False`` when the database already holds this bar (the caller must then
        :meth:`recover`). After an exception the bot must :meth:`recover` before the next bar.
        """
        if self.window_stale:
            raise RuntimeError(f"bot {self.bot_id!r}: recover() before processing more bars")
        ts, open_, high, low, close, _volume = bar
        ts = int(ts)
        self.window.append(bar)
        try:
            window_ts, o, h, l, c, v = self.window.arrays()
            bars = Bars(window_ts, o, h, l, c, v, self.timeframe_ms)
            decision = self.decide(bars, ts)
            state = self.state.copy()
            status = step_nb(state, self.execution_config, ts, open_, high, low, close, decision.raw_target, self._fills)
            if status == STATUS_OUT_OF_ORDER:  # the state is past this bar: trust the database
                _log.warning("bot %s: bar %s is not after the last processed bar; reloading", self.bot_id, ts)
                self.window_stale = True
                return False
            record = self._record(ts, close, decision, state, status)
            with self.write_lock:
                written = write_bar(connection, record)
            if not written:
                self.window_stale = True
                return False
        except BaseException:
            self.window_stale = True  # holds a bar that was not committed: recover() rebuilds it
            raise
        self.state = state
        self.cursor = ts
        self.bars_processed += 1
        self._publish(record)
        return True

    def _record(self, ts: int, close: float, decision: Decision, state: np.ndarray, status: int) -> BarRecord:
        created = now_ms()
        pending = state[S_PENDING_TARGET]
        executed = status >= 0 and not math.isnan(pending)
        ordered = state[S_ORDERED_TARGET]
        if executed:
            halted = state[S_HALT] != HALT_NONE and state[S_PENDING_REASON] != REASON_SIGNAL
            action = "halt" if halted else ("buy" if pending > ordered else "sell")
            target = pending
        else:
            action = "halt" if state[S_HALT] != HALT_NONE else "hold"
            target = ordered
        indicators = dict(decision.indicators)
        if status == STATUS_BAD_BAR:
            indicators["error"] = "bar rejected by the execution function (bad prices); not traded"
        raw = decision.raw_target
        signal = dict(
            bot_id=self.bot_id,
            ts=ts,
            action=action,
            target=float(target),
            raw_target=0.0 if math.isnan(raw) else raw,
            price=float(close),
            executed=bool(executed),
            indicators_json=json.dumps(indicators, sort_keys=True),
            created_at=created,
        )
        trades = []
        for seq in range(max(status, 0)):
            fill = self._fills[seq]
            at_open = fill[F_AT_OPEN] == 1.0
            trades.append(dict(
                bot_id=self.bot_id,
                bar_ts=ts,
                seq=seq,
                ts=ts - self.timeframe_ms if at_open else ts,
                side="buy" if fill[F_SIDE] > 0 else "sell",
                size=float(fill[F_SIZE]),
                price=float(fill[F_PRICE]),
                fee=float(fill[F_FEE]),
                reason=REASON_NAMES[int(fill[F_REASON])],
                realized_pnl=float(fill[F_REALIZED_PNL]),
                cash_after=float(fill[F_CASH_AFTER]),
                position_after=float(fill[F_POSITION_AFTER]),
                created_at=created,
            ))
        equity = float(state[S_EQUITY]) if status >= 0 else float(self.state[S_EQUITY])
        return BarRecord(
            bot_id=self.bot_id,
            bar_ts=ts,
            signal=signal,
            trades=trades,
            state=dict(
                bot_id=self.bot_id,
                cash=float(state[S_CASH]),
                position=float(state[S_POSITION]),
                cursor_ts=ts,
                state_json=encode_state(state),
                updated_at=created,
            ),
            performance=dict(
                bot_id=self.bot_id,
                ts=ts,
                equity=equity,
                cash=float(state[S_CASH]),
                position=float(state[S_POSITION]),
                price=float(close),
            ),
        )

    def _publish(self, record: BarRecord) -> None:
        signal = dict(record.signal)
        signal["indicators"] = json.loads(signal.pop("indicators_json"))
        signal["published_at"] = time.time_ns() // 1_000_000
        self.publish(signals_channel(self.bot_id), signal)
        for trade in record.trades:
            self.publish(trades_channel(self.bot_id), trade)
        if record.trades:
            self.publish(status_channel(self.bot_id), dict(
                bot_id=self.bot_id, event="traded", ts=record.bar_ts,
                cash=record.state["cash"], position=record.state["position"],
                equity=record.performance["equity"],
            ))
