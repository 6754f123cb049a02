"""The bots' own rows: registration and versions, statuses, heartbeats and events.

A bot's row in ``bots`` holds its config (and a hash of it and of its strategy's code), its
status and heartbeat; ``bot_events`` is its history (starts, stops, crashes, restarts). The
records of the bars it processed are :mod:`runner.ledger`'s.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from candela.core import schema
from candela.core.db import now_ms

BOT_STATUSES = ("active", "stopped", "failed")


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
                values.update(
                    status="active", restarts=0, last_error=None, heartbeat_at=None, created_at=now
                )
                connection.execute(schema.bots.insert().values(bot_id=config.bot_id, **values))
                connection.execute(
                    schema.bot_events.insert().values(
                        bot_id=config.bot_id,
                        ts=now,
                        event="new_version",
                        detail=f"version {config.version} replaces version {stored['version']}, whose "
                        f"records are kept as bot {archived!r}",
                    )
                )
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
    return int(
        connection.execute(
            select(func.count())
            .select_from(schema.signals)
            .where(schema.signals.c.bot_id == bot_id)
        ).scalar_one()
    )


def archive_version(
    connection: Connection, bot_id: str, version: int, *, now: int | None = None
) -> str:
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
            "shorter bot id instead"
        )
    if bot_row(connection, archived) is not None:
        raise BotConfigChangedError(
            f"cannot keep version {version} of bot {bot_id!r} as {archived!r}: that id exists "
            "already; give the new config a new bot id instead"
        )
    row = bot_row(connection, bot_id)._asdict()
    row.update(bot_id=archived, status=ARCHIVED_STATUS, updated_at=now_ms() if now is None else now)
    connection.execute(schema.bots.insert().values(**row))
    for table in (
        schema.bot_state,
        schema.signals,
        schema.trades,
        schema.bot_performance,
        schema.bot_events,
    ):
        connection.execute(table.update().where(table.c.bot_id == bot_id).values(bot_id=archived))
    connection.execute(schema.bots.delete().where(schema.bots.c.bot_id == bot_id))
    return archived


def _refusal(config, stored: dict, changed: list, decisions: int) -> str:
    version = stored["version"]
    listed = ", ".join(
        f"{path} {_shown(before)} -> {_shown(after)}" for path, before, after in changed
    )
    if config.version < version:
        return (
            f"{config.source}: version {config.version} of bot {config.bot_id!r} is older than "
            f'its recorded version {version}: versions only go up; set "version": {version + 1} '
            "to start a new one"
        )
    return (
        f"{config.source}: bot {config.bot_id!r} has recorded {decisions} decision(s) with another "
        f"config, and a bot's config cannot change once it has traded; changed: {listed}. Either "
        'restore the recorded values, or give the new config a new bot id ("id" or the file '
        f"name), or start version {version + 1} of this bot with fresh state by setting "
        f'"version": {version + 1} in the file (version {version}\'s records stay in the '
        f"database as bot '{config.bot_id}@v{version}')"
    )


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


def set_status(
    engine: Engine,
    bot_id: str,
    status: str,
    *,
    error: str | None = None,
    event: str | None = None,
    detail: str | None = None,
) -> bool:
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


def record_event(
    engine: Engine,
    bot_id: str,
    event: str,
    detail: str | None = None,
    *,
    count_restart: bool = False,
    now: int | None = None,
) -> None:
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
