"""``candela``: the one command-line entry point, with subcommands.

Each group lives in its own module under :mod:`candela.cli.commands`, whose ``register`` adds its
subcommands. Handlers import heavy libraries only when they run, so ``candela --help`` is fast.
Nothing imports this module.

Errors a user can fix (bad input, unreachable database, outdated schema) print one line,
``error: <what is wrong and how to fix it>``, and exit with status 2. Handlers raise
:class:`~candela.cli.commands.CommandError` for them (converting the ``ValueError`` of the
validation they call); every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from candela.cli.commands import (
    CommandError,
    bots,
    data_import,
    db,
    demo,
    pipeline,
    research,
    run,
    strategies,
    validation,
    warmup,
)
from candela.core.db import DatabaseConfigError, DatabaseUnavailableError, SchemaOutdatedError

USER_ERRORS = (CommandError, DatabaseConfigError, DatabaseUnavailableError, SchemaOutdatedError)
"""Printed as one line with exit status 2; anything else propagates with its traceback."""


def installed_version() -> str:
    """The version of the installed ``candela`` distribution (its package metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("candela")
    except PackageNotFoundError:
        raise CommandError(
            "candela is not installed as a package, so it has no version: run "
            "'make install' (or pip install -e .) in the repository"
        ) from None


class _VersionAction(argparse.Action):
    """``--version``: reads the metadata only when asked, so other commands do not pay for it."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            print(f"candela {installed_version()}")
        except CommandError as exc:
            parser.exit(2, f"error: {exc}\n")
        parser.exit(0)


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error convention: one line, exit status 2 (subparsers inherit it)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the ``candela`` argument parser with every subcommand registered."""
    parser = _Parser(prog="candela", description="Crypto research, backtesting and paper trading.")
    parser.add_argument(
        "--database-url",
        default=None,
        help="database URL (default: $CANDELA_DATABASE_URL, else sqlite:///data/candela.db)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument(
        "--version", action=_VersionAction, help="print the installed Candela version and exit"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    db.register(commands)
    data_parser = commands.add_parser(
        "data", help="import, backfill, collect and inspect market data"
    )
    data_commands = data_parser.add_subparsers(
        dest="data_command", metavar="SUBCOMMAND", required=True
    )
    data_import.register(data_commands)
    pipeline.register(data_commands)
    research.register(commands)
    validation.register(commands)
    strategies.register(commands)
    run.register(commands)
    bots.register(commands)
    demo.register(commands)
    warmup.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if arguments.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not arguments.verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return int(arguments.handler(arguments) or 0)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
