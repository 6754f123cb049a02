"""stored sweeps: sweep_runs, sweep_rows, sweeps

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sweep_runs",
        sa.Column(
            "run_key",
            sa.String(length=64),
            nullable=False,
            comment="SHA-256 of bars_hash, code_hash and settings_json: rows with this key are interchangeable",
        ),
        sa.Column("strategy", sa.String(length=64), nullable=False),
        sa.Column(
            "bars_hash", sa.String(length=64), nullable=False, comment="SHA-256 of the bars' arrays"
        ),
        sa.Column(
            "code_hash",
            sa.String(length=64),
            nullable=False,
            comment="SHA-256 of the strategy's source file and the engine's",
        ),
        sa.Column(
            "settings_json",
            sa.Text(),
            nullable=False,
            comment="costs, stops, risk, initial cash, first traded bar, segment cuts",
        ),
        sa.Column("exchange", sa.String(length=32), nullable=True),
        sa.Column("symbol", sa.String(length=40), nullable=True),
        sa.Column("timeframe", sa.String(length=8), nullable=True),
        sa.Column("start_ts", sa.BigInteger(), nullable=False, comment="close ts of the first bar"),
        sa.Column("end_ts", sa.BigInteger(), nullable=False, comment="close ts of the last bar"),
        sa.Column("n_bars", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("run_key", name=op.f("pk_sweep_runs")),
    )
    op.create_table(
        "sweep_rows",
        sa.Column("run_key", sa.String(length=64), nullable=False),
        sa.Column(
            "params_hash", sa.String(length=64), nullable=False, comment="SHA-256 of params_json"
        ),
        sa.Column(
            "params_json", sa.Text(), nullable=False, comment="every parameter, canonical JSON"
        ),
        sa.Column("stats_json", sa.Text(), nullable=False),
        sa.Column(
            "moments",
            sa.LargeBinary(),
            nullable=False,
            comment="float64 little-endian, segments x 6 return moments",
        ),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_key"],
            ["sweep_runs.run_key"],
            name=op.f("fk_sweep_rows_run_key_sweep_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_key", "params_hash", name=op.f("pk_sweep_rows")),
    )
    op.create_table(
        "sweeps",
        sa.Column(
            "sweep_id",
            sa.String(length=32),
            nullable=False,
            comment="hash of run_key and the grid: the same sweep run again has the same id",
        ),
        sa.Column("run_key", sa.String(length=64), nullable=False),
        sa.Column(
            "kind", sa.String(length=16), nullable=False, comment="sweep, search or walkforward"
        ),
        sa.Column("strategy", sa.String(length=64), nullable=False),
        sa.Column("grid_json", sa.Text(), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("min_trades", sa.Integer(), nullable=False),
        sa.Column("n_combinations", sa.Integer(), nullable=False),
        sa.Column("n_done", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False, comment="running or complete"),
        sa.Column("summary_json", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_key"],
            ["sweep_runs.run_key"],
            name=op.f("fk_sweeps_run_key_sweep_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sweep_id", name=op.f("pk_sweeps")),
    )
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.create_index("ix_sweeps_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.drop_index("ix_sweeps_created_at")

    op.drop_table("sweeps")
    op.drop_table("sweep_rows")
    op.drop_table("sweep_runs")
