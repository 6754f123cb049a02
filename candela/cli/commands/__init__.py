"""Subcommand groups of the ``candela`` CLI; each module exposes ``register(subparsers)``."""


class CommandError(Exception):
    """A user-facing error: the message says what is wrong and how to fix it."""
