"""Shared fixtures: databases (SQLite and PostgreSQL), Redis, and the shared market data.

Services and the wider market-data collection (``CANDELA_SHARED_DATA``) are required under ``CI=true``: a missing one **fails** the
test there. On a user's machine without them the test is skipped with the reason.

Market-data files the tests read are found by :func:`market_files.market_file`: the repository's
own real files (``tests/fixtures/market/`` and the bundled sample ``data/sample/``) first, so
those tests run in any clone; only what the repository does not ship comes from the collection.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest
from availability import unavailable

from candela.core.paths import REPO_ROOT, SAMPLE_DIR, shared_data_dir

POSTGRES_ADMIN_URL = os.environ.get(
    "CANDELA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_TEST_URL = os.environ.get("CANDELA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The small real sample bundled with the repository (always present)."""
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """the wider market-data collection (``CANDELA_SHARED_DATA``): present in CI and on developer machines, not in a user's clone."""
    path = shared_data_dir()
    if not (path / "ohlcv").is_dir():
        unavailable(f"shared market data not found at {path} (set CANDELA_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """URL of a PostgreSQL maintenance database we may CREATE/DROP databases from."""
    import sqlalchemy as sa

    from candela.core.db import create_database_engine

    engine = create_database_engine(POSTGRES_ADMIN_URL)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        unavailable(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc.__class__.__name__}")
    finally:
        engine.dispose()
    return POSTGRES_ADMIN_URL


def _postgres_database(admin_url: str):
    """Create a fresh, empty PostgreSQL database; return (url, drop callback)."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from candela.core.db import create_database_engine

    name = f"candela_test_{uuid.uuid4().hex[:12]}"
    admin = create_database_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


@pytest.fixture
def postgres_url(postgres_admin_url):
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    url, drop = _postgres_database(postgres_admin_url)
    yield url
    drop()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A fresh SQLite file for one test."""
    return f"sqlite:///{tmp_path / 'candela.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database_url(request) -> str:
    """A fresh, empty database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def database_url(empty_database_url) -> str:
    """A fresh database migrated to the newest schema, on SQLite and on PostgreSQL."""
    from candela.core.db import create_database_engine, upgrade

    engine = create_database_engine(empty_database_url)
    upgrade(engine)
    engine.dispose()
    return empty_database_url


@pytest.fixture
def engine(database_url):
    """An engine on :func:`database_url` (SQLite and PostgreSQL)."""
    from candela.core.db import connect

    engine = connect(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the shared Redis server (tests use unique channel/key names)."""
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        unavailable(f"Redis not reachable at {REDIS_TEST_URL}: {exc.__class__.__name__}")
    finally:
        client.close()
    return REDIS_TEST_URL


@pytest.fixture
def strategy_folder(tmp_path, monkeypatch) -> Path:
    """An empty user strategy folder, the only one on ``CANDELA_STRATEGY_PATH``; afterwards the
    modules imported from it are forgotten and ``sys.path`` is restored (``strategy_folders``
    writes strategies into it)."""
    folder = tmp_path / "user_strategies"
    folder.mkdir()
    monkeypatch.setenv("CANDELA_STRATEGY_PATH", str(folder))
    modules, path = set(sys.modules), list(sys.path)  # user strategy modules are imported by name
    yield folder
    for name in set(sys.modules) - modules:
        file = getattr(sys.modules[name], "__file__", None) or ""
        if file.startswith(str(tmp_path)):
            del sys.modules[name]
    sys.path[:] = path
