"""A portfolio bot's per-bar path, and the group that drives it.

A portfolio bot trades a :class:`~research.portfolio_model.PortfolioSpec` over a universe of
markets with one book (:mod:`research.kernels.portfolio`). Its grid is the union of its markets'
stored close times after its cursor, as in the portfolio backtest. For each grid bar ``t``, in
order:

1. **when**: ``t`` is decided once every market of the universe has committed its bar ``t``, or
   is known to have none there (its next stored bar is later), or ``grace_seconds`` have passed
   since ``t``'s close time: a market still missing then is treated as missing at ``t`` (it
   does not trade at ``t``) and the decision records which markets were present. A replay waits
   for nothing: what is stored is all there is;
2. :meth:`PortfolioBot.prepare`: the strategy runs on each market's last
   ``spec.history_window(params)`` stored bars up to ``t``, aligned
   (:func:`research.panel.align` with ``window=True``, exactly what
   :func:`research.panel.decision_window` gives the history-window check); the last row of its
   weights is the decision at ``t``'s close. Then
   :func:`research.kernels.portfolio.step_book` advances a copy of the persisted book with bar
   ``t`` (the present markets' prices; ``nan`` for the others) and that decision: the very
   function the backtest loops;
3. :func:`runner.ledger.write_bars` commits the signal (the weights, the markets present and
   missing), the fills (with their market in ``trades.symbol``), the book (``bot_state``) and
   an equity snapshot in ONE transaction, exactly once per (bot, bar);
4. after the commit the bot adopts the new book and publishes, as a single-market bot does.

Records of a portfolio bot: ``signals.target`` is the gross weight ordered (sum of absolute
weights), ``raw_target`` the strategy's, ``price`` the book's equity at the close;
``bot_state.position`` and ``bot_performance.position``/``price`` are 0 (the positions are in
``state_json``: ``{"book": [...], "legs": [[...], ...], "symbols": [...]}``).

:class:`PortfolioGroup` has the interface of :class:`runner.market_group.MarketGroup` with one
member, so the runner supervises, recovers and restarts a portfolio bot as any other.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np
from sqlalchemy import Connection, select

from candela.core import schema
from candela.core.bus import signals_channel, status_channel, trades_channel
from candela.core.db import now_ms
from research.kernels.portfolio import step_book
from research.kernels.portfolio_records import (
    L_ORDERED,
    L_PENDING,
    L_POSITION,
    MAX_FILLS_PER_MARKET,
    BookState,
    make_book_config,
    new_book,
    new_book_fills,
)
from research.kernels.records import HALT_NONE, STATUS_BAD_BAR, STATUS_OUT_OF_ORDER, fill_rows
from research.panel import align
from research.types import Bars
from runner.bot import PreparedBar, StrategyError
from runner.ledger import BarRecord
from runner.market_data import BarWindow, bars_after, bars_through
from runner.market_group import Member
from runner.portfolio_config import PortfolioBotConfig

_log = logging.getLogger(__name__)
_NOT_PUBLISHED = ("indicators_json", "config_hash", "strategy_hash")
GROSS_TOLERANCE = 1e-9


class PortfolioBot:
    """A portfolio bot: its config, strategy, book configuration and the book of its last
    committed bar (see the module docstring).

    Parameters
    ----------
    config : PortfolioBotConfig
        Validated; ``config.spec`` is the portfolio strategy.
    chunk : int
        Bars read per market and query while catching up.
    """

    def __init__(self, config: PortfolioBotConfig, chunk: int = 2000) -> None:
        if config.spec is None:
            raise ValueError(f"bot {config.bot_id!r}: config has no resolved portfolio strategy")
        self.config = config
        self.bot_id = config.bot_id
        self.spec = config.spec
        self.params = self.spec.make_params(config.params)
        self.history_window = self.spec.history_window(self.params, config.timeframe_ms)
        self.book_config = make_book_config(
            config.costs, config.stops, config.limits, config.book_rebalance
        )
        self.config_hash = config.config_hash
        self.strategy_hash = _source_hash(self.spec.defined_by)
        self.symbols = list(config.symbols)
        self.chunk = chunk
        self.book, self.legs = new_book(config.initial_cash, len(self.symbols))
        self.cursor: int | None = None
        self.begin_ts = 0
        self.windows = [BarWindow(self.history_window) for _ in self.symbols]
        self.pending: list[deque] = [deque() for _ in self.symbols]
        self.read_to: list[int] = [0] * len(self.symbols)
        self.bars_processed = 0
        self.window_stale = True
        self._fills = new_book_fills(MAX_FILLS_PER_MARKET * len(self.symbols))

    @property
    def after(self) -> int:
        return self.cursor if self.cursor is not None else self.begin_ts - 1

    # ------------------------------------------------------------------ recovery

    def recover(self, connection: Connection, begin_ts: int) -> None:
        """Load the book and cursor of the last committed bar and each market's history window
        (a fresh bot: the ``history_window`` bars before ``begin_ts``)."""
        loaded = load_book(connection, self.bot_id, len(self.symbols))
        self.begin_ts = begin_ts
        if loaded is None:
            self.book, self.legs = new_book(self.config.initial_cash, len(self.symbols))
            self.cursor = None
        else:
            self.book, self.legs, self.cursor = loaded
        through = self.after
        self.windows = [BarWindow(self.history_window) for _ in self.symbols]
        for window, market in zip(self.windows, self.config.markets, strict=False):
            for bar in bars_through(connection, market, through, self.history_window):
                window.append(bar)
        self.pending = [deque() for _ in self.symbols]
        self.read_to = [through] * len(self.symbols)
        self.window_stale = False

    # ------------------------------------------------------------------ the next grid bar

    def next_bar(
        self, connection: Connection, *, follow: bool, until_ts: int | None, now: int
    ) -> tuple[int, list] | None:
        """The next grid bar to decide, ``(ts, [bar or None per market])``, or ``None`` when
        there is none yet (module docstring, step 1)."""
        for j, market in enumerate(self.config.markets):
            if not self.pending[j]:
                rows = bars_after(
                    connection, market, self.read_to[j], until_ts=until_ts, limit=self.chunk
                )
                if rows:
                    self.pending[j].extend(rows)
                    self.read_to[j] = int(rows[-1][0])
        heads = [int(queue[0][0]) for queue in self.pending if queue]
        if not heads:
            return None
        ts = min(heads)
        bars = [queue[0] if queue and int(queue[0][0]) == ts else None for queue in self.pending]
        unknown = [j for j, bar in enumerate(bars) if bar is None and not self.pending[j]]
        if follow and unknown and now < ts + self.config.grace_seconds * 1000.0:
            return None  # wait for the markets that have not committed this bar yet
        for j, bar in enumerate(bars):
            if bar is not None:
                self.pending[j].popleft()
        return ts, bars

    # ------------------------------------------------------------------ the per-bar path

    def decide(self, ts: int) -> np.ndarray:
        """The strategy's weights at ``ts`` on every market's history window."""
        try:
            windows = zip(self.symbols, self.windows, strict=True)
            panel = align(
                {
                    symbol: Bars(*window.arrays(), self.config.timeframe_ms)
                    for symbol, window in windows
                },
                window=True,
            )
            weights = self.spec.evaluate(panel, self.params).weights[-1]
            gross = float(np.nansum(np.abs(weights)))
            limit = self.config.limits.max_gross
            if gross > limit * (1.0 + GROSS_TOLERANCE):
                raise ValueError(
                    f"the strategy asks for a gross weight of {gross:.6g}, above "
                    f"the book's limit max_gross={limit:g}"
                )
        except Exception as exc:  # noqa: BLE001 - any strategy failure restarts the bot
            raise StrategyError(self.bot_id, ts, exc) from exc
        return weights

    def prepare(self, ts: int, bars: list) -> PreparedBar | None:
        """Decide and fill grid bar ``ts`` (``bars``: each market's stored bar, or ``None``).

        Returns ``None`` when the book is already past ``ts`` (the caller must then
        :meth:`recover`). The bot is stale until the result is committed and adopted.
        """
        if self.window_stale:
            raise RuntimeError(f"bot {self.bot_id!r}: recover() before processing more bars")
        self.window_stale = True
        m = len(self.symbols)
        prices = np.full((4, m), np.nan)
        for j, bar in enumerate(bars):
            if bar is not None:
                self.windows[j].append(bar)
                prices[:, j] = bar[1:5]
        weights = self.decide(ts)
        legs = self.legs.copy()
        status, book = step_book(
            self.book, legs, self.book_config, ts, *prices, weights, self._fills
        )
        if status == STATUS_OUT_OF_ORDER:
            _log.warning(
                "bot %s: bar %s is not after the last processed bar; reloading", self.bot_id, ts
            )
            return None
        return self._prepared(ts, bars, weights, book, legs, status)

    def adopt(self, prepared: PreparedBar) -> None:
        """Take the book of ``prepared`` once its record is committed."""
        self.book, self.legs = prepared.state
        self.cursor = prepared.record.bar_ts
        self.bars_processed += 1
        self.window_stale = False

    def _prepared(
        self,
        ts: int,
        bars: list,
        weights: np.ndarray,
        book: BookState,
        legs: np.ndarray,
        status: int,
    ) -> PreparedBar:
        created = now_ms()
        if status < 0:  # a rejected bar: nothing changes
            book, legs = self.book, self.legs.copy()
        pending = legs[:, L_PENDING]
        ordered = np.where(np.isnan(pending), legs[:, L_ORDERED], pending)
        orders = bool((~np.isnan(pending)).any())
        action = (
            ("halt" if book.halt != HALT_NONE else "rebalance")
            if orders
            else ("halt" if book.halt != HALT_NONE else "hold")
        )
        present = [
            symbol for symbol, bar in zip(self.symbols, bars, strict=True) if bar is not None
        ]
        indicators: dict = {
            "weights": {
                symbol: (None if math.isnan(w) else float(w))
                for symbol, w in zip(self.symbols, weights, strict=False)
            },
            "present": present,
            "missing": [symbol for symbol in self.symbols if symbol not in present],
        }
        if status == STATUS_BAD_BAR:
            indicators["error"] = "bar rejected by the execution function (bad prices); not traded"
        signal = dict(
            bot_id=self.bot_id,
            ts=ts,
            action=action,
            target=float(np.abs(ordered).sum()),
            raw_target=float(np.nansum(np.abs(weights))),
            price=float(book.equity),
            executed=orders,
            indicators_json=json.dumps(indicators, sort_keys=True),
            created_at=created,
            config_hash=self.config_hash,
            strategy_hash=self.strategy_hash,
        )
        fills = self._fills[: max(status, 0)]
        trades = [
            dict(
                bot_id=self.bot_id,
                seq=seq,
                **row,
                created_at=created,
                symbol=self.symbols[int(market)],
            )
            for seq, (row, market) in enumerate(
                zip(fill_rows(fills, self.config.timeframe_ms), fills["market"], strict=False)
            )
        ]
        record = BarRecord(
            bot_id=self.bot_id,
            bar_ts=ts,
            signal=signal,
            trades=trades,
            previous_ts=self.cursor,
            state=dict(
                bot_id=self.bot_id,
                cash=float(book.cash),
                position=0.0,
                cursor_ts=ts,
                state_json=encode_book(book, legs, self.symbols),
                updated_at=created,
            ),
            performance=dict(
                bot_id=self.bot_id,
                ts=ts,
                equity=float(book.equity),
                cash=float(book.cash),
                position=0.0,
                price=0.0,
            ),
        )
        return PreparedBar(record, (book, legs), indicators)

    def messages(self, prepared: PreparedBar) -> list[tuple[str, dict]]:
        """``(channel, payload)`` to publish once ``prepared`` is committed."""
        record = prepared.record
        signal = {key: value for key, value in record.signal.items() if key not in _NOT_PUBLISHED}
        signal["indicators"] = prepared.indicators
        signal["published_at"] = time.time_ns() // 1_000_000
        messages = [(signals_channel(self.bot_id), signal)]
        messages.extend((trades_channel(self.bot_id), trade) for trade in record.trades)
        if record.trades:
            book, legs = prepared.state
            messages.append(
                (
                    status_channel(self.bot_id),
                    dict(
                        bot_id=self.bot_id,
                        event="traded",
                        ts=record.bar_ts,
                        cash=float(book.cash),
                        positions={
                            symbol: float(units)
                            for symbol, units in zip(
                                self.symbols, legs[:, L_POSITION], strict=False
                            )
                        },
                        equity=float(book.equity),
                    ),
                )
            )
        return messages


class PortfolioGroup:
    """Drives one portfolio bot through its grid bars, with the interface of
    :class:`runner.market_group.MarketGroup` (see the module docstring).

    Parameters
    ----------
    publish_many : callable
        The bus's ``publish_many``; called only after commits.
    follow : bool
        Live (wait for bars, with the grace time) or replay (stop when no bar is left).
    until_ts : int, optional
        Bars with a later close time are not processed.
    write_lock : context manager, optional
        Held around each transaction (SQLite's single writer).
    clock : callable
        Wall-clock ms (the grace time is measured with it).
    """

    def __init__(
        self,
        publish_many: Callable[[Iterable[tuple[str, dict]]], None],
        *,
        follow: bool = True,
        until_ts: int | None = None,
        write_lock: AbstractContextManager | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.publish_many = publish_many
        self.follow = follow
        self.until_ts = until_ts
        self.write_lock = write_lock if write_lock is not None else nullcontext()
        self.clock = clock
        self.notified_at = -math.inf
        self.members: list[Member] = []
        self._joining: deque[Member] = deque()

    def join(self, member: Member) -> None:
        self._joining.append(member)

    @property
    def idle(self) -> bool:
        return not self.members and not self._joining

    def close(self) -> None:
        """Nothing to stop: a portfolio group commits in the calling thread (the runner closes
        every group after its last pass, as it does :class:`~runner.market_group.MarketGroup`)."""

    def run_pass(self, connection: Connection) -> None:
        """Advance the bot bar by bar, one transaction each, until it has to wait."""
        from runner.ledger import write_bars

        while True:
            while self._joining:
                self.members.append(self._joining.popleft())
            if not self.members:
                return
            member = self.members[0]
            if member.should_stop():
                self._leave(member, None)
                continue
            bot = member.bot
            found = bot.next_bar(
                connection, follow=self.follow, until_ts=self.until_ts, now=self.clock()
            )
            if connection.in_transaction():
                connection.rollback()
            if found is None:
                if not self.follow:
                    self._leave(member, None)
                return
            try:
                prepared = bot.prepare(*found)
            except Exception as exc:  # noqa: BLE001 - the bot leaves with its error
                self._leave(member, exc)
                continue
            if prepared is None:
                bot.recover(connection, bot.begin_ts)
                continue
            with self.write_lock:
                written = write_bars(connection, [prepared.record])
            if bot.bot_id in written:
                bot.adopt(prepared)
                self.publish_many(bot.messages(prepared))
            else:  # recorded before: the database wins
                bot.recover(connection, bot.begin_ts)
            if connection.in_transaction():
                connection.rollback()

    def fail_all(self, error: BaseException) -> None:
        for member in list(self.members):
            self._leave(member, error)

    def _leave(self, member: Member, error: BaseException | None) -> None:
        self.members.remove(member)
        member.on_leave(error)


# --------------------------------------------------------------------------- the stored book


def encode_book(book: BookState, legs: np.ndarray, symbols: list[str]) -> str:
    """The JSON of a book: ``{"book": [...], "legs": [[...], ...], "symbols": [...]}``,
    ``nan`` as ``null``; floats round-trip exactly."""
    value = lambda x: None if math.isnan(x) else float(x)  # noqa: E731
    return json.dumps(
        {
            "book": [value(x) for x in book],
            "legs": [[value(x) for x in row] for row in legs.tolist()],
            "symbols": list(symbols),
        }
    )


def decode_book(text: str, n_markets: int) -> tuple[BookState, np.ndarray]:
    """Inverse of :func:`encode_book`.

    Raises
    ------
    ValueError
        If ``text`` is not a book of ``n_markets`` markets.
    """
    data = json.loads(text)
    if (
        not isinstance(data, dict)
        or len(data.get("legs", ())) != n_markets
        or len(data.get("book", ())) != len(BookState._fields)
    ):
        raise ValueError(
            f"a stored portfolio book must hold {len(BookState._fields)} book "
            f"values and {n_markets} legs, got {text[:200]!r}"
        )
    number = lambda x: math.nan if x is None else float(x)  # noqa: E731
    book = BookState._make(number(x) for x in data["book"])
    legs = np.array([[number(x) for x in row] for row in data["legs"]], dtype=np.float64)
    return book, legs.reshape(n_markets, -1)


def load_book(connection: Connection, bot_id: str, n_markets: int):
    """``(book, legs, cursor_ts)`` of ``bot_id``, or ``None`` if it processed no bar."""
    row = connection.execute(
        select(schema.bot_state.c.state_json, schema.bot_state.c.cursor_ts).where(
            schema.bot_state.c.bot_id == bot_id
        )
    ).first()
    if row is None or row.cursor_ts is None:
        return None
    book, legs = decode_book(row.state_json, n_markets)
    return book, legs, int(row.cursor_ts)


def _source_hash(function) -> str | None:
    import hashlib

    try:
        name = inspect.getsourcefile(function) if function is not None else None
    except TypeError:
        return None
    if not name or not Path(name).is_file():
        return None
    return hashlib.sha256(Path(name).read_bytes()).hexdigest()
