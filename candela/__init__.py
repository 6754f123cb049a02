"""Candela's shared layer: schema, database access, message bus, time frames and the CLI.

Kept free of heavy imports: importing :mod:`candela` loads nothing but this docstring.
"""
