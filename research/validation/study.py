"""Where an Optuna study lives: the project's database, beside Candela's own tables.

On PostgreSQL the study's tables go to the schema ``optuna`` of the same database; on SQLite to
a file next to the database, ``<database>.optuna.db``. Optuna keeps its own Alembic version
table, which would clash with Candela's in one schema. The SQLite study file gets Candela's
settings (WAL, no disk flush per commit: Optuna commits a dozen times a trial).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

OPTUNA_SCHEMA = "optuna"


class StudyError(ValueError):
    """The study cannot be kept or continued as asked (an in-memory database, a stored study
    that optimises in the other direction)."""


def project_engine(database_url: str | None):
    from candela.core.db import connect

    return connect(database_url)


def study_storage(engine) -> tuple[str, str]:
    """``(optuna storage URL, label)`` for the project's database ``engine`` (module
    docstring): the ``optuna`` schema on PostgreSQL, ``<database>.optuna.db`` beside a SQLite
    file.

    Raises
    ------
    ValueError
        For an in-memory SQLite database (nothing would survive the process).
    """
    import sqlalchemy as sa

    url = engine.url
    if url.get_backend_name() == "sqlite":
        database = url.database
        if not database or database == ":memory:":
            raise StudyError(
                "an in-memory SQLite database cannot keep a study: use a file "
                "(CANDELA_DATABASE_URL=sqlite:///path/candela.db) or PostgreSQL"
            )
        path = Path(database).expanduser().resolve()
        study_file = path.with_name(path.stem + ".optuna.db")
        return f"sqlite:///{study_file}", str(study_file)
    with engine.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {OPTUNA_SCHEMA}"))
    text = url.render_as_string(hide_password=False)
    label = f"{url.render_as_string(hide_password=True)} (schema {OPTUNA_SCHEMA})"
    return text, label


def rdb_storage(storage_url: str):
    import optuna

    engine_kwargs: dict[str, Any] = {}
    if storage_url.startswith("postgresql"):
        engine_kwargs = {
            "connect_args": {"options": f"-csearch_path={OPTUNA_SCHEMA}"},
            "pool_pre_ping": True,
        }
    else:
        engine_kwargs = {"connect_args": {"timeout": 60}}
    with quiet_optuna():
        storage = optuna.storages.RDBStorage(
            storage_url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=10,
            grace_period=30,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=3
            ),
        )
    if storage_url.startswith("sqlite"):
        # Candela's SQLite settings (WAL, synchronous=NORMAL: a commit without a disk flush,
        # still durable across a crash of the process): Optuna commits a dozen times a trial,
        # and a flushed commit costs ~15 ms
        from sqlalchemy import event

        from candela.core.db import _sqlite_pragmas

        event.listen(storage.engine, "connect", _sqlite_pragmas)
        storage.engine.dispose()
    return storage


class quiet_optuna:
    """Optuna's per-trial log lines and its experimental-feature warnings (the heartbeat) off."""

    def __enter__(self):
        import optuna

        self._level = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return self

    def __exit__(self, *exc_info):
        import optuna

        self._warnings.__exit__(*exc_info)
        optuna.logging.set_verbosity(self._level)
