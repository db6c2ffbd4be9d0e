"""run logs

Each run's own log lines (`ctx.log`), one row per batch a flush wrote (keyed by run
and first seq, deleted with the run), and the count of lines dropped past
RUN_LOG_MAX_LINES on the run. The new column has
a server default, so it is added in place and the previous release keeps working.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 07:20:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "run_log_batches",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("first_seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "first_seq"),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("log_dropped", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade():
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("log_dropped")
    op.drop_table("run_log_batches")
