"""The one database schema, for PostgreSQL and SQLite (docs/architecture.md §4).

SQLAlchemy 2 Core tables. Alembic migrations in ``alembic/versions`` create exactly these tables;
``tests/candela/test_schema.py`` checks that a migrated database matches this metadata on both
engines, so a change here needs a migration.

Conventions
-----------
* ``ts`` columns are int64 milliseconds UTC. For bars, ``ts`` is the bar's **close** time.
* Prices, sizes and money are double precision.
* ``*_json`` columns hold JSON text (portable across both engines).
* ``created_at``/``updated_at``/``heartbeat_at``/``ingested_at``/``revised_at`` are int64
  milliseconds UTC wall-clock times.
* A bar's values may be **revised** (``data_pipeline.store.store_bars(..., revise=True)``): the
  new values replace the row of ``ohlcv`` and the version they replace moves to
  ``ohlcv_revisions``, so what any bar looked like at any moment can be rebuilt
  (``ingested_at`` of a version up to the ``revised_at`` that ended it).
"""

from __future__ import annotations

import time

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# --------------------------------------------------------------------------- market data

ohlcv = Table(
    "ohlcv",
    metadata,
    Column("exchange", String(32), primary_key=True),
    Column("symbol", String(40), primary_key=True),
    Column("timeframe", String(8), primary_key=True),
    Column("ts", BigInteger, primary_key=True, comment="bar close time, ms UTC"),
    Column("open", Double, nullable=False),
    Column("high", Double, nullable=False),
    Column("low", Double, nullable=False),
    Column("close", Double, nullable=False),
    Column("volume", Double, nullable=False),
    Column(
        "ingested_at",
        BigInteger,
        nullable=True,
        default=lambda: time.time_ns() // 1_000_000,
        comment="wall-clock ms UTC when this version of the bar was stored (NULL: not recorded)",
    ),
)

ohlcv_revisions = Table(
    "ohlcv_revisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(40), nullable=False),
    Column("timeframe", String(8), nullable=False),
    Column("ts", BigInteger, nullable=False, comment="bar close time, ms UTC"),
    Column("open", Double, nullable=False),
    Column("high", Double, nullable=False),
    Column("low", Double, nullable=False),
    Column("close", Double, nullable=False),
    Column("volume", Double, nullable=False),
    Column(
        "ingested_at",
        BigInteger,
        nullable=True,
        comment="when this superseded version had been stored (NULL: not recorded)",
    ),
    Column(
        "revised_at",
        BigInteger,
        nullable=False,
        comment="wall-clock ms UTC when a new version replaced this one",
    ),
)
Index(
    "ix_ohlcv_revisions_market_ts",
    ohlcv_revisions.c.exchange,
    ohlcv_revisions.c.symbol,
    ohlcv_revisions.c.timeframe,
    ohlcv_revisions.c.ts,
)

raw_trades = Table(
    "raw_trades",
    metadata,
    Column("exchange", String(32), primary_key=True),
    Column("symbol", String(40), primary_key=True),
    Column("trade_id", BigInteger, primary_key=True),
    Column("ts", BigInteger, nullable=False, comment="trade time, ms UTC"),
    Column("price", Double, nullable=False),
    Column("amount", Double, nullable=False),
    Column("side", String(4), nullable=False, comment="taker side: buy or sell"),
)
Index("ix_raw_trades_market_ts", raw_trades.c.exchange, raw_trades.c.symbol, raw_trades.c.ts)

gaps = Table(
    "gaps",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(40), nullable=False),
    Column("timeframe", String(8), nullable=False),
    Column(
        "first_missing_ts", BigInteger, nullable=False, comment="close ts of the first missing bar"
    ),
    Column(
        "last_missing_ts", BigInteger, nullable=False, comment="close ts of the last missing bar"
    ),
    Column("missing_bars", Integer, nullable=False),
    Column(
        "status",
        String(24),
        nullable=False,
        comment="open | refetched | confirmed_empty | partially_refetched",
    ),
    Column("detail", Text, nullable=True),
    Column("found_at", BigInteger, nullable=False),
    Column("resolved_at", BigInteger, nullable=True),
    UniqueConstraint(
        "exchange", "symbol", "timeframe", "first_missing_ts", name="uq_gaps_market_start"
    ),
)

collector_state = Table(
    "collector_state",
    metadata,
    Column("exchange", String(32), primary_key=True),
    Column("symbol", String(40), primary_key=True),
    Column("last_trade_id", BigInteger, nullable=True),
    Column("last_trade_ts", BigInteger, nullable=True),
    Column("updated_at", BigInteger, nullable=False),
)

# --------------------------------------------------------------------------- paper trading

bots = Table(
    "bots",
    metadata,
    Column("bot_id", String(64), primary_key=True),
    Column("strategy", String(64), nullable=False),
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(40), nullable=False),
    Column("timeframe", String(8), nullable=False),
    Column("config_json", Text, nullable=False, comment="the validated bot config"),
    Column("status", String(16), nullable=False, comment="active | stopped | failed"),
    Column("restarts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Column("heartbeat_at", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

bot_state = Table(
    "bot_state",
    metadata,
    Column("bot_id", String(64), ForeignKey("bots.bot_id", ondelete="CASCADE"), primary_key=True),
    Column("cash", Double, nullable=False),
    Column("position", Double, nullable=False, comment="units of the base asset, signed"),
    Column("cursor_ts", BigInteger, nullable=True, comment="close ts of the last processed bar"),
    Column("state_json", Text, nullable=False, comment="the execution kernel's full state vector"),
    Column("updated_at", BigInteger, nullable=False),
)

signals = Table(
    "signals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # no foreign key to bots (a check per row on the replay's hot path, migration 0006): the
    # ledger writes a bot's rows only together with its bot_state cursor, which has one
    Column("bot_id", String(64), nullable=False),
    Column(
        "ts", BigInteger, nullable=False, comment="close ts of the bar the decision was made at"
    ),
    Column("action", String(16), nullable=False, comment="buy | sell | hold | halt"),
    Column("target", Double, nullable=False, comment="target position level after risk limits"),
    Column(
        "raw_target", Double, nullable=False, comment="the strategy's target before risk limits"
    ),
    Column("price", Double, nullable=False, comment="close of the decision bar"),
    Column(
        "executed", Boolean, nullable=False, comment="whether the decision changes the position"
    ),
    Column("indicators_json", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column(
        "config_hash",
        String(64),
        nullable=True,
        comment="SHA-256 of the bot's config (canonical JSON) that made the decision",
    ),
    Column(
        "strategy_hash",
        String(64),
        nullable=True,
        comment="SHA-256 of the source file of the strategy that made the decision",
    ),
    UniqueConstraint("bot_id", "ts", name="uq_signals_bot_ts"),
)

trades = Table(
    "trades",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("bot_id", String(64), ForeignKey("bots.bot_id", ondelete="CASCADE"), nullable=False),
    Column(
        "bar_ts", BigInteger, nullable=False, comment="close ts of the bar the fill happened in"
    ),
    Column("seq", Integer, nullable=False, comment="order of the fill within its bar"),
    Column("ts", BigInteger, nullable=False, comment="fill time: bar open for signal fills"),
    Column("side", String(4), nullable=False, comment="buy | sell"),
    Column("size", Double, nullable=False, comment="units, positive"),
    Column("price", Double, nullable=False, comment="fill price including slippage"),
    Column("fee", Double, nullable=False),
    Column("reason", String(24), nullable=False),
    Column("realized_pnl", Double, nullable=False),
    Column("cash_after", Double, nullable=False),
    Column("position_after", Double, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column(
        "symbol",
        String(40),
        nullable=True,
        comment="the market of a portfolio bot's fill (null for a single-market bot)",
    ),
    UniqueConstraint("bot_id", "bar_ts", "seq", name="uq_trades_bot_bar_seq"),
)

bot_performance = Table(
    "bot_performance",
    metadata,
    Column("bot_id", String(64), primary_key=True),  # no foreign key, as signals
    Column("ts", BigInteger, primary_key=True, comment="bar close ts"),
    Column("equity", Double, nullable=False),
    Column("cash", Double, nullable=False),
    Column("position", Double, nullable=False),
    Column("price", Double, nullable=False),
)

bot_events = Table(
    "bot_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("bot_id", String(64), nullable=False),
    Column("ts", BigInteger, nullable=False, comment="wall-clock ms UTC"),
    Column(
        "event",
        String(24),
        nullable=False,
        comment="started | stopped | crashed | restarted | failed",
    ),
    Column("detail", Text, nullable=True),
)
Index("ix_bot_events_bot_ts", bot_events.c.bot_id, bot_events.c.ts)

# --------------------------------------------------------------------------- research runs

strategy_runs = Table(
    "strategy_runs",
    metadata,
    Column("run_id", String(36), primary_key=True),
    Column("strategy", String(64), nullable=False),
    Column("params_json", Text, nullable=False),
    Column("exchange", String(32), nullable=True),
    Column("symbol", String(40), nullable=True),
    Column("timeframe", String(8), nullable=True),
    Column("start_ts", BigInteger, nullable=False),
    Column("end_ts", BigInteger, nullable=False),
    Column("costs_json", Text, nullable=False),
    Column("stats_json", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

strategy_signals = Table(
    "strategy_signals",
    metadata,
    Column(
        "run_id",
        String(36),
        ForeignKey("strategy_runs.run_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("ts", BigInteger, primary_key=True, comment="bar close ts"),
    Column("target", Double, nullable=False),
    Column("position", Double, nullable=False),
    Column("cash", Double, nullable=False),
    Column("equity", Double, nullable=False),
)

strategy_trades = Table(
    "strategy_trades",
    metadata,
    Column(
        "run_id",
        String(36),
        ForeignKey("strategy_runs.run_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("seq", Integer, primary_key=True),
    Column("bar_ts", BigInteger, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("side", String(4), nullable=False),
    Column("size", Double, nullable=False),
    Column("price", Double, nullable=False),
    Column("fee", Double, nullable=False),
    Column("reason", String(24), nullable=False),
    Column("realized_pnl", Double, nullable=False),
)


# --------------------------------------------------------------------------- stored sweeps

sweep_runs = Table(
    "sweep_runs",
    metadata,
    Column(
        "run_key",
        String(64),
        primary_key=True,
        comment="SHA-256 of bars_hash, code_hash and settings_json: rows with this key are "
        "interchangeable",
    ),
    Column("strategy", String(64), nullable=False),
    Column("bars_hash", String(64), nullable=False, comment="SHA-256 of the bars' arrays"),
    Column(
        "code_hash",
        String(64),
        nullable=False,
        comment="SHA-256 of the strategy's source file and the engine's",
    ),
    Column(
        "settings_json",
        Text,
        nullable=False,
        comment="costs, stops, risk, initial cash, first traded bar, segment cuts",
    ),
    Column("exchange", String(32), nullable=True),
    Column("symbol", String(40), nullable=True),
    Column("timeframe", String(8), nullable=True),
    Column("start_ts", BigInteger, nullable=False, comment="close ts of the first bar"),
    Column("end_ts", BigInteger, nullable=False, comment="close ts of the last bar"),
    Column("n_bars", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

sweep_rows = Table(
    "sweep_rows",
    metadata,
    Column(
        "run_key",
        String(64),
        ForeignKey("sweep_runs.run_key", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("params_hash", String(64), primary_key=True, comment="SHA-256 of params_json"),
    Column("params_json", Text, nullable=False, comment="every parameter, canonical JSON"),
    Column("stats_json", Text, nullable=False),
    Column(
        "moments",
        LargeBinary,
        nullable=False,
        comment="float64 little-endian, segments x 6 return moments",
    ),
    Column("created_at", BigInteger, nullable=False),
)

sweeps = Table(
    "sweeps",
    metadata,
    Column(
        "sweep_id",
        String(32),
        primary_key=True,
        comment="hash of run_key and the grid: the same sweep run again has the same id",
    ),
    Column(
        "run_key", String(64), ForeignKey("sweep_runs.run_key", ondelete="CASCADE"), nullable=False
    ),
    Column("kind", String(16), nullable=False, comment="sweep, search or walkforward"),
    Column("strategy", String(64), nullable=False),
    Column("grid_json", Text, nullable=False),
    Column("metric", String(64), nullable=False),
    Column("min_trades", Integer, nullable=False),
    Column("n_combinations", Integer, nullable=False),
    Column("n_done", Integer, nullable=False),
    Column("status", String(16), nullable=False, comment="running or complete"),
    Column("summary_json", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)
Index("ix_sweeps_created_at", sweeps.c.created_at)
