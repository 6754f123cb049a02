"""Alembic environment: migrations run on the engine Candela hands over (see candela.core.db)."""

from alembic import context
from candela.core.db import create_database_engine
from candela.core.schema import metadata

target_metadata = metadata


def run_migrations_online() -> None:
    engine = context.config.attributes.get("engine") or create_database_engine()
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run 'candela db upgrade'")
run_migrations_online()
