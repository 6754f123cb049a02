"""Fixtures shared by the runner and parity tests (imported by their conftest files)."""

from __future__ import annotations

import pytest
from market_files import market_file
from runner_support import ADA_BTC_FILE, MINUTE_MS, read_csv_bars


def _migrated_engine(url: str, *, fast_commits: bool = False):
    import sqlalchemy as sa

    from candela.core.db import connect, create_database_engine, upgrade

    engine = create_database_engine(url)
    upgrade(engine)
    if fast_commits and engine.dialect.name == "postgresql":
        # Test speed only: commits skip the WAL fsync wait. Atomicity and visibility are
        # unchanged (a killed *client* loses nothing committed); only a server crash could.
        with engine.connect() as connection:
            name = connection.execute(sa.text("SELECT current_database()")).scalar_one()
            connection.execute(sa.text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
            connection.commit()
    engine.dispose()
    return connect(url)


@pytest.fixture
def pg_engine(postgres_url):
    """A migrated engine on a fresh PostgreSQL database."""
    engine = _migrated_engine(postgres_url, fast_commits=True)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_url(postgres_url):
    """URL of a fresh, migrated PostgreSQL database."""
    _migrated_engine(postgres_url, fast_commits=True).dispose()
    return postgres_url


@pytest.fixture
def any_engine(database_url):
    """A migrated engine, once on SQLite and once on PostgreSQL."""
    engine = _migrated_engine(database_url, fast_commits=True)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def ada_btc_bars():
    """The first 12,000 real Bittrex ADA/BTC 1m bars (with the exchange's own gaps)."""
    return read_csv_bars(market_file(ADA_BTC_FILE), MINUTE_MS, limit=12_000)
