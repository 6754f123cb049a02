"""signals, bot_performance: no foreign key to bots (the replay's hot path)

Every bar a bot processes writes a signal and an equity snapshot; on PostgreSQL the foreign
keys' checks (a lookup in ``bots`` per row) were about a third of the database's work for
those rows. The references they guarded hold by construction: ``runner.ledger.write_bars``
inserts a bot's rows only in the statement (or transaction) that moves that bot's
``bot_state`` cursor, and ``bot_state`` keeps its foreign key to ``bots``; a bot's rows leave
``bots`` only by ``runner.registry.archive_version``, which moves them all first. ``trades``
(a row per fill, not per bar) keeps its foreign key.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_FOREIGN_KEYS = (
    ("signals", "fk_signals_bot_id_bots"),
    ("bot_performance", "fk_bot_performance_bot_id_bots"),
)


def upgrade() -> None:
    for table, name in _FOREIGN_KEYS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    for table, name in _FOREIGN_KEYS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_foreign_key(name, "bots", ["bot_id"], ["bot_id"], ondelete="CASCADE")
