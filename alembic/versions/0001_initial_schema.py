"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21 20:02:25.129554
"""

import sqlalchemy as sa

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bot_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("bot_id", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False, comment="wall-clock ms UTC"),
        sa.Column(
            "event",
            sa.String(length=24),
            nullable=False,
            comment="started | stopped | crashed | restarted | failed",
        ),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bot_events")),
    )
    with op.batch_alter_table("bot_events", schema=None) as batch_op:
        batch_op.create_index("ix_bot_events_bot_ts", ["bot_id", "ts"], unique=False)

    op.create_table(
        "bots",
        sa.Column("bot_id", sa.String(length=64), nullable=False),
        sa.Column("strategy", sa.String(length=64), nullable=False),
        sa.Column("exchange", sa.String(length=32), nullable=False),
        sa.Column("symbol", sa.String(length=40), nullable=False),
        sa.Column("timeframe", sa.String(length=8), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False, comment="the validated bot config"),
        sa.Column(
            "status", sa.String(length=16), nullable=False, comment="active | stopped | failed"
        ),
        sa.Column("restarts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("heartbeat_at", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("bot_id", name=op.f("pk_bots")),
    )
    op.create_table(
        "collector_state",
        sa.Column("exchange", sa.String(length=32), nullable=False),
        sa.Column("symbol", sa.String(length=40), nullable=False),
        sa.Column("last_trade_id", sa.BigInteger(), nullable=True),
        sa.Column("last_trade_ts", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("exchange", "symbol", name=op.f("pk_collector_state")),
    )
    op.create_table(
        "gaps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("exchange", sa.String(length=32), nullable=False),
        sa.Column("symbol", sa.String(length=40), nullable=False),
        sa.Column("timeframe", sa.String(length=8), nullable=False),
        sa.Column(
            "first_missing_ts",
            sa.BigInteger(),
            nullable=False,
            comment="close ts of the first missing bar",
        ),
        sa.Column(
            "last_missing_ts",
            sa.BigInteger(),
            nullable=False,
            comment="close ts of the last missing bar",
        ),
        sa.Column("missing_bars", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.String(length=24),
            nullable=False,
            comment="open | refetched | confirmed_empty | partially_refetched",
        ),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("found_at", sa.BigInteger(), nullable=False),
        sa.Column("resolved_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gaps")),
        sa.UniqueConstraint(
            "exchange", "symbol", "timeframe", "first_missing_ts", name="uq_gaps_market_start"
        ),
    )
    op.create_table(
        "ohlcv",
        sa.Column("exchange", sa.String(length=32), nullable=False),
        sa.Column("symbol", sa.String(length=40), nullable=False),
        sa.Column("timeframe", sa.String(length=8), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False, comment="bar close time, ms UTC"),
        sa.Column("open", sa.Double(), nullable=False),
        sa.Column("high", sa.Double(), nullable=False),
        sa.Column("low", sa.Double(), nullable=False),
        sa.Column("close", sa.Double(), nullable=False),
        sa.Column("volume", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("exchange", "symbol", "timeframe", "ts", name=op.f("pk_ohlcv")),
    )
    op.create_table(
        "raw_trades",
        sa.Column("exchange", sa.String(length=32), nullable=False),
        sa.Column("symbol", sa.String(length=40), nullable=False),
        sa.Column("trade_id", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False, comment="trade time, ms UTC"),
        sa.Column("price", sa.Double(), nullable=False),
        sa.Column("amount", sa.Double(), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False, comment="taker side: buy or sell"),
        sa.PrimaryKeyConstraint("exchange", "symbol", "trade_id", name=op.f("pk_raw_trades")),
    )
    with op.batch_alter_table("raw_trades", schema=None) as batch_op:
        batch_op.create_index("ix_raw_trades_market_ts", ["exchange", "symbol", "ts"], unique=False)

    op.create_table(
        "strategy_runs",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("strategy", sa.String(length=64), nullable=False),
        sa.Column("params_json", sa.Text(), nullable=False),
        sa.Column("exchange", sa.String(length=32), nullable=True),
        sa.Column("symbol", sa.String(length=40), nullable=True),
        sa.Column("timeframe", sa.String(length=8), nullable=True),
        sa.Column("start_ts", sa.BigInteger(), nullable=False),
        sa.Column("end_ts", sa.BigInteger(), nullable=False),
        sa.Column("costs_json", sa.Text(), nullable=False),
        sa.Column("stats_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_strategy_runs")),
    )
    op.create_table(
        "bot_performance",
        sa.Column("bot_id", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False, comment="bar close ts"),
        sa.Column("equity", sa.Double(), nullable=False),
        sa.Column("cash", sa.Double(), nullable=False),
        sa.Column("position", sa.Double(), nullable=False),
        sa.Column("price", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bot_id"],
            ["bots.bot_id"],
            name=op.f("fk_bot_performance_bot_id_bots"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("bot_id", "ts", name=op.f("pk_bot_performance")),
    )
    op.create_table(
        "bot_state",
        sa.Column("bot_id", sa.String(length=64), nullable=False),
        sa.Column("cash", sa.Double(), nullable=False),
        sa.Column(
            "position", sa.Double(), nullable=False, comment="units of the base asset, signed"
        ),
        sa.Column(
            "cursor_ts",
            sa.BigInteger(),
            nullable=True,
            comment="close ts of the last processed bar",
        ),
        sa.Column(
            "state_json",
            sa.Text(),
            nullable=False,
            comment="the execution kernel's full state vector",
        ),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bot_id"], ["bots.bot_id"], name=op.f("fk_bot_state_bot_id_bots"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("bot_id", name=op.f("pk_bot_state")),
    )
    op.create_table(
        "signals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("bot_id", sa.String(length=64), nullable=False),
        sa.Column(
            "ts",
            sa.BigInteger(),
            nullable=False,
            comment="close ts of the bar the decision was made at",
        ),
        sa.Column(
            "action", sa.String(length=16), nullable=False, comment="buy | sell | hold | halt"
        ),
        sa.Column(
            "target", sa.Double(), nullable=False, comment="target position level after risk limits"
        ),
        sa.Column(
            "raw_target",
            sa.Double(),
            nullable=False,
            comment="the strategy's target before risk limits",
        ),
        sa.Column("price", sa.Double(), nullable=False, comment="close of the decision bar"),
        sa.Column(
            "executed",
            sa.Boolean(),
            nullable=False,
            comment="whether the decision changes the position",
        ),
        sa.Column("indicators_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bot_id"], ["bots.bot_id"], name=op.f("fk_signals_bot_id_bots"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signals")),
        sa.UniqueConstraint("bot_id", "ts", name="uq_signals_bot_ts"),
    )
    op.create_table(
        "strategy_signals",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False, comment="bar close ts"),
        sa.Column("target", sa.Double(), nullable=False),
        sa.Column("position", sa.Double(), nullable=False),
        sa.Column("cash", sa.Double(), nullable=False),
        sa.Column("equity", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["strategy_runs.run_id"],
            name=op.f("fk_strategy_signals_run_id_strategy_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "ts", name=op.f("pk_strategy_signals")),
    )
    op.create_table(
        "strategy_trades",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("bar_ts", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("size", sa.Double(), nullable=False),
        sa.Column("price", sa.Double(), nullable=False),
        sa.Column("fee", sa.Double(), nullable=False),
        sa.Column("reason", sa.String(length=24), nullable=False),
        sa.Column("realized_pnl", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["strategy_runs.run_id"],
            name=op.f("fk_strategy_trades_run_id_strategy_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "seq", name=op.f("pk_strategy_trades")),
    )
    op.create_table(
        "trades",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("bot_id", sa.String(length=64), nullable=False),
        sa.Column(
            "bar_ts",
            sa.BigInteger(),
            nullable=False,
            comment="close ts of the bar the fill happened in",
        ),
        sa.Column("seq", sa.Integer(), nullable=False, comment="order of the fill within its bar"),
        sa.Column(
            "ts", sa.BigInteger(), nullable=False, comment="fill time: bar open for signal fills"
        ),
        sa.Column("side", sa.String(length=4), nullable=False, comment="buy | sell"),
        sa.Column("size", sa.Double(), nullable=False, comment="units, positive"),
        sa.Column("price", sa.Double(), nullable=False, comment="fill price including slippage"),
        sa.Column("fee", sa.Double(), nullable=False),
        sa.Column("reason", sa.String(length=24), nullable=False),
        sa.Column("realized_pnl", sa.Double(), nullable=False),
        sa.Column("cash_after", sa.Double(), nullable=False),
        sa.Column("position_after", sa.Double(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bot_id"], ["bots.bot_id"], name=op.f("fk_trades_bot_id_bots"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trades")),
        sa.UniqueConstraint("bot_id", "bar_ts", "seq", name="uq_trades_bot_bar_seq"),
    )


def downgrade() -> None:
    op.drop_table("trades")
    op.drop_table("strategy_trades")
    op.drop_table("strategy_signals")
    op.drop_table("signals")
    op.drop_table("bot_state")
    op.drop_table("bot_performance")
    op.drop_table("strategy_runs")
    with op.batch_alter_table("raw_trades", schema=None) as batch_op:
        batch_op.drop_index("ix_raw_trades_market_ts")

    op.drop_table("raw_trades")
    op.drop_table("ohlcv")
    op.drop_table("gaps")
    op.drop_table("collector_state")
    op.drop_table("bots")
    with op.batch_alter_table("bot_events", schema=None) as batch_op:
        batch_op.drop_index("ix_bot_events_bot_ts")

    op.drop_table("bot_events")
