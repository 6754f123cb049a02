"""Database access: one URL, one engine factory, schema version checks, idempotent inserts.

``CANDELA_DATABASE_URL`` picks the database; without it Candela uses the embedded SQLite file
``data/candela.db``. Every entry point opens the database through :func:`connect`, which refuses
a database whose schema is behind the code and says how to upgrade it (``candela db upgrade``).
"""

from __future__ import annotations

import difflib
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from sqlalchemy import Connection, Engine, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from candela.core.paths import ALEMBIC_DIR, DATA_DIR


def _default_database_path() -> Path:
    """``data/candela.db``; ``data/candela.core.db`` instead when only that one exists (the name
    earlier versions gave the embedded database by mistake, kept so that its data stays found)."""
    path, earlier = DATA_DIR / "candela.db", DATA_DIR / "candela.core.db"
    return earlier if earlier.exists() and not path.exists() else path


DEFAULT_DATABASE_URL = f"sqlite:///{_default_database_path()}"
"""The embedded default: a SQLite file under the repository's ``data/`` folder."""

SUPPORTED_BACKENDS = ("sqlite", "postgresql")


class DatabaseConfigError(ValueError):
    """The database URL is malformed or names an unsupported backend."""


class DatabaseUnavailableError(RuntimeError):
    """The database server cannot be reached or refused the connection."""


class SchemaOutdatedError(RuntimeError):
    """The database schema is older (or newer) than the code expects."""


def now_ms() -> int:
    """Wall-clock time in integer milliseconds UTC."""
    return time.time_ns() // 1_000_000


def database_url(url: str | None = None) -> str:
    """Return the database URL to use: ``url``, else ``CANDELA_DATABASE_URL``, else the default."""
    return url or os.environ.get("CANDELA_DATABASE_URL") or DEFAULT_DATABASE_URL


def redacted(url: str) -> str:
    """Return ``url`` with any password hidden, for error messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def create_database_engine(url: str | None = None, *, pool_size: int = 5) -> Engine:
    """Create an engine for ``url`` (see :func:`database_url`) without touching the schema.

    SQLite files get their parent folder created, WAL journaling, foreign keys and a busy
    timeout; PostgreSQL engines get ``pool_pre_ping`` and a pool of ``pool_size`` connections
    (plus as many again on overflow) — processes that keep one connection per worker thread,
    like the runner, ask for more.

    Raises
    ------
    DatabaseConfigError
        If the URL cannot be parsed or names a backend other than SQLite or PostgreSQL.
    """
    url = database_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseConfigError(
            f"cannot parse database URL {url!r}: use e.g. 'sqlite:///data/candela.db' or "
            "'postgresql://user@127.0.0.1:5432/dbname' (set CANDELA_DATABASE_URL)"
        ) from exc
    backend = parsed.get_backend_name()
    if parsed.drivername == "postgresql":  # SQLAlchemy 2.1 defaults to psycopg 3; we ship psycopg2
        parsed = parsed.set(drivername="postgresql+psycopg2")
    if backend not in SUPPORTED_BACKENDS:
        close = difflib.get_close_matches(backend, SUPPORTED_BACKENDS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise DatabaseConfigError(
            f"unsupported database backend {backend!r} in {redacted(url)}: {hint}Candela runs on "
            "'sqlite:///path/file.db' or 'postgresql://user@host:port/dbname'"
        )
    try:
        if backend == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(parsed, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(
                parsed, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size
            )
    except (NoSuchModuleError, ArgumentError, ModuleNotFoundError) as exc:
        raise DatabaseConfigError(
            f"cannot use database URL {redacted(url)}: {exc}; "
            "use 'postgresql://' (psycopg2) or 'sqlite:///'"
        ) from exc
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def check_reachable(engine: Engine) -> None:
    """Open and close one connection, or raise :class:`DatabaseUnavailableError` saying why."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseUnavailableError(
            f"cannot connect to {redacted(engine.url.render_as_string(hide_password=False))}: "
            f"{reason}. Check that the server is running and the URL (CANDELA_DATABASE_URL) "
            "names an existing host, port and database"
        ) from exc


def _alembic_config(engine: Engine):
    # alembic loads only to migrate or check the schema: keeps `candela --help` light
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    """The newest migration revision the code knows."""
    # alembic loads only to migrate or check the schema: keeps `candela --help` light
    from alembic.script import ScriptDirectory

    config = _alembic_config(None)  # type: ignore[arg-type]
    return ScriptDirectory.from_config(config).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The migration revision the database is at, or ``None`` for an empty database."""
    # alembic loads only to migrate or check the schema: keeps `candela --help` light
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Migrate the database to ``revision``; return ``(revision before, revision after)``."""
    # alembic loads only to migrate or check the schema: keeps `candela --help` light
    from alembic import command

    check_reachable(engine)
    before = current_revision(engine)
    command.upgrade(_alembic_config(engine), revision)
    return before, current_revision(engine) or ""


def require_current_schema(engine: Engine) -> None:
    """Raise :class:`SchemaOutdatedError` unless the database is at the code's head revision."""
    check_reachable(engine)
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    where = redacted(str(engine.url.render_as_string(hide_password=False)))
    if current is None:
        raise SchemaOutdatedError(
            f"database {where} has no Candela schema yet: run 'candela db upgrade' "
            "(or 'make demo', which upgrades the embedded database)"
        )
    raise SchemaOutdatedError(
        f"database {where} is at schema revision {current}, the code expects {head}: "
        "run 'candela db upgrade' to migrate it"
    )


def connect(url: str | None = None, *, require_schema: bool = True, pool_size: int = 5) -> Engine:
    """Return an engine for ``url`` after checking that it is reachable and its schema current.

    Parameters
    ----------
    url : str, optional
        Database URL; see :func:`database_url` for the default.
    require_schema : bool
        When true (the default), refuse a database whose schema is not at the head revision.
    pool_size : int
        Connections kept by the PostgreSQL pool (as many again may overflow).
    """
    engine = create_database_engine(url, pool_size=pool_size)
    if require_schema:
        require_current_schema(engine)
    else:
        check_reachable(engine)
    return engine


def insert_ignoring_duplicates(
    connection: Connection, table: Table, rows: Sequence[Mapping] | Iterable[Mapping]
) -> int:
    """Insert ``rows`` into ``table``, skipping rows whose key already exists.

    Uses ``INSERT ... ON CONFLICT DO NOTHING`` on both PostgreSQL and SQLite.

    Returns
    -------
    int
        The number of rows actually inserted.
    """
    rows = list(rows)
    if not rows:
        return 0
    dialect = connection.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table).on_conflict_do_nothing()
    inserted = 0
    per_chunk = max(1, 30_000 // len(table.columns))  # stay under SQLite's bound-variable limit
    for start in range(0, len(rows), per_chunk):
        chunk = rows[start : start + per_chunk]
        result = connection.execute(statement.values(chunk))
        inserted += max(result.rowcount, 0)
    return inserted
