"""What the live monitor shows, read from the database (the truth; Redis only notifies).

:func:`bot_rows` gives one :class:`BotRow` per bot: status, heartbeat age, position, equity,
P&L, last decision, bars behind its market, and the red flags:

* ``heartbeat stale``: the bot is ``active`` but its heartbeat is older than ``stale_after_ms``
  (or it never had one): no runner is running it;
* ``market stalled``: the latest market condition any runner recorded for the bot's market
  (:mod:`runner.health`, in ``bot_events`` of the bots it hosts there) is ``market_stalled``:
  its bars stopped (a runner that died after recording it is overruled by a live one that
  recorded ``market_resumed`` since);
* ``failed``: the bot was marked failed after repeated crashes.

The other readers serve the monitor's chart: :func:`bars_between`, :func:`fills_between`,
:func:`equity_between`. All times are int64 ms UTC.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import Engine, and_, func, select

from candela.core import schema
from candela.core.db import now_ms
from runner.health import BEHIND_EVENTS, MARKET_EVENTS

STALE_AFTER_MS = 15_000
"""Default age of a heartbeat that counts as stale (three of the runner's default heartbeats)."""


@dataclass
class BotRow:
    """One line of the monitor's table (``None``: not known yet, e.g. no bar processed)."""

    bot_id: str
    strategy: str
    market: tuple[str, str, str]
    status: str
    heartbeat_at: int | None
    heartbeat_age_ms: int | None
    cursor_ts: int | None
    position: float | None
    equity: float | None
    initial_cash: float
    last_action: str | None
    last_signal_ts: int | None
    last_target: float | None
    newest_bar_ts: int | None
    bars_behind: int | None
    market_condition: dict | None = None
    """The latest ``market_stalled``/``market_resumed`` payload recorded for its market."""
    behind_condition: dict | None = None
    """The latest ``bot_behind``/``bot_caught_up`` payload recorded for it."""
    flags: list[str] = field(default_factory=list)

    @property
    def pnl(self) -> float | None:
        """Equity minus initial cash (quote currency)."""
        return None if self.equity is None else self.equity - self.initial_cash

    @property
    def pnl_fraction(self) -> float | None:
        """P&L as a fraction of the initial cash."""
        return None if self.equity is None else self.equity / self.initial_cash - 1.0


def bot_rows(
    engine: Engine,
    bot_ids: list[str] | None = None,
    *,
    now: int | None = None,
    stale_after_ms: int = STALE_AFTER_MS,
) -> list[BotRow]:
    """One :class:`BotRow` per bot (``bot_ids``, default every bot but retired versions), by id."""
    now = now_ms() if now is None else now
    bots, state, signals, performance = (
        schema.bots,
        schema.bot_state,
        schema.signals,
        schema.bot_performance,
    )
    with engine.connect() as connection:
        query = select(bots).order_by(bots.c.bot_id)
        query = (
            query.where(bots.c.bot_id.in_(bot_ids))
            if bot_ids is not None
            else query.where(bots.c.status != "retired")
        )
        rows = connection.execute(query).all()
        ids = [row.bot_id for row in rows]
        states = {
            row.bot_id: row
            for row in connection.execute(select(state).where(state.c.bot_id.in_(ids)))
        }
        latest = (
            select(signals.c.bot_id, func.max(signals.c.ts).label("ts"))
            .where(signals.c.bot_id.in_(ids))
            .group_by(signals.c.bot_id)
            .subquery()
        )
        last_signals = {
            row.bot_id: row
            for row in connection.execute(
                select(signals.c.bot_id, signals.c.ts, signals.c.action, signals.c.target).join(
                    latest, and_(signals.c.bot_id == latest.c.bot_id, signals.c.ts == latest.c.ts)
                )
            )
        }
        equities = {}
        for bot_id, cursor in ((bot_id, row.cursor_ts) for bot_id, row in states.items()):
            if cursor is not None:
                equities[bot_id] = connection.execute(
                    select(performance.c.equity).where(
                        performance.c.bot_id == bot_id, performance.c.ts == cursor
                    )
                ).scalar()
        markets = {(row.exchange, row.symbol, row.timeframe) for row in rows}
        newest = {market: _newest(connection, market) for market in markets}
        conditions = _conditions(connection, ids)
        by_market = _market_conditions(connection, markets)
        result = []
        for row in rows:
            market = (row.exchange, row.symbol, row.timeframe)
            config = json.loads(row.config_json)
            bot_state = states.get(row.bot_id)
            cursor = None if bot_state is None else bot_state.cursor_ts
            signal = last_signals.get(row.bot_id)
            behind = None
            if newest[market] is not None:
                behind = (
                    _count(connection, market, cursor, newest[market])
                    if cursor is not None
                    else None
                )
            age = None if row.heartbeat_at is None else now - int(row.heartbeat_at)
            bot = BotRow(
                bot_id=row.bot_id,
                strategy=row.strategy,
                market=market,
                status=row.status,
                heartbeat_at=row.heartbeat_at,
                heartbeat_age_ms=age,
                cursor_ts=cursor,
                position=None if bot_state is None else bot_state.position,
                equity=equities.get(row.bot_id),
                initial_cash=float(config.get("initial_cash", 10_000.0)),
                last_action=None if signal is None else signal.action,
                last_signal_ts=None if signal is None else int(signal.ts),
                last_target=None if signal is None else float(signal.target),
                newest_bar_ts=newest[market],
                bars_behind=behind,
                market_condition=by_market.get(market),
            )
            bot.flags = _flags(bot, stale_after_ms)
            bot.behind_condition = conditions.get(row.bot_id)
            result.append(bot)
    return result


def _flags(bot: BotRow, stale_after_ms: int) -> list[str]:
    flags = []
    if bot.status == "active" and (
        bot.heartbeat_age_ms is None or bot.heartbeat_age_ms > stale_after_ms
    ):
        flags.append("heartbeat stale")
    if (bot.market_condition or {}).get("event") == MARKET_EVENTS[0]:
        flags.append("market stalled")
    if bot.status == "failed":
        flags.append("failed")
    return flags


def _conditions(connection, bot_ids: list[str]) -> dict[str, dict]:
    """``{bot_id: payload}`` of each bot's latest ``bot_behind``/``bot_caught_up`` event."""
    events = schema.bot_events
    latest = (
        select(events.c.bot_id, func.max(events.c.id).label("id"))
        .where(events.c.bot_id.in_(bot_ids), events.c.event.in_(BEHIND_EVENTS))
        .group_by(events.c.bot_id)
        .subquery()
    )
    rows = connection.execute(
        select(events.c.bot_id, events.c.event, events.c.detail).join(
            latest, events.c.id == latest.c.id
        )
    ).all()
    return {
        row.bot_id: json.loads(row.detail) if row.detail else {"event": row.event} for row in rows
    }


def _market_conditions(connection, markets) -> dict[tuple[str, str, str], dict]:
    """``{market: payload}`` of the latest ``market_stalled``/``market_resumed`` recorded for it
    (by any runner, in the events of any of its bots)."""
    events, bots = schema.bot_events, schema.bots
    found = {}
    for market in markets:
        exchange, symbol, timeframe = market
        row = connection.execute(
            select(events.c.event, events.c.detail)
            .join(bots, bots.c.bot_id == events.c.bot_id)
            .where(
                bots.c.exchange == exchange,
                bots.c.symbol == symbol,
                bots.c.timeframe == timeframe,
                events.c.event.in_(MARKET_EVENTS),
            )
            .order_by(events.c.ts.desc(), events.c.id.desc())
            .limit(1)
        ).first()
        if row is not None:
            found[market] = json.loads(row.detail) if row.detail else {"event": row.event}
    return found


def _market_clause(market):
    exchange, symbol, timeframe = market
    table = schema.ohlcv
    return (table.c.exchange == exchange, table.c.symbol == symbol, table.c.timeframe == timeframe)


def _newest(connection, market) -> int | None:
    value = connection.execute(
        select(func.max(schema.ohlcv.c.ts)).where(*_market_clause(market))
    ).scalar()
    return None if value is None else int(value)


def _count(connection, market, after: int, through: int) -> int:
    return int(
        connection.execute(
            select(func.count())
            .select_from(schema.ohlcv)
            .where(*_market_clause(market), schema.ohlcv.c.ts > after, schema.ohlcv.c.ts <= through)
        ).scalar_one()
    )


# --------------------------------------------------------------------------- the chart's data


def bars_between(
    engine: Engine, market, after: int | None, through: int | None, *, last: int = 300
) -> dict:
    """The stored bars with ``after < ts <= through`` (either bound optional), at most the
    ``last`` of them, as arrays ``ts, open, high, low, close``."""
    table = schema.ohlcv
    query = select(table.c.ts, table.c.open, table.c.high, table.c.low, table.c.close).where(
        *_market_clause(market)
    )
    if after is not None:
        query = query.where(table.c.ts > after)
    if through is not None:
        query = query.where(table.c.ts <= through)
    with engine.connect() as connection:
        rows = connection.execute(query.order_by(table.c.ts.desc()).limit(last)).all()[::-1]
    return _arrays(rows, ("ts", "open", "high", "low", "close"))


def fills_between(
    engine: Engine, bot_id: str, after: int | None, through: int | None
) -> list[dict]:
    """The bot's fills of the bars with ``after < bar_ts <= through``, in order."""
    table = schema.trades
    query = select(
        table.c.bar_ts,
        table.c.seq,
        table.c.ts,
        table.c.side,
        table.c.size,
        table.c.price,
        table.c.reason,
    ).where(table.c.bot_id == bot_id)
    if after is not None:
        query = query.where(table.c.bar_ts > after)
    if through is not None:
        query = query.where(table.c.bar_ts <= through)
    with engine.connect() as connection:
        return [
            dict(row._mapping)
            for row in connection.execute(query.order_by(table.c.bar_ts, table.c.seq))
        ]


def equity_between(
    engine: Engine, bot_id: str, after: int | None, through: int | None, *, last: int = 300
) -> dict:
    """The bot's equity after each bar with ``after < ts <= through`` (the ``last`` of them)."""
    table = schema.bot_performance
    query = select(table.c.ts, table.c.equity).where(table.c.bot_id == bot_id)
    if after is not None:
        query = query.where(table.c.ts > after)
    if through is not None:
        query = query.where(table.c.ts <= through)
    with engine.connect() as connection:
        rows = connection.execute(query.order_by(table.c.ts.desc()).limit(last)).all()[::-1]
    return _arrays(rows, ("ts", "equity"))


def _arrays(rows, names) -> dict:
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in names]
    return {
        name: np.asarray(column, dtype=np.int64 if name == "ts" else np.float64)
        for name, column in zip(names, columns, strict=True)
    }
