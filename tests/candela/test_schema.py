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
