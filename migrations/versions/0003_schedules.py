"""schedules

Schedules become rows users edit while the app runs (myapp.schedules). The two
schedules that lived in celeryconfig.py are created here from today's settings
(SCHEDULE_SECONDS, PRUNE_AFTER_DAYS, read from the app's config, which reads the
environment), made by nobody (created_by null), so a deployment keeps its behaviour.

Runs get the schedule that fired them and the fire time, nullable and added in
place; the unique pair (schedule_id, fire_at) makes the database refuse a second run
of one fire.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 07:20:00

"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from flask import current_app

# revision identifiers, used by Alembic.
revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

DAY_SECONDS = 86400


def upgrade():
    schedules = op.create_table(
        "schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("task", sa.String(length=64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("every_s", sa.Integer(), nullable=True),
        sa.Column("cron", sa.String(length=100), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("updated_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("last_fire_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", name="uq_schedules_name"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("schedule_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("fire_at", sa.DateTime(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_runs_schedule_id"), ["schedule_id"], unique=False
        )
        batch_op.create_unique_constraint(
            "uq_runs_schedule_fire", ["schedule_id", "fire_at"]
        )

    now = datetime.now(UTC).replace(tzinfo=None)
    config = current_app.config
    seed = {
        "timezone": "UTC",
        "cron": None,
        "enabled": True,
        "created_by": None,
        "updated_by": None,
        "created_at": now,
        "updated_at": now,
        "last_fire_at": None,
    }
    op.bulk_insert(
        schedules,
        [
            {
                **seed,
                "name": "generate-data",
                "task": "generate_data",
                "params": {},
                "every_s": int(config.get("SCHEDULE_SECONDS") or 90),
                "description": "Adds rows to the data set (was SCHEDULE_SECONDS).",
            },
            {
                **seed,
                "name": "prune-runs",
                "task": "prune_runs",
                "params": {
                    "older_than_days": int(config.get("PRUNE_AFTER_DAYS") or 30)
                },
                "every_s": DAY_SECONDS,
                "description": "Deletes old finished runs (was PRUNE_AFTER_DAYS).",
            },
        ],
    )


def downgrade():
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_constraint("uq_runs_schedule_fire", type_="unique")
        batch_op.drop_index(batch_op.f("ix_runs_schedule_id"))
        batch_op.drop_column("fire_at")
        batch_op.drop_column("schedule_id")
    op.drop_table("schedules")
