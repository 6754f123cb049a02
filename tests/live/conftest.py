"""Live-operations tests (monitor, reconciliation) reuse the runner tests' helpers and fixtures."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from runner_fixtures import ada_btc_bars, any_engine, pg_engine, pg_url  # noqa: E402,F401
