"""The runner's database records: bots, their state, signals, trades, equity and events.

The database is the truth (DESIGN.md §5). :func:`write_bar` commits everything one bar changes
for one bot in ONE transaction, guarded by the ``uq_signals_bot_ts`` unique key: a bar that was
already recorded (a retry after an ambiguous commit, a second runner) writes nothing and returns
``False``. Nothing here publishes; callers publish after the commit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import Connection, Engine, func, select

from candela import schema
from candela.db import now_ms

BOT_STATUSES = ("active", "stopped", "failed")


@dataclass
class BarRecord:
    """Rows one bar produces for one bot (see :mod:`candela.schema` for the columns)."""

    bot_id: str
    bar_ts: int
    signal: dict
    trades: list[dict] = field(default_factory=list)
    state: dict = field(default_factory=dict)
    performance: dict = field(default_factory=dict)


def _insert(connection: Connection, table):
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def write_bar(connection: Connection, record: BarRecord) -> bool:
    """Record one processed bar in one transaction; ``False`` if it was recorded before.

    Writes the signal (first, on ``uq_signals_bot_ts``: a duplicate stops here and nothing is
    written), the trades, the ``bot_state`` row (upsert) and the ``bot_performance`` snapshot.
    On PostgreSQL the four inserts travel as ONE statement (data-modifying CTEs that all depend
    on the signal insert), which is atomic by itself: on an ``AUTOCOMMIT`` connection a bar
    costs a single round trip, commit included. The caller must not hold an open transaction
    on ``connection``.
    """
    with connection.begin():
        if connection.dialect.name == "postgresql":
            statement = _postgres_bar_statement(len(record.trades))
            result = connection.exec_driver_sql(statement, _postgres_bar_params(record))
            return result.scalar_one() == 1
        inserted = connection.execute(
            _insert(connection, schema.signals).on_conflict_do_nothing(
                index_elements=["bot_id", "ts"]
            ),
            record.signal,
        )
        if inserted.rowcount == 0:
            return False
        if record.trades:
            connection.execute(schema.trades.insert(), record.trades)
        state_insert = _insert(connection, schema.bot_state)
        connection.execute(
            state_insert.on_conflict_do_update(
                index_elements=["bot_id"],
                set_={key: state_insert.excluded[key] for key in _STATE_UPDATES},
            ),
            record.state,
        )
        connection.execute(schema.bot_performance.insert(), record.performance)
    return True


_STATE_UPDATES = ("cash", "position", "cursor_ts", "state_json", "updated_at")
_SIGNAL_COLUMNS = ("bot_id", "ts", "action", "target", "raw_target", "price", "executed",
                   "indicators_json", "created_at")
_TRADE_COLUMNS = ("bot_id", "bar_ts", "seq", "ts", "side", "size", "price", "fee", "reason",
                  "realized_pnl", "cash_after", "position_after", "created_at")
_STATE_COLUMNS = ("bot_id", "cash", "position", "cursor_ts", "state_json", "updated_at")
_PERFORMANCE_COLUMNS = ("bot_id", "ts", "equity", "cash", "position", "price")
_POSTGRES_STATEMENTS: dict[int, str] = {}


def _postgres_bar_statement(n_trades: int):
    """The one-round-trip SQL for a bar with ``n_trades`` fills (cached per count).

    Plain driver SQL (sent with ``exec_driver_sql``): the hot path skips statement compilation.
    """
    statement = _POSTGRES_STATEMENTS.get(n_trades)
    if statement is not None:
        return statement

    def names(prefix: str, columns) -> str:  # psycopg2 "pyformat" placeholders
        return ", ".join(f"%({prefix}{column})s" for column in columns)

    parts = [
        f"WITH sig AS (INSERT INTO signals ({', '.join(_SIGNAL_COLUMNS)}) "
        f"VALUES ({names('g_', _SIGNAL_COLUMNS)}) ON CONFLICT (bot_id, ts) DO NOTHING RETURNING 1 AS ok)",
        f"state AS (INSERT INTO bot_state ({', '.join(_STATE_COLUMNS)}) SELECT {names('s_', _STATE_COLUMNS)} "
        f"FROM sig ON CONFLICT (bot_id) DO UPDATE SET "
        + ", ".join(f"{column} = EXCLUDED.{column}" for column in _STATE_UPDATES) + ")",
        f"perf AS (INSERT INTO bot_performance ({', '.join(_PERFORMANCE_COLUMNS)}) "
        f"SELECT {names('p_', _PERFORMANCE_COLUMNS)} FROM sig)",
    ]
    for seq in range(n_trades):
        parts.append(
            f"fill{seq} AS (INSERT INTO trades ({', '.join(_TRADE_COLUMNS)}) "
            f"SELECT {names(f't{seq}_', _TRADE_COLUMNS)} FROM sig)"
        )
    statement = ", ".join(parts) + " SELECT count(*) FROM sig"
    _POSTGRES_STATEMENTS[n_trades] = statement
    return statement


def _postgres_bar_params(record: BarRecord) -> dict:
    params = {f"g_{key}": value for key, value in record.signal.items()}
    params.update({f"s_{key}": value for key, value in record.state.items()})
    params.update({f"p_{key}": value for key, value in record.performance.items()})
    for seq, trade in enumerate(record.trades):
        params.update({f"t{seq}_{key}": value for key, value in trade.items()})
    return params


# --------------------------------------------------------------------------- state vectors


def encode_state(state: np.ndarray) -> str:
    """JSON list of the state vector; ``nan`` as ``null``; floats round-trip exactly."""
    return json.dumps([None if math.isnan(value) else float(value) for value in state.tolist()])


def decode_state(text: str) -> np.ndarray:
    """Inverse of :func:`encode_state`."""
    return np.array([math.nan if value is None else value for value in json.loads(text)], dtype=np.float64)


def load_state(connection: Connection, bot_id: str) -> tuple[np.ndarray, int] | None:
    """Return ``(state vector, cursor_ts)`` of ``bot_id``, or ``None`` if it never processed a bar."""
    row = connection.execute(
        select(schema.bot_state.c.state_json, schema.bot_state.c.cursor_ts).where(
            schema.bot_state.c.bot_id == bot_id
        )
    ).first()
    if row is None or row.cursor_ts is None:
        return None
    return decode_state(row.state_json), int(row.cursor_ts)


# --------------------------------------------------------------------------- bots


def register_bots(engine: Engine, configs: Iterable, *, now: int | None = None) -> list[str]:
    """Insert or update the ``bots`` rows of ``configs``; return the ids whose config changed.

    A new bot starts ``active``. An existing bot keeps its status (a bot stopped from another
    terminal stays stopped); its stored config is replaced by the file's.
    """
    now = now_ms() if now is None else now
    changed = []
    with engine.begin() as connection:
        for config in configs:
            text = config.to_json()
            row = connection.execute(
                select(schema.bots.c.config_json).where(schema.bots.c.bot_id == config.bot_id)
            ).first()
            values = dict(
                strategy=config.strategy[:64],
                exchange=config.exchange,
                symbol=config.symbol,
                timeframe=config.timeframe,
                config_json=text,
                updated_at=now,
            )
            if row is None:
                connection.execute(
                    schema.bots.insert().values(
                        bot_id=config.bot_id, status="active", restarts=0, created_at=now, **values
                    )
                )
            elif row.config_json != text:
                connection.execute(
                    schema.bots.update().where(schema.bots.c.bot_id == config.bot_id).values(**values)
                )
                changed.append(config.bot_id)
    return changed


def bot_row(connection: Connection, bot_id: str):
    """The ``bots`` row of ``bot_id`` or ``None``."""
    return connection.execute(select(schema.bots).where(schema.bots.c.bot_id == bot_id)).first()


def bot_statuses(connection: Connection, bot_ids: Sequence[str] | None = None) -> dict[str, str]:
    """``{bot_id: status}`` for ``bot_ids`` (all bots when ``None``)."""
    query = select(schema.bots.c.bot_id, schema.bots.c.status)
    if bot_ids is not None:
        query = query.where(schema.bots.c.bot_id.in_(list(bot_ids)))
    return {row.bot_id: row.status for row in connection.execute(query)}


def set_status(engine: Engine, bot_id: str, status: str, *, error: str | None = None, event: str | None = None,
               detail: str | None = None) -> bool:
    """Set a bot's status (and ``last_error``), optionally logging an event; ``False`` if unknown."""
    if status not in BOT_STATUSES:
        raise ValueError(f"status must be one of {', '.join(BOT_STATUSES)}, got {status!r}")
    now = now_ms()
    values: dict = {"status": status, "updated_at": now}
    if error is not None:
        values["last_error"] = error[:2000]
    with engine.begin() as connection:
        result = connection.execute(
            schema.bots.update().where(schema.bots.c.bot_id == bot_id).values(**values)
        )
        if result.rowcount and event:
            connection.execute(
                schema.bot_events.insert().values(bot_id=bot_id, ts=now, event=event, detail=detail)
            )
    return bool(result.rowcount)


def touch_heartbeats(engine: Engine, bot_ids: Sequence[str], *, now: int | None = None) -> None:
    """Set ``heartbeat_at`` of ``bot_ids`` to ``now`` (wall clock, ms)."""
    if not bot_ids:
        return
    with engine.begin() as connection:
        connection.execute(
            schema.bots.update()
            .where(schema.bots.c.bot_id.in_(list(bot_ids)))
            .values(heartbeat_at=now_ms() if now is None else now)
        )


# --------------------------------------------------------------------------- events


def record_event(engine: Engine, bot_id: str, event: str, detail: str | None = None, *,
                 count_restart: bool = False, now: int | None = None) -> None:
    """Append a ``bot_events`` row; ``count_restart`` also increments ``bots.restarts``."""
    now = now_ms() if now is None else now
    with engine.begin() as connection:
        connection.execute(
            schema.bot_events.insert().values(bot_id=bot_id, ts=now, event=event, detail=detail)
        )
        if count_restart:
            connection.execute(
                schema.bots.update()
                .where(schema.bots.c.bot_id == bot_id)
                .values(restarts=schema.bots.c.restarts + 1, updated_at=now)
            )


def count_events(connection: Connection, bot_id: str, event: str, since_ms: int) -> int:
    """How many ``event`` rows ``bot_id`` has at or after ``since_ms``."""
    return int(
        connection.execute(
            select(func.count())
            .select_from(schema.bot_events)
            .where(
                schema.bot_events.c.bot_id == bot_id,
                schema.bot_events.c.event == event,
                schema.bot_events.c.ts >= since_ms,
            )
        ).scalar_one()
    )


def last_event_ts(connection: Connection, bot_id: str, event: str) -> int | None:
    """Wall-clock ts of the newest ``event`` of ``bot_id``, or ``None``."""
    value = connection.execute(
        select(func.max(schema.bot_events.c.ts)).where(
            schema.bot_events.c.bot_id == bot_id, schema.bot_events.c.event == event
        )
    ).scalar_one()
    return None if value is None else int(value)


def trade_rows(connection: Connection, bot_id: str) -> list[Mapping]:
    """Every recorded fill of ``bot_id`` in order (bar, then sequence within the bar)."""
    return list(
        connection.execute(
            select(schema.trades)
            .where(schema.trades.c.bot_id == bot_id)
            .order_by(schema.trades.c.bar_ts, schema.trades.c.seq)
        ).mappings()
    )
