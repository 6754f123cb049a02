"""Candela's shared floor and its command-line roof.

* :mod:`candela.core`: schema, database access, message bus, time frames, markets, paths;
  imported by every package, importing none of them.
* :mod:`candela.cli`: the ``candela`` command, its subcommands and the demo; importing every
  package, imported by none.

Kept free of heavy imports: importing :mod:`candela` loads nothing but this docstring.
"""
