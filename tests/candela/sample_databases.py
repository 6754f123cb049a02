"""Databases of the bundled sample for the command-line tests."""

from __future__ import annotations

from candela.core.db import connect, upgrade
from data_pipeline.importer import import_candles


def sample_database(folder, sample_dir, symbols, timeframe: str = "1h") -> str:
    """A SQLite database in ``folder`` holding the sample's Binance bars of ``symbols``."""
    url = f"sqlite:///{folder / 'sample.db'}"
    engine = connect(url, require_schema=False)
    upgrade(engine)
    for symbol in symbols:
        name = f"binance_{symbol.replace('/', '-')}_{timeframe}.csv.gz"
        import_candles(engine, sample_dir / "ohlcv" / name, "binance", symbol, timeframe)
    engine.dispose()
    return url
