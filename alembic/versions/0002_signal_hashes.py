"""signals: hashes of the bot config and of the strategy source behind each decision

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("signals", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "config_hash",
                sa.String(length=64),
                nullable=True,
                comment="SHA-256 of the bot's config (canonical JSON) that made the decision",
            )
        )
        batch_op.add_column(
            sa.Column(
                "strategy_hash",
                sa.String(length=64),
                nullable=True,
                comment="SHA-256 of the source file of the strategy that made the decision",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("signals", schema=None) as batch_op:
        batch_op.drop_column("strategy_hash")
        batch_op.drop_column("config_hash")
