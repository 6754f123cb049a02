"""Subcommand groups of the ``candela`` CLI; each module exposes ``register(subparsers)``.

A handler reports what the user can fix by raising :class:`CommandError`: the CLI prints its
message on one line and exits with status 2. Validation that a handler calls (parameter and
config parsing, symbol and timeframe checks, strategy references) raises ``ValueError``; the
handler converts exactly those calls with :func:`user_errors`. Any other exception is a bug and
keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class CommandError(Exception):
    """A user-facing error: the message says what is wrong and how to fix it."""


@contextmanager
def user_errors(*kinds: type[BaseException], prefix: str = "") -> Iterator[None]:
    """Turn the exceptions ``kinds`` (default ``ValueError`` and ``TypeError``) raised inside the
    block into :class:`CommandError` with the same message (after ``prefix``).

    Wrap only calls whose exceptions of those kinds are the user's mistake (validation), never a
    call into strategy code: a strategy's bug must keep its traceback.
    """
    try:
        yield
    except kinds or (ValueError, TypeError) as exc:  # noqa: B030 - kinds is a tuple of classes
        raise CommandError(f"{prefix}{exc}") from exc
