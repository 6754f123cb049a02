"""What a test may need that a machine may lack: fail under ``CI=true``, skip elsewhere.

Used by the fixtures of ``tests/conftest.py`` (PostgreSQL, Redis, the wider market-data
collection) and by :func:`market_files.market_file`.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str):
    """Fail under CI=true, skip elsewhere, with ``reason``."""
    if IN_CI:
        pytest.fail(f"{reason} (required when CI=true)", pytrace=False)
    pytest.skip(reason)
