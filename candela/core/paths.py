"""Well-known locations inside the repository and next to it."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The repository root (the folder that holds ``pyproject.toml``)."""

DATA_DIR = REPO_ROOT / "data"
"""Where the embedded SQLite database and other local state live."""

SAMPLE_DIR = REPO_ROOT / "data" / "sample"
"""The small real market-data sample shipped with the repository."""

ALEMBIC_DIR = REPO_ROOT / "alembic"
"""Alembic migration scripts."""

BOT_CONFIG_DIR = REPO_ROOT / "config" / "bots"
"""JSON bot configurations read by the runner."""


def shared_data_dir() -> Path:
    """Return the folder of the shared market-data collection.

    ``CANDELA_SHARED_DATA`` wins when set; otherwise ``shared/data`` beside the repository folder,
    where the CI machine keeps it.
    The folder may not exist (a user's clone has only the bundled sample).
    """
    override = os.environ.get("CANDELA_SHARED_DATA")
    if override:
        return Path(override)
    return REPO_ROOT.parent / "shared" / "data"


USER_STRATEGY_DIR = REPO_ROOT / "user_strategies"
"""The default folder of user strategy modules (nothing creates it; see :func:`strategy_dirs`)."""


def strategy_dirs() -> list[Path]:
    """Return the folders whose ``*.py`` modules hold user strategies, in search order.

    ``CANDELA_STRATEGY_PATH`` wins when set: folders separated by ``os.pathsep`` (``:`` on Linux
    and macOS, ``;`` on Windows), empty entries ignored. Otherwise the one folder
    ``user_strategies/`` at the repository root. The folders may not exist.
    """
    setting = os.environ.get("CANDELA_STRATEGY_PATH")
    if setting is None:
        return [USER_STRATEGY_DIR]
    return [Path(part).expanduser() for part in setting.split(os.pathsep) if part.strip()]
