"""The live-operations notebooks reuse the runner tests' helpers and fixtures (tests/runner/)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner"))

from runner_fixtures import ada_btc_bars, any_engine, pg_engine, pg_url  # noqa: E402,F401
