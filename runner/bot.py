"""One bot's per-bar path: decide on the history window, fill with ``step``, record, publish.

For every closed bar ``t`` (in stored order, gaps simply skipped as in the backtest):

1. :meth:`Bot.prepare`: the strategy (its target and indicators) runs on the last
   ``spec.history_window(params)`` stored bars ending at ``t`` (all the stored bars up to ``t``
   at the very start of the history, so that it sees exactly the bars the backtest saw); its
   last value is the decision at ``t``'s close. Then
   :func:`research.kernels.execution.step` advances the persisted state with bar ``t`` and
   that decision (into a new :class:`~research.kernels.records.State`: the bot's own is left
   as it is): it fills the decision of bar ``t-1`` at ``t``'s open, checks the stops intrabar
   and applies the risk limits, exactly as the backtest loop does. The result is a
   :class:`PreparedBar`: the rows to record and the new state;
2. :func:`runner.ledger.write_bars` commits the signal, the fills, the state and an equity
   snapshot atomically (together with the same bar's records of the market's other bots, see
   :mod:`runner.market_group`);
3. only after the commit does the bot :meth:`~Bot.adopt` the new state, and its
   :meth:`~Bot.messages` go out on ``signals:{bot_id}``, ``trades:{bot_id}`` and
   ``status:{bot_id}``.

A failure anywhere before the commit leaves the bot's state in the database at the previous
bar; the bot is then *stale* (its window holds an uncommitted bar) and must :meth:`~Bot.recover`
before its next bar, which reprocesses the bar. A bar that the database already holds
(``uq_signals_bot_ts``) is not written again: the bot recovers from the database instead.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from candela.core.bus import Encoded, signals_channel, status_channel, trades_channel
from candela.core.db import now_ms
from research.kernels.execution import step
from research.kernels.records import (
    HALT_NONE,
    MAX_FILLS_PER_BAR,
    REASON_SIGNAL,
    STATUS_BAD_BAR,
    STATUS_OUT_OF_ORDER,
    State,
    fill_rows,
    make_config,
    new_fills,
    new_state,
)
from research.strategy_model import StrategySpec
from research.types import Bars
from runner.block import (
    BAD_BAR_NOTE,
    BlockDecisions,
    PreparedBlock,
    block_record,
    decide_block,
    rows_to_arrays,
    run_span,
)
from runner.config import BotConfig
from runner.encoding import compact_json, indicators_json, signal_json
from runner.ledger import BarRecord, load_state
from runner.market_data import BarWindow, bars_through
from runner.strategy_source import strategy_source_hash

_log = logging.getLogger(__name__)

_NOT_PUBLISHED = (
    "indicators_json",
    "config_hash",
    "strategy_hash",
)  # signal columns kept off the bus


class ThreadConnections:
    """One database connection per worker thread, kept between bars (no pool checkout per bar).

    On PostgreSQL the connections are in ``AUTOCOMMIT`` mode: each batch of bars is ONE
    statement (see :func:`runner.ledger.write_bars`), which is then its own transaction and
    costs a single round trip, commit included.
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


RELOAD = "reload"
"""What :meth:`Bot.prepare_block` says when the bot's state is past a bar (reload it)."""


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


@dataclass
class PreparedBar:
    """One bar decided and filled by a bot, not yet committed.

    Attributes
    ----------
    record : BarRecord
        The rows to write (signal, fills, state, equity snapshot).
    state : State
        The execution state after the bar; the bot adopts it once ``record`` is committed.
    indicators : dict
        The decision's indicator values (also in ``record.signal["indicators_json"]``).
    """

    record: BarRecord
    state: State
    indicators: dict[str, float | str | None]

    bars = 1
    """How many bars it holds (a :class:`~runner.block.PreparedBlock` holds many)."""


class Bot:
    """A bot: its config, strategy, execution config and the state of its last committed bar.

    Parameters
    ----------
    config : BotConfig
        Validated config; ``config.spec`` is the strategy.
    """

    def __init__(self, config: BotConfig) -> None:
        if config.spec is None:
            raise ValueError(f"bot {config.bot_id!r}: config has no resolved strategy spec")
        self.config = config
        self.bot_id = config.bot_id
        self.spec: StrategySpec = config.spec
        self.params = self.spec.make_params(config.params)
        self.history_window = self.spec.history_window(self.params)
        self.execution_config = make_config(config.costs, config.stops, config.risk)
        self.config_hash = config.config_hash  # recorded with every decision
        self.strategy_hash = strategy_source_hash(self.spec)
        self.timeframe_ms = config.timeframe_ms
        self.state = new_state(config.initial_cash)
        self.cursor: int | None = None
        self.window = BarWindow(self.history_window)
        self.bars_processed = 0
        self.window_stale = True  # until recover() loads the state and the history window
        self.begin_ts = 0
        self._fills = new_fills(MAX_FILLS_PER_BAR)
        self._ahead: BlockDecisions | None = None  # decisions of bars read ahead (replay)
        self._ahead_values = None
        self._quoted_id = compact_json(self.bot_id)

    @property
    def after(self) -> int:
        """The bot's next bar is the first stored bar with ``ts > after`` (its cursor, else
        just before ``begin_ts``)."""
        return self.cursor if self.cursor is not None else self.begin_ts - 1

    # ------------------------------------------------------------------ recovery

    def recover(self, connection: Connection, begin_ts: int) -> None:
        """Load the state and cursor of the last committed bar and refill the history window.

        Startup and crash recovery are this one method: a bot never trusts its memory over the
        database. A bot without history starts fresh from ``begin_ts`` (close time of the first
        bar to trade) with the bars before it (at most its history window) as history.
        """
        loaded = load_state(connection, self.bot_id)
        self._ahead = None
        self.window = BarWindow(self.history_window)
        self.window_stale = False
        self.begin_ts = begin_ts
        if loaded is None:
            self.state = new_state(self.config.initial_cash)
            self.cursor = None
            history = bars_through(
                connection, self.config.market, begin_ts - 1, self.history_window - 1
            )
        else:
            self.state, self.cursor = loaded
            history = bars_through(connection, self.config.market, self.cursor, self.history_window)
        for bar in history:
            self.window.append(bar)

    # ------------------------------------------------------------------ the per-bar path

    def decide(self, bars: Bars, bar_ts: int) -> Decision:
        """Run the strategy on the window ending at ``bar_ts``; its last value is the decision."""
        try:
            target, values = self.spec.target_and_indicators(bars, self.params)
        except Exception as exc:  # noqa: BLE001 - any strategy failure restarts the bot
            raise StrategyError(self.bot_id, bar_ts, exc) from exc
        indicators = {}
        for name, series in values.items():
            value = float(series[-1]) if len(series) else math.nan
            indicators[name] = None if math.isnan(value) else value
        return Decision(float(target[-1]), indicators)

    def prepare(self, bar: tuple) -> PreparedBar | None:
        """Decide and fill ``bar`` (``(ts, open, high, low, close, volume)``) from the bot's state.

        Returns ``None`` when the state is already past ``bar`` (the caller must then
        :meth:`recover`). The bot is stale until the result is committed and :meth:`adopt`-ed,
        or until :meth:`recover`. Raises :class:`StrategyError` if the strategy fails.
        """
        if self.window_stale:
            raise RuntimeError(f"bot {self.bot_id!r}: recover() before processing more bars")
        ts, open_, high, low, close, _volume = bar
        ts = int(ts)
        self.window_stale = True  # the window holds a bar that is not committed yet
        self.window.append(bar)
        window_ts, o, h, l, c, v = self.window.arrays()
        decision = self.decide(Bars(window_ts, o, h, l, c, v, self.timeframe_ms), ts)
        status, state = step(
            self.state,
            self.execution_config,
            ts,
            open_,
            high,
            low,
            close,
            decision.raw_target,
            self._fills,
        )
        if status == STATUS_OUT_OF_ORDER:  # the state is past this bar: trust the database
            _log.warning(
                "bot %s: bar %s is not after the last processed bar; reloading", self.bot_id, ts
            )
            return None
        return self._prepared(ts, close, decision, state, status)

    def adopt(self, prepared: PreparedBar) -> None:
        """Take the state of ``prepared`` once its record is committed: the bot is current again."""
        self.state = prepared.state
        self.cursor = prepared.record.bar_ts
        self.bars_processed += 1
        self.window_stale = False

    # ------------------------------------------------------------------ the block path (replay)

    def prepare_block(
        self, rows: list[tuple], ahead
    ) -> tuple[list[PreparedBar | PreparedBlock], object]:
        """Decide, fill and adopt ``rows`` (consecutive bars after the cursor) with one
        strategy evaluation (:mod:`runner.block`); the replay's equivalent of
        :meth:`prepare` then :meth:`adopt` for each bar.

        ``ahead`` holds ``rows`` followed by the bars after them (the stored bars the caller
        has read): they are decided together and kept, so that the next call on them needs no
        evaluation. Like :meth:`adopt`, the bars are provisional until committed: on a failed
        or refused commit the bot must :meth:`recover`.

        Returns
        -------
        prepared : list of PreparedBar or PreparedBlock
            The bars processed, in order: one :class:`~runner.block.PreparedBlock` (none when
            the first bar is refused), or one :class:`PreparedBar` per bar on the per-bar path.
        stop : None, StrategyError or RELOAD
            ``None`` when every bar was processed; the strategy's error at the first bar it
            failed on (the bars before it are in ``prepared``: the block is then replayed bar
            by bar to find it); :data:`RELOAD` when the state is past a bar (reload from the
            database).
        """
        if self.window_stale:
            raise RuntimeError(f"bot {self.bot_id!r}: recover() before processing more bars")
        first_ts = int(rows[0][0])
        decisions = self._ahead
        start = None if decisions is None else decisions.covers(first_ts, len(rows))
        if start is None:
            ts, values = rows_to_arrays(list(ahead))
            try:
                decisions = decide_block(
                    self.spec, self.params, self.window.arrays(), ts, values, self.timeframe_ms
                )
            except Exception:  # noqa: BLE001 - the per-bar path finds the failing bar
                self._ahead = None
                return self._prepare_each(rows)
            self._ahead, self._ahead_values, start = decisions, values, 0
        end = start + len(rows)
        ts, values = decisions.ts[start:end], self._ahead_values[:, start:end]
        target = decisions.target[start:end]
        span = run_span(self.state, self.execution_config, ts, values, target)
        prepared = []
        if span.processed:
            indicators = {name: column[start:end] for name, column in decisions.indicators.items()}
            block = block_record(self, self.cursor, ts, values, target, indicators, span)
            prepared.append(block)
            self.window.extend(ts[: span.processed], values[:, : span.processed])
            self.state, self.cursor = block.state, block.record.bar_ts
            self.bars_processed += span.processed
        if span.processed < len(rows):  # the state is past this bar: trust the database
            _log.warning(
                "bot %s: bar %s is not after the last processed bar; reloading",
                self.bot_id,
                int(ts[span.processed]),
            )
            self._ahead = None
            self.window_stale = True
            return prepared, RELOAD
        return prepared, None

    def _prepare_each(self, rows: list[tuple]) -> tuple[list[PreparedBar], object]:
        """:meth:`prepare_block` bar by bar on the per-bar path (a block whose evaluation raised)."""
        prepared = []
        for row in rows:
            try:
                bar = self.prepare(row)
            except StrategyError as exc:
                return prepared, exc
            if bar is None:
                return prepared, RELOAD
            self.adopt(bar)
            prepared.append(bar)
        return prepared, None

    def _prepared(
        self, ts: int, close: float, decision: Decision, state: State, status: int
    ) -> PreparedBar:
        return self._record(
            ts,
            close,
            decision.raw_target,
            decision.indicators,
            state,
            status,
            self._fills[: max(status, 0)],
            now_ms(),
            self.cursor,
        )

    def _record(
        self,
        ts: int,
        close: float,
        raw: float,
        decided: dict,
        state: State,
        status: int,
        fills,
        created: int,
        previous: int | None,
    ) -> PreparedBar:
        """The rows of bar ``ts``: decided ``raw`` (with the indicators ``decided``), stepped
        into ``state`` with ``status`` and ``fills``; the per-bar and the block path share it."""
        pending = state.pending_target
        executed = status >= 0 and not math.isnan(pending)
        ordered = state.ordered_target
        if executed:
            halted = state.halt != HALT_NONE and state.pending_reason != REASON_SIGNAL
            action = "halt" if halted else ("buy" if pending > ordered else "sell")
            target = pending
        else:
            action = "halt" if state.halt != HALT_NONE else "hold"
            target = ordered
        indicators = dict(decided)
        if status == STATUS_BAD_BAR:
            indicators["error"] = BAD_BAR_NOTE
        signal = dict(
            bot_id=self.bot_id,
            ts=ts,
            action=action,
            target=float(target),
            raw_target=0.0 if math.isnan(raw) else raw,
            price=float(close),
            executed=bool(executed),
            indicators_json=indicators_json(indicators),
            created_at=created,
            config_hash=self.config_hash,
            strategy_hash=self.strategy_hash,
        )
        trades = (
            [
                dict(bot_id=self.bot_id, seq=seq, **row, created_at=created)
                for seq, row in enumerate(fill_rows(fills, self.timeframe_ms))
            ]
            if len(fills)
            else []
        )
        record = BarRecord(
            bot_id=self.bot_id,
            bar_ts=ts,
            signal=signal,
            trades=trades,
            state=dict(
                bot_id=self.bot_id,
                cash=float(state.cash),
                position=float(state.position),
                cursor_ts=ts,
                state_json=state,  # encoded when written (only a batch's last state is)
                updated_at=created,
            ),
            performance=dict(
                bot_id=self.bot_id,
                ts=ts,
                equity=float(state.equity),
                cash=float(state.cash),
                position=float(state.position),
                price=float(close),
            ),
            previous_ts=previous,
        )
        return PreparedBar(record, state, indicators)

    def messages(self, prepared: PreparedBar | PreparedBlock) -> list[tuple[str, dict]]:
        """``(channel, payload)`` to publish once ``prepared`` is committed: the signal, each
        fill, and a ``traded`` status when the bar had fills."""
        if type(prepared) is PreparedBlock:
            return prepared.messages(self._quoted_id, time.time_ns() // 1_000_000)
        record = prepared.record
        signal = {key: value for key, value in record.signal.items() if key not in _NOT_PUBLISHED}
        signal["indicators"] = prepared.indicators
        signal["published_at"] = time.time_ns() // 1_000_000
        text = signal_json(signal, self._quoted_id)
        payload = signal if text is None else Encoded(signal, text)
        messages = [(signals_channel(self.bot_id), payload)]
        messages.extend((trades_channel(self.bot_id), trade) for trade in record.trades)
        if record.trades:
            messages.append(
                (
                    status_channel(self.bot_id),
                    dict(
                        bot_id=self.bot_id,
                        event="traded",
                        ts=record.bar_ts,
                        cash=record.state["cash"],
                        position=record.state["position"],
                        equity=record.performance["equity"],
                    ),
                )
            )
        return messages
