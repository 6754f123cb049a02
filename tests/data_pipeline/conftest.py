"""Fixtures for the pipeline tests: the loopback exchange loaded with real market data (``market_files``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from market_files import market_file  # noqa: E402
from mock_exchange import MockExchange, read_candle_file, read_trade_file  # noqa: E402

BINANCE_CANDLES = {
    ("BTCUSDT", "BTC", "USDT"): ("1m", "5m", "1h"),
    ("ETHUSDT", "ETH", "USDT"): ("1m", "1h"),
}
OKX_CANDLES = {"BTC-USDT": ("1m", "1h")}
TRADES = {
    ("BTCUSDT", "BTC", "USDT"): "trades_binance_BTC-USDT.csv.gz",
    ("ETHUSDT", "ETH", "USDT"): "trades_binance_ETH-USDT.csv.gz",
}


@pytest.fixture(scope="session")
def shared_candles():
    """Real candle rows by (exchange file symbol, timeframe) as the mock serves them."""
    cache = {}

    def load(symbol: str, timeframe: str) -> list[list]:
        key = (symbol, timeframe)
        if key not in cache:
            cache[key] = read_candle_file(market_file(f"ohlcv/binance_{symbol}_{timeframe}.csv.gz"))
        return cache[key]

    return load


@pytest.fixture(scope="session")
def mock_server(shared_candles):
    """One loopback exchange for the session, serving real Binance candles and trades.

    The OKX endpoints serve the same real Binance BTC/USDT candles (the data hold no OKX
    candle history), in OKX's wire format.
    """
    mock = MockExchange()
    for (symbol_id, base, quote), timeframes in BINANCE_CANDLES.items():
        for timeframe in timeframes:
            mock.add_binance_candles(
                symbol_id, timeframe, shared_candles(f"{base}-{quote}", timeframe), base, quote
            )
    for inst_id, timeframes in OKX_CANDLES.items():
        for timeframe in timeframes:
            mock.add_okx_candles(inst_id, timeframe, shared_candles(inst_id, timeframe))
    for (symbol_id, base, quote), name in TRADES.items():
        mock.add_trades(symbol_id, read_trade_file(market_file(f"trades/{name}")), base, quote)
    with mock:
        yield mock


@pytest.fixture
def mock(mock_server):
    """The session's loopback exchange with faults, clock and plans reset for this test."""
    mock_server.reset()
    mock_server.now_ms = None
    yield mock_server
    mock_server.reset()
    mock_server.now_ms = None


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def module_engine(request, tmp_path_factory):
    """A migrated database shared by one test module, once on SQLite and once on PostgreSQL."""
    import uuid

    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from candela.core.db import connect, create_database_engine, upgrade

    drop = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('pipeline') / 'candela.db'}"
    else:
        admin_url = request.getfixturevalue("postgres_admin_url")
        name = f"candela_test_{uuid.uuid4().hex[:12]}"
        admin = create_database_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)

        def drop():
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

    migrate = create_database_engine(url)
    upgrade(migrate)
    migrate.dispose()
    engine = connect(url)
    yield engine
    engine.dispose()
    if drop is not None:
        drop()


@pytest.fixture
def db(module_engine):
    """:func:`module_engine` with the market-data tables emptied for this test."""
    from candela.core.schema import collector_state, gaps, ohlcv, raw_trades

    with module_engine.begin() as connection:
        for table in (ohlcv, gaps, collector_state, raw_trades):
            connection.execute(table.delete())
    return module_engine
