"""Fixtures of the command-line tests."""

from __future__ import annotations

import pytest

from candela.core.db import connect, upgrade
from data_pipeline.importer import import_candles


@pytest.fixture(scope="module")
def database(tmp_path_factory, repo_root) -> str:
    """A SQLite database holding the sample's Binance BTC/USDT 1h bars (one per test module)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'cli.db'}"
    engine = connect(url, require_schema=False)
    upgrade(engine)
    import_candles(
        engine,
        repo_root / "data" / "sample" / "ohlcv" / "binance_BTC-USDT_1h.csv.gz",
        "binance",
        "BTC/USDT",
        "1h",
    )
    engine.dispose()
    return url
