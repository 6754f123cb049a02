"""trades: the market of a portfolio bot's fill

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trades", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "symbol",
                sa.String(length=40),
                nullable=True,
                comment="the market of a portfolio bot's fill (null for a single-market bot)",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("trades", schema=None) as batch_op:
        batch_op.drop_column("symbol")
