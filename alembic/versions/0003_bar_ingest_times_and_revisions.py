"""ohlcv: when each bar was stored, and the versions revisions replaced

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ohlcv", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "ingested_at",
                sa.BigInteger(),
                nullable=True,
                comment=(
                    "wall-clock ms UTC when this version of the bar was stored (NULL: not recorded)"
                ),
            )
        )
    op.create_table(
        "ohlcv_revisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("exchange", sa.String(length=32), nullable=False),
        sa.Column("symbol", sa.String(length=40), nullable=False),
        sa.Column("timeframe", sa.String(length=8), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False, comment="bar close time, ms UTC"),
        sa.Column("open", sa.Double(), nullable=False),
        sa.Column("high", sa.Double(), nullable=False),
        sa.Column("low", sa.Double(), nullable=False),
        sa.Column("close", sa.Double(), nullable=False),
        sa.Column("volume", sa.Double(), nullable=False),
        sa.Column(
            "ingested_at",
            sa.BigInteger(),
            nullable=True,
            comment="when this superseded version had been stored (NULL: not recorded)",
        ),
        sa.Column(
            "revised_at",
            sa.BigInteger(),
            nullable=False,
            comment="wall-clock ms UTC when a new version replaced this one",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ohlcv_revisions")),
    )
    with op.batch_alter_table("ohlcv_revisions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ohlcv_revisions_market_ts", ["exchange", "symbol", "timeframe", "ts"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("ohlcv_revisions", schema=None) as batch_op:
        batch_op.drop_index("ix_ohlcv_revisions_market_ts")
    op.drop_table("ohlcv_revisions")
    with op.batch_alter_table("ohlcv", schema=None) as batch_op:
        batch_op.drop_column("ingested_at")
