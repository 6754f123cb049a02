"""The live-loop tests use the pipeline tests' loopback exchange and the runner tests' helpers."""

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
for folder in (TESTS / "data_pipeline", TESTS / "runner", Path(__file__).resolve().parent):
    sys.path.insert(0, str(folder))

from runner_fixtures import pg_url  # noqa: E402,F401
