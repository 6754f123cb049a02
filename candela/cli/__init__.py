"""The roof: the ``candela`` command line, its subcommand groups and the demo.

:mod:`candela.cli.app` builds the parser and runs a command; each subcommand group lives in
:mod:`candela.cli.commands`; the steps of ``candela demo`` in :mod:`candela.cli.demo`. The roof
may import every package of Candela; nothing imports the roof (checked by import-linter).
"""

from candela.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
