"""The Alembic migrations create exactly the schema of candela.core.schema, on both engines."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from candela.core.db import (
    SchemaOutdatedError,
    connect,
    create_database_engine,
    current_revision,
    head_revision,
    upgrade,
)
from candela.core.schema import metadata


def test_migrated_database_matches_metadata(database_url):
    engine = create_database_engine(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    assert differences == []
    assert current_revision(engine) == head_revision()
    assert set(sa.inspect(engine).get_table_names()) >= set(metadata.tables)


def test_empty_database_is_refused_with_upgrade_hint(empty_database_url):
    with pytest.raises(SchemaOutdatedError, match="candela db upgrade"):
        connect(empty_database_url)


def test_database_behind_head_is_refused(empty_database_url):
    engine = create_database_engine(empty_database_url)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = 'old0'"))
    with pytest.raises(SchemaOutdatedError, match=r"revision old0.*candela db upgrade"):
        connect(empty_database_url)


def test_upgrade_is_idempotent(empty_database_url):
    engine = create_database_engine(empty_database_url)
    first = upgrade(engine)
    second = upgrade(engine)
    assert first == (None, head_revision())
    assert second == (head_revision(), head_revision())


def test_ledger_foreign_keys_are_dropped_with_the_rows_kept(empty_database_url):
    """Migration 0006 on a database with a bot's records: signals and bot_performance lose
    their foreign key to bots (trades and bot_state keep theirs), every row stays; the
    downgrade puts the keys back."""
    from alembic import command
    from candela.core.db import _alembic_config

    engine = create_database_engine(empty_database_url)
    upgrade(engine, "0005")
    bot = dict(bot_id="b", strategy="s", exchange="e", symbol="A/B", timeframe="1m")
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO bots (bot_id, strategy, exchange, symbol, timeframe, config_json, "
                "status, restarts, created_at, updated_at) "
                "VALUES (:bot_id, :strategy, :exchange, :symbol, :timeframe, '{}', 'active', 0, 0, 0)"
            ),
            bot,
        )
        connection.execute(
            sa.text(
                "INSERT INTO signals (bot_id, ts, action, target, raw_target, price, executed, "
                "indicators_json, created_at) VALUES ('b', 60000, 'hold', 0, 0, 1.5, false, '{}', 0)"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO bot_performance (bot_id, ts, equity, cash, position, price) "
                "VALUES ('b', 60000, 100, 100, 0, 1.5)"
            )
        )

    def foreign_keys() -> dict[str, list[str]]:
        inspector = sa.inspect(engine)
        return {
            table: [key["referred_table"] for key in inspector.get_foreign_keys(table)]
            for table in ("signals", "bot_performance", "trades", "bot_state")
        }

    assert foreign_keys() == {
        "signals": ["bots"],
        "bot_performance": ["bots"],
        "trades": ["bots"],
        "bot_state": ["bots"],
    }
    upgrade(engine, "0006")
    assert foreign_keys() == {
        "signals": [],
        "bot_performance": [],
        "trades": ["bots"],
        "bot_state": ["bots"],
    }
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT bot_id, ts, price FROM signals")).all() == [
            ("b", 60000, 1.5)
        ]
        assert connection.execute(sa.text("SELECT equity FROM bot_performance")).all() == [(100.0,)]
    command.downgrade(_alembic_config(engine), "0005")
    assert foreign_keys()["signals"] == ["bots"] and foreign_keys()["bot_performance"] == ["bots"]
