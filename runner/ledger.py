"""The runner's database records: bots, their state, signals, trades, equity and events.

The database is the truth (docs/architecture.md §5). :func:`write_bars` commits everything one bar changes
for a bot (signal, fills, state, equity) atomically, for a batch of bots (one bar each) in ONE
transaction, guarded by the ``uq_signals_bot_ts`` unique key: a bar that was already recorded (a
retry after an ambiguous commit, a second runner) writes nothing for its bot, and the bot is left
out of the returned set. Nothing here publishes; callers publish after the commit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.dialects import postgresql, sqlite

from candela.core import schema
from candela.core.db import now_ms
from research.kernels.records import State

BOT_STATUSES = ("active", "stopped", "failed")


@dataclass
class BarRecord:
    """Rows one bar produces for one bot (see :mod:`candela.core.schema` for the columns)."""

    bot_id: str
    bar_ts: int
    signal: dict
    trades: list[dict] = field(default_factory=list)
    state: dict = field(default_factory=dict)
    performance: dict = field(default_factory=dict)


def _insert(connection: Connection, table):
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def write_bars(connection: Connection, records: Sequence[BarRecord]) -> set[str]:
    """Record processed bars, at most one per bot, in ONE transaction; return the bots written.

    For each record: the signal first, on ``uq_signals_bot_ts``; a bar recorded before (a retry
    after an ambiguous commit, a second runner) writes nothing for its bot, and that bot is
    absent from the result. The others get their trades, their ``bot_state`` row (upsert) and
    their ``bot_performance`` snapshot. Every record is all or nothing, and the whole batch
    commits (or fails) together.

    On PostgreSQL the batch travels as ONE statement whatever its size (data-modifying CTEs over
    ``unnest`` of column arrays, the dependent inserts keyed on the bots whose signal was
    inserted), which is atomic by itself: on an ``AUTOCOMMIT`` connection a batch costs a single
    round trip, commit included. The caller must not hold an open transaction on ``connection``.

    Raises
    ------
    ValueError
        If two records belong to the same bot (its state row would be written twice).
    """
    bot_ids = [record.bot_id for record in records]
    if len(set(bot_ids)) != len(bot_ids):
        raise ValueError("write_bars takes at most one bar per bot: split the batch by bar")
    if not records:
        return set()
    with connection.begin():
        if connection.dialect.name == "postgresql":
            result = connection.exec_driver_sql(_POSTGRES_BATCH, _postgres_batch_params(records))
            return {row[0] for row in result}
        return {record.bot_id for record in records if _write_one(connection, record)}


def _write_one(connection: Connection, record: BarRecord) -> bool:
    """Insert one record inside the caller's transaction; ``False`` if its signal existed."""
    inserted = connection.execute(
        _insert(connection, schema.signals).on_conflict_do_nothing(index_elements=["bot_id", "ts"]),
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
# (column, PostgreSQL array type) of each table, in insert order
_SIGNAL_COLUMNS = (("bot_id", "text"), ("ts", "bigint"), ("action", "text"), ("target", "float8"),
                   ("raw_target", "float8"), ("price", "float8"), ("executed", "boolean"),
                   ("indicators_json", "text"), ("created_at", "bigint"), ("config_hash", "text"),
                   ("strategy_hash", "text"))
_TRADE_COLUMNS = (("bot_id", "text"), ("bar_ts", "bigint"), ("seq", "integer"), ("ts", "bigint"),
                  ("side", "text"), ("size", "float8"), ("price", "float8"), ("fee", "float8"),
                  ("reason", "text"), ("realized_pnl", "float8"), ("cash_after", "float8"),
                  ("position_after", "float8"), ("created_at", "bigint"), ("symbol", "text"))
_STATE_COLUMNS = (("bot_id", "text"), ("cash", "float8"), ("position", "float8"), ("cursor_ts", "bigint"),
                  ("state_json", "text"), ("updated_at", "bigint"))
_PERFORMANCE_COLUMNS = (("bot_id", "text"), ("ts", "bigint"), ("equity", "float8"), ("cash", "float8"),
                        ("position", "float8"), ("price", "float8"))


def _unnest(prefix: str, columns) -> str:
    """``unnest(%(prefix_col)s::type[], ...) AS prefix (col, ...)``: one row per array index."""
    arrays = ", ".join(f"%({prefix}_{name})s::{kind}[]" for name, kind in columns)
    return f"unnest({arrays}) AS {prefix} ({', '.join(name for name, _ in columns)})"


def _insert_written(table: str, prefix: str, columns) -> str:
    """INSERT of the rows of ``prefix`` that belong to a bot whose signal was just inserted."""
    names = ", ".join(name for name, _ in columns)
    return (f"INSERT INTO {table} ({names}) SELECT {names} FROM {_unnest(prefix, columns)} "
            f"WHERE {prefix}.bot_id IN (SELECT bot_id FROM written)")


_POSTGRES_BATCH = (
    f"WITH written AS (INSERT INTO signals ({', '.join(name for name, _ in _SIGNAL_COLUMNS)}) "
    f"SELECT * FROM {_unnest('g', _SIGNAL_COLUMNS)} ON CONFLICT (bot_id, ts) DO NOTHING RETURNING bot_id), "
    f"new_state AS ({_insert_written('bot_state', 's', _STATE_COLUMNS)} ON CONFLICT (bot_id) DO UPDATE SET "
    + ", ".join(f"{name} = EXCLUDED.{name}" for name in _STATE_UPDATES) + "), "
    f"performance AS ({_insert_written('bot_performance', 'p', _PERFORMANCE_COLUMNS)}), "
    f"fills AS ({_insert_written('trades', 't', _TRADE_COLUMNS)}) "
    "SELECT bot_id FROM written"
)
"""The one-round-trip batch write (plain driver SQL: no statement compilation per batch)."""


def _postgres_batch_params(records: Sequence[BarRecord]) -> dict[str, str]:
    """Column arrays of :data:`_POSTGRES_BATCH`: ``{prefix_column: array literal}``."""
    params = {}
    for prefix, columns, rows in (
        ("g", _SIGNAL_COLUMNS, [record.signal for record in records]),
        ("s", _STATE_COLUMNS, [record.state for record in records]),
        ("p", _PERFORMANCE_COLUMNS, [record.performance for record in records]),
        ("t", _TRADE_COLUMNS, [trade for record in records for trade in record.trades]),
    ):
        for name, kind in columns:
            params[f"{prefix}_{name}"] = _array_literal([row.get(name) for row in rows], kind)
    return params


def _array_literal(values: list, kind: str) -> str:
    """PostgreSQL array literal (``'{...}'``) of ``values`` of type ``kind`` (``None``: NULL, text only).

    Sent as one string per column, which the server parses with the element type's own input
    function: much cheaper on both sides than an ``ARRAY[...]`` of SQL constants. Floats are
    written with ``repr`` (the shortest text that parses back to the same float64, ``nan`` and
    ``inf`` included), so every value is stored bit for bit.
    """
    if kind == "text":
        items = ["NULL" if value is None else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
                 for value in values]
    elif kind == "boolean":
        items = ["t" if value else "f" for value in values]
    elif kind == "float8":
        items = [repr(float(value)) for value in values]
    else:
        items = [str(int(value)) for value in values]
    return "{" + ",".join(items) + "}"


# --------------------------------------------------------------------------- states


def encode_state(state: State) -> str:
    """The JSON list of the state's values, in field order; ``nan`` as ``null``; floats
    round-trip exactly. (The format of the state vector this replaced, whose slots were these
    fields in this order: rows written before load unchanged.)"""
    return json.dumps([None if math.isnan(value) else float(value) for value in state])


def decode_state(text: str) -> State:
    """Inverse of :func:`encode_state`.

    Raises
    ------
    ValueError
        If ``text`` does not hold one number (or ``null``) per field of :class:`State`.
    """
    values = json.loads(text)
    if not isinstance(values, list) or len(values) != len(State._fields):
        raise ValueError(f"a stored bot state must be a JSON list of {len(State._fields)} numbers "
                         f"({', '.join(State._fields)}), got {text[:200]!r}")
    return State._make(math.nan if value is None else float(value) for value in values)


def load_state(connection: Connection, bot_id: str) -> tuple[State, int] | None:
    """Return ``(state, cursor_ts)`` of ``bot_id``, or ``None`` if it never processed a bar."""
    row = connection.execute(
        select(schema.bot_state.c.state_json, schema.bot_state.c.cursor_ts).where(
            schema.bot_state.c.bot_id == bot_id
        )
    ).first()
    if row is None or row.cursor_ts is None:
        return None
    return decode_state(row.state_json), int(row.cursor_ts)


# --------------------------------------------------------------------------- bots


class BotConfigChangedError(ValueError):
    """A bot that has recorded decisions was given another config; the message names the changed
    fields and the ways on (restore, a new bot id, or a new version)."""


ARCHIVED_STATUS = "retired"
"""Status of the ``bots`` row that keeps an old version's records (``ID@vN``)."""


def register_bots(engine: Engine, configs: Iterable, *, now: int | None = None) -> dict[str, str]:
    """Insert or update the ``bots`` rows of ``configs``, refusing a changed config of a bot
    that has traded; return ``{bot_id: what happened}`` for the bots whose stored config changed.

    * a new bot is inserted ``active``; an unchanged one keeps its row (and its status: a bot
      stopped from another terminal stays stopped);
    * a changed config of a bot that has recorded no decision replaces the stored one
      (``"reconfigured"``): nothing was traded under it;
    * a changed config of a bot that has recorded decisions is refused with
      :class:`BotConfigChangedError`, unless its ``version`` is higher than the stored one: then
      the stored version's rows (``bots``, ``bot_state``, ``signals``, ``trades``,
      ``bot_performance``, ``bot_events``) move to the id ``ID@vN`` (status ``retired``, still
      queryable, never mixed with the new state) and the bot starts afresh with the new config
      (``"new_version"``).

    Everything happens in one transaction: a refusal changes nothing, for any bot.

    Raises
    ------
    BotConfigChangedError
        Naming the config's source, the changed fields and how to proceed.
    """
    now = now_ms() if now is None else now
    changes: dict[str, str] = {}
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
                continue
            if row.config_json == text:
                continue
            stored = stored_config(row.config_json)
            changed = changed_fields(stored, config.to_dict())
            decisions = decision_count(connection, config.bot_id)
            if changed and decisions and config.version <= stored["version"]:
                raise BotConfigChangedError(_refusal(config, stored, changed, decisions))
            if changed and decisions:
                archived = archive_version(connection, config.bot_id, stored["version"], now=now)
                values.update(status="active", restarts=0, last_error=None, heartbeat_at=None,
                              created_at=now)
                connection.execute(schema.bots.insert().values(bot_id=config.bot_id, **values))
                connection.execute(schema.bot_events.insert().values(
                    bot_id=config.bot_id, ts=now, event="new_version",
                    detail=f"version {config.version} replaces version {stored['version']}, whose "
                           f"records are kept as bot {archived!r}"))
                changes[config.bot_id] = "new_version"
                continue
            connection.execute(
                schema.bots.update().where(schema.bots.c.bot_id == config.bot_id).values(**values)
            )
            if changed:
                changes[config.bot_id] = "reconfigured"
    return changes


def stored_config(text: str) -> dict:
    """A stored ``bots.config_json`` as a dict, with the defaults of keys added since it was
    written (``version``: 1)."""
    data = json.loads(text)
    data.setdefault("version", 1)
    return data


def changed_fields(old: Mapping, new: Mapping, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(field path, old value, new value)`` of every difference, nested sections flattened
    (``params.slow``, ``stops.stop_loss``); an absent key's value is :data:`ABSENT`."""
    changes = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key, ABSENT), new.get(key, ABSENT)
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            changes += changed_fields(before, after, f"{prefix}{key}.")
        elif before != after:
            changes.append((f"{prefix}{key}", before, after))
    return changes


ABSENT = "(absent)"


def decision_count(connection: Connection, bot_id: str) -> int:
    """How many decisions (``signals`` rows) ``bot_id`` has recorded."""
    return int(connection.execute(
        select(func.count()).select_from(schema.signals).where(schema.signals.c.bot_id == bot_id)
    ).scalar_one())


def archive_version(connection: Connection, bot_id: str, version: int, *, now: int | None = None) -> str:
    """Move every row of ``bot_id`` to the id ``{bot_id}@v{version}`` (status ``retired``) inside
    the caller's transaction; return that id. The ``bots`` row of ``bot_id`` is gone afterwards.

    Raises
    ------
    BotConfigChangedError
        If the archive id is taken or longer than a bot id may be (64 characters).
    """
    archived = f"{bot_id}@v{version}"
    if len(archived) > schema.bots.c.bot_id.type.length:
        raise BotConfigChangedError(
            f"bot id {bot_id!r} is too long to keep its version {version} as {archived!r} "
            f"(at most {schema.bots.c.bot_id.type.length} characters): give the new config a new, "
            "shorter bot id instead")
    if bot_row(connection, archived) is not None:
        raise BotConfigChangedError(
            f"cannot keep version {version} of bot {bot_id!r} as {archived!r}: that id exists "
            "already; give the new config a new bot id instead")
    row = bot_row(connection, bot_id)._asdict()
    row.update(bot_id=archived, status=ARCHIVED_STATUS, updated_at=now_ms() if now is None else now)
    connection.execute(schema.bots.insert().values(**row))
    for table in (schema.bot_state, schema.signals, schema.trades, schema.bot_performance,
                  schema.bot_events):
        connection.execute(table.update().where(table.c.bot_id == bot_id).values(bot_id=archived))
    connection.execute(schema.bots.delete().where(schema.bots.c.bot_id == bot_id))
    return archived


def _refusal(config, stored: dict, changed: list, decisions: int) -> str:
    version = stored["version"]
    listed = ", ".join(f"{path} {_shown(before)} -> {_shown(after)}" for path, before, after in changed)
    if config.version < version:
        return (f"{config.source}: version {config.version} of bot {config.bot_id!r} is older than "
                f"its recorded version {version}: versions only go up; set \"version\": {version + 1} "
                "to start a new one")
    return (
        f"{config.source}: bot {config.bot_id!r} has recorded {decisions} decision(s) with another "
        f"config, and a bot's config cannot change once it has traded; changed: {listed}. Either "
        "restore the recorded values, or give the new config a new bot id (\"id\" or the file "
        f"name), or start version {version + 1} of this bot with fresh state by setting "
        f"\"version\": {version + 1} in the file (version {version}'s records stay in the "
        f"database as bot '{config.bot_id}@v{version}')")


def _shown(value: Any) -> str:
    return value if value is ABSENT else json.dumps(value)


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
