"""``candela db``: schema migrations."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("db", help="database schema management")
    sub = parser.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)
    upgrade = sub.add_parser("upgrade", help="create or migrate the schema to the newest revision")
    upgrade.set_defaults(handler=_upgrade)
    current = sub.add_parser("current", help="print the schema revision of the database")
    current.set_defaults(handler=_current)


def _upgrade(arguments: argparse.Namespace) -> int:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.core.db import connect, redacted, upgrade

    engine = connect(arguments.database_url, require_schema=False)
    before, after = upgrade(engine)
    where = redacted(engine.url.render_as_string(hide_password=False))
    if before == after:
        print(f"{where}: schema already at revision {after}")
    else:
        print(f"{where}: schema upgraded from {before or 'empty'} to {after}")
    return 0


def _current(arguments: argparse.Namespace) -> int:
    # imported when the command runs, not at start-up: keeps `candela --help` light
    from candela.core.db import connect, current_revision, head_revision

    engine = connect(arguments.database_url, require_schema=False)
    current, head = current_revision(engine), head_revision()
    state = (
        "up to date"
        if current == head
        else f"behind (code expects {head}); run 'candela db upgrade'"
    )
    print(f"schema revision {current or 'none'}: {state}")
    return 0 if current == head else 1
