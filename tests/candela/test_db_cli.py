"""``candela db`` and database URL handling: clear one-line errors, never a traceback."""

from __future__ import annotations

import socket

import pytest

from candela.cli import main
from candela.core.db import (
    DatabaseConfigError,
    create_database_engine,
    current_revision,
    head_revision,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_upgrade_then_current_on_sqlite(capsys, sqlite_url):
    code, out, _ = run_cli(capsys, "--database-url", sqlite_url, "db", "upgrade")
    assert code == 0 and "upgraded from empty" in out
    code, out, _ = run_cli(capsys, "--database-url", sqlite_url, "db", "upgrade")
    assert code == 0 and "already at revision" in out
    code, out, _ = run_cli(capsys, "--database-url", sqlite_url, "db", "current")
    assert code == 0 and "up to date" in out
    assert current_revision(create_database_engine(sqlite_url)) == head_revision()


def test_upgrade_on_postgres(capsys, postgres_url):
    code, out, _ = run_cli(capsys, "--database-url", postgres_url, "db", "upgrade")
    assert code == 0 and "upgraded from empty" in out


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "cannot parse database URL"),
        ("mysql://user@127.0.0.1/db", "unsupported database backend 'mysql'"),
        ("postgresq://user@127.0.0.1/db", "did you mean 'postgresql'?"),
    ],
)
def test_malformed_or_unsupported_url_is_one_clear_line(capsys, url, expected):
    code, out, err = run_cli(capsys, "--database-url", url, "db", "upgrade")
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err


def test_unreachable_postgres_names_the_server_and_the_fix(capsys):
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/candela"
    code, _, err = run_cli(capsys, "--database-url", url, "db", "upgrade")
    assert code == 2
    assert err.count("\n") == 1
    assert (
        "cannot connect to" in err and "Connection refused" in err and "CANDELA_DATABASE_URL" in err
    )


def test_missing_postgres_database_is_reported(capsys, postgres_admin_url):
    from sqlalchemy.engine import make_url

    url = make_url(postgres_admin_url).set(database="candela_no_such_db").render_as_string(False)
    code, _, err = run_cli(capsys, "--database-url", url, "db", "upgrade")
    assert code == 2 and 'database "candela_no_such_db" does not exist' in err


def test_password_is_hidden_in_errors(capsys):
    url = f"postgresql://alice:s3cret@127.0.0.1:{free_port()}/candela"
    _, _, err = run_cli(capsys, "--database-url", url, "db", "upgrade")
    assert "s3cret" not in err and "***" in err


def test_engine_factory_raises_config_error_for_bad_url():
    with pytest.raises(DatabaseConfigError, match="sqlite:///"):
        create_database_engine("::::")


def test_embedded_database_is_data_candela_db_and_an_earlier_name_stays_found(
    tmp_path, monkeypatch
):
    import candela.core.db as db

    monkeypatch.setattr(db, "DATA_DIR", tmp_path)
    assert db._default_database_path() == tmp_path / "candela.db"
    (tmp_path / "candela.core.db").write_bytes(b"")  # the name earlier versions used
    assert db._default_database_path() == tmp_path / "candela.core.db"
    (tmp_path / "candela.db").write_bytes(b"")  # both: the current name wins
    assert db._default_database_path() == tmp_path / "candela.db"
