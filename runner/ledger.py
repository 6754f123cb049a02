"""The runner's records of processed bars: signals, trades, equity and each bot's state.

The database is the truth (docs/architecture.md §5). :func:`write_bars` commits everything one bar changes
for a bot (signal, fills, state, equity) atomically, for a batch of bots (one bar each) in ONE
transaction, guarded by the ``uq_signals_bot_ts`` unique key: a bar that was already recorded (a
retry after an ambiguous commit, a second runner) writes nothing for its bot, and the bot is left
out of the returned set. Nothing here publishes; callers publish after the commit. The bots'
own rows (registration, versions, statuses, heartbeats, events) are :mod:`runner.registry`'s.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from candela.core import schema
from research.kernels.records import State


@dataclass
class BarRecord:
    """Rows one bar produces for one bot (see :mod:`candela.core.schema` for the columns).

    ``previous_ts`` is the bot's cursor before this bar (the close ts of its previous processed
    bar; ``None`` for its first bar): :func:`write_bars` writes the bar only if the stored
    cursor still says so. ``state["state_json"]`` may be the :class:`State` itself: it is
    encoded (:func:`encode_state`) only when it is the one stored, the last of a batch.
    """

    bot_id: str
    bar_ts: int
    signal: dict
    trades: list[dict] = field(default_factory=list)
    state: dict = field(default_factory=dict)
    performance: dict = field(default_factory=dict)
    previous_ts: int | None = None


@dataclass
class BlockRecord:
    """Rows of consecutive bars of one bot, held as columns (what as many :class:`BarRecord`
    hold, one after the other; the replay's block path makes them, :mod:`runner.block`).

    ``signals`` and ``performance`` map each column of the table to its values, one per bar;
    ``ts`` holds the bars' close times, ``bar_ts`` the last; ``state`` is the ``bot_state``
    row after the last bar; ``previous_ts`` is the bot's cursor before the first.
    """

    bot_id: str
    bar_ts: int
    ts: list[int]
    signals: dict[str, list]
    trades: list[dict] = field(default_factory=list)
    state: dict = field(default_factory=dict)
    performance: dict[str, list] = field(default_factory=dict)
    previous_ts: int | None = None

    def signal_rows(self) -> list[dict]:
        """The ``signals`` rows, one dict per bar."""
        return _rows(self.signals)

    def performance_rows(self) -> list[dict]:
        """The ``bot_performance`` rows, one dict per bar."""
        return _rows(self.performance)


def _rows(columns: dict[str, list]) -> list[dict]:
    names = list(columns)
    return [dict(zip(names, values)) for values in zip(*columns.values())]


def _column(records, table: str, name: str) -> list:
    """Column ``name`` of ``table`` (``signal`` or ``performance``) over ``records``."""
    values: list = []
    for record in records:
        if type(record) is BlockRecord:
            values.extend(getattr(record, table + "s" if table == "signal" else table)[name])
        else:
            values.append(getattr(record, table).get(name))
    return values


def _insert(connection: Connection, table):
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def write_bars(connection: Connection, records: Sequence[BarRecord | BlockRecord]) -> set[str]:
    """Record processed bars of several bots in ONE transaction; return the bots written.

    ``records`` holds any number of consecutive bars per bot, in bar order (each record's
    ``previous_ts`` is the ``bar_ts`` of the bot's record before it), a bar per
    :class:`BarRecord` or many per :class:`BlockRecord`. A bot's bars are written
    all or none, **only if its stored cursor** (``bot_state.cursor_ts``) **still equals the
    first one's** ``previous_ts`` (no ``bot_state`` row, or a ``NULL`` cursor, for ``None``):
    a compare-and-set that makes every (bot, bar) exactly once. A bot whose cursor moved (a
    retry after an ambiguous commit, a second runner) writes nothing and is absent from the
    result; its caller reloads it from the database. For a written bot: every signal, fill and
    equity snapshot, and its ``bot_state`` row set to the last record's state. The whole batch
    commits (or fails) together. ``uq_signals_bot_ts`` stays as a backstop: a signal that
    exists although the cursor allowed it is an inconsistent ledger, and raises.

    On PostgreSQL the batch travels as ONE statement whatever its size (data-modifying CTEs over
    ``unnest`` of column arrays; the inserts keyed on the bots whose cursor was claimed), which
    is atomic by itself: on an ``AUTOCOMMIT`` connection a batch costs a single round trip,
    commit included. Under concurrent writers the cursor's row lock orders them: the second
    sees the first one's cursor and writes nothing for that bot. The caller must not hold an
    open transaction on ``connection``.

    Raises
    ------
    ValueError
        If a bot's records are not consecutive (a record's ``previous_ts`` is not the
        ``bar_ts`` of the bot's record before it).
    """
    if not records:
        return set()
    bots = _by_bot(records)
    with connection.begin():
        if connection.dialect.name == "postgresql":
            params = _postgres_batch_params(records, bots)
            result = connection.exec_driver_sql(_POSTGRES_BATCH, params)
            return {row[0] for row in result}
        return {bot_id for bot_id, chain in bots.items() if _write_chain(connection, chain)}


def _by_bot(records: Sequence[BarRecord]) -> dict[str, list[BarRecord]]:
    """``{bot_id: its records}`` in order; checks that each bot's records are consecutive."""
    bots: dict[str, list[BarRecord]] = {}
    for record in records:
        chain = bots.setdefault(record.bot_id, [])
        if chain and record.previous_ts != chain[-1].bar_ts:
            raise ValueError(
                f"bot {record.bot_id!r}: bar {record.bar_ts} follows {record.previous_ts}, but the "
                f"batch's previous bar of this bot is {chain[-1].bar_ts}: a bot's records must be "
                "consecutive, in bar order"
            )
        chain.append(record)
    return bots


def _state_row(record: BarRecord) -> dict:
    """The ``bot_state`` row of ``record`` with its state encoded."""
    row = dict(record.state)
    if not isinstance(row.get("state_json"), str):
        row["state_json"] = encode_state(row["state_json"])
    return row


def _write_chain(connection: Connection, chain: list[BarRecord]) -> bool:
    """Claim the bot's cursor and insert its records inside the caller's transaction (SQLite);
    ``False`` if the stored cursor is not ``chain[0].previous_ts``."""
    state = _state_row(chain[-1])
    table = schema.bot_state
    previous = chain[0].previous_ts
    if previous is None:
        claim = (
            sqlite.insert(table)
            .values(state)
            .on_conflict_do_update(
                index_elements=["bot_id"],
                set_={key: state[key] for key in _STATE_UPDATES},
                where=table.c.cursor_ts.is_(None),
            )
        )
    else:
        claim = (
            table.update()
            .where(table.c.bot_id == state["bot_id"], table.c.cursor_ts == previous)
            .values({key: state[key] for key in _STATE_UPDATES})
        )
    if connection.execute(claim).rowcount != 1:
        return False
    signals, performance = [], []
    for record in chain:
        if type(record) is BlockRecord:
            signals.extend(record.signal_rows())
            performance.extend(record.performance_rows())
        else:
            signals.append(record.signal)
            performance.append(record.performance)
    connection.execute(schema.signals.insert(), signals)
    trades = [trade for record in chain for trade in record.trades]
    if trades:
        connection.execute(schema.trades.insert(), trades)
    connection.execute(schema.bot_performance.insert(), performance)
    return True


_STATE_UPDATES = ("cash", "position", "cursor_ts", "state_json", "updated_at")
# (column, PostgreSQL array type) of each table, in insert order
_SIGNAL_COLUMNS = (
    ("bot_id", "text"),
    ("ts", "bigint"),
    ("action", "text"),
    ("target", "float8"),
    ("raw_target", "float8"),
    ("price", "float8"),
    ("executed", "boolean"),
    ("indicators_json", "text"),
    ("created_at", "bigint"),
    ("config_hash", "text"),
    ("strategy_hash", "text"),
)
_TRADE_COLUMNS = (
    ("bot_id", "text"),
    ("bar_ts", "bigint"),
    ("seq", "integer"),
    ("ts", "bigint"),
    ("side", "text"),
    ("size", "float8"),
    ("price", "float8"),
    ("fee", "float8"),
    ("reason", "text"),
    ("realized_pnl", "float8"),
    ("cash_after", "float8"),
    ("position_after", "float8"),
    ("created_at", "bigint"),
    ("symbol", "text"),
)
_STATE_COLUMNS = (
    ("bot_id", "text"),
    ("cash", "float8"),
    ("position", "float8"),
    ("cursor_ts", "bigint"),
    ("state_json", "text"),
    ("updated_at", "bigint"),
    ("previous_ts", "bigint"),
)
_PERFORMANCE_COLUMNS = (
    ("bot_id", "text"),
    ("ts", "bigint"),
    ("equity", "float8"),
    ("cash", "float8"),
    ("position", "float8"),
    ("price", "float8"),
)


def _unnest(prefix: str, columns) -> str:
    """``unnest(%(prefix_col)s::type[], ...) AS prefix (col, ...)``: one row per array index."""
    arrays = ", ".join(f"%({prefix}_{name})s::{kind}[]" for name, kind in columns)
    return f"unnest({arrays}) AS {prefix} ({', '.join(name for name, _ in columns)})"


def _insert_written(table: str, prefix: str, columns) -> str:
    """INSERT of the rows of ``prefix`` that belong to a bot whose cursor was claimed."""
    names = ", ".join(name for name, _ in columns)
    return (
        f"INSERT INTO {table} ({names}) SELECT {names} FROM {_unnest(prefix, columns)} "
        f"WHERE {prefix}.bot_id IN (SELECT bot_id FROM written)"
    )


_STATE_NAMES = ", ".join(name for name in ("bot_id", *_STATE_UPDATES))
_POSTGRES_BATCH = (
    # a bot that has a cursor moves it on only from the batch's previous_ts...
    "WITH moved AS (UPDATE bot_state SET "
    + ", ".join(f"{name} = s.{name}" for name in _STATE_UPDATES)
    + f" FROM {_unnest('s', _STATE_COLUMNS)} WHERE s.previous_ts IS NOT NULL "
    "AND bot_state.bot_id = s.bot_id AND bot_state.cursor_ts = s.previous_ts RETURNING s.bot_id), "
    # ...a bot without one starts it (unless another writer did)
    f"started AS (INSERT INTO bot_state ({_STATE_NAMES}) SELECT {_STATE_NAMES} "
    f"FROM {_unnest('s', _STATE_COLUMNS)} WHERE s.previous_ts IS NULL "
    "ON CONFLICT (bot_id) DO UPDATE SET "
    + ", ".join(f"{name} = EXCLUDED.{name}" for name in _STATE_UPDATES)
    + " WHERE bot_state.cursor_ts IS NULL RETURNING bot_id), "
    "written AS (SELECT bot_id FROM moved UNION ALL SELECT bot_id FROM started), "
    f"new_signals AS ({_insert_written('signals', 'g', _SIGNAL_COLUMNS)}), "
    f"performance AS ({_insert_written('bot_performance', 'p', _PERFORMANCE_COLUMNS)}), "
    f"fills AS ({_insert_written('trades', 't', _TRADE_COLUMNS)}) "
    "SELECT bot_id FROM written"
)
"""The one-round-trip batch write (plain driver SQL: no statement compilation per batch)."""


def _postgres_batch_params(
    records: Sequence[BarRecord], bots: dict[str, list[BarRecord]]
) -> dict[str, str]:
    """Column arrays of :data:`_POSTGRES_BATCH`: ``{prefix_column: array literal}``."""
    states = [
        dict(_state_row(chain[-1]), previous_ts=chain[0].previous_ts) for chain in bots.values()
    ]
    params = {}
    for name, kind in _SIGNAL_COLUMNS:
        params[f"g_{name}"] = _array_literal(_column(records, "signal", name), kind)
    for name, kind in _PERFORMANCE_COLUMNS:
        params[f"p_{name}"] = _array_literal(_column(records, "performance", name), kind)
    for prefix, columns, rows in (
        ("s", _STATE_COLUMNS, states),
        ("t", _TRADE_COLUMNS, [trade for record in records for trade in record.trades]),
    ):
        for name, kind in columns:
            params[f"{prefix}_{name}"] = _array_literal([row.get(name) for row in rows], kind)
    return params


def _quote(text: str) -> str:
    """``text`` as an element of an array literal: double-quoted, ``\\`` and ``"`` escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _array_literal(values: list, kind: str) -> str:
    """PostgreSQL array literal (``'{...}'``) of ``values`` of type ``kind`` (``None``: NULL).

    Sent as one string per column, which the server parses with the element type's own input
    function: much cheaper on both sides than an ``ARRAY[...]`` of SQL constants. Floats are
    written with ``repr`` (the shortest text that parses back to the same float64, ``nan`` and
    ``inf`` included), so every value is stored bit for bit.
    """
    if kind == "text":
        quoted: dict[str, str] = {"": '""'}  # a batch repeats its bot ids, actions and hashes
        items = [
            "NULL"
            if value is None
            else quoted.get(value) or quoted.setdefault(value, _quote(value))
            for value in values
        ]
    elif kind == "boolean":
        items = ["t" if value else "f" for value in values]
    elif kind == "float8":
        try:  # the common case, all floats, at C speed
            return "{" + ",".join(map(float.__repr__, values)) + "}"
        except TypeError:
            items = [repr(float(value)) for value in values]
    else:
        try:  # all ints
            return "{" + ",".join(map(int.__repr__, values)) + "}"
        except TypeError:
            items = ["NULL" if value is None else str(int(value)) for value in values]
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
        raise ValueError(
            f"a stored bot state must be a JSON list of {len(State._fields)} numbers "
            f"({', '.join(State._fields)}), got {text[:200]!r}"
        )
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


def trade_rows(connection: Connection, bot_id: str) -> list[Mapping]:
    """Every recorded fill of ``bot_id`` in order (bar, then sequence within the bar)."""
    return list(
        connection.execute(
            select(schema.trades)
            .where(schema.trades.c.bot_id == bot_id)
            .order_by(schema.trades.c.bar_ts, schema.trades.c.seq)
        ).mappings()
    )
