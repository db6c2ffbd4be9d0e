"""Run history (one row per execution of a task, whatever started it), the
schedules beat fires, and the users who may start, cancel and read runs, with their
API tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from myapp.extensions import db

STATES = ("PENDING", "STARTED", "PROGRESS", "RETRY", "SUCCESS", "FAILURE", "REVOKED")
ACTIVE_STATES = ("PENDING", "STARTED", "PROGRESS", "RETRY")
FINISHED_STATES = ("SUCCESS", "FAILURE", "REVOKED")
SOURCES = ("api", "web", "dash-background", "dash-queued", "beat", "cli", "external")
# User names are short, lower-case and safe in URLs, logs and key names.
USER_NAME_LENGTH = 64
SCHEDULE_NAME_LENGTH = 100


def utcnow() -> datetime:
    """Naive UTC: SQLite keeps no zone, so every timestamp is stored as UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def isoformat(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return (
        moment.replace(tzinfo=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class Run(db.Model):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_created_at_id", "created_at", "id"),
        Index("ix_runs_state_heartbeat", "state", "heartbeat_at"),
        UniqueConstraint("idempotency_key", name="uq_runs_idempotency_key"),
        # One fire of one schedule is one run, whatever sent it how often (two
        # beats after a lost lock, a redelivered message). Runs without a fire
        # time (starts, "run now") are not constrained: NULLs are distinct.
        UniqueConstraint("schedule_id", "fire_at", name="uq_runs_schedule_fire"),
    )

    # The Celery task id, chosen before the message is sent.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    task: Mapped[str] = mapped_column(String(64), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source: Mapped[str] = mapped_column(String(32), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True, default="PENDING")
    progress_current: Mapped[int | None] = mapped_column(Integer)
    progress_total: Mapped[int | None] = mapped_column(Integer)
    progress_message: Mapped[str | None] = mapped_column(String(200))
    result: Mapped[Any | None] = mapped_column(JSON)
    error_type: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    worker: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Set once the message is on the broker; a PENDING run without it is in the outbox.
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The user who started it (None for beat and external runs) and who cancelled
    # it. Names, not keys: the history outlives any change to the users table.
    created_by: Mapped[str | None] = mapped_column(String(USER_NAME_LENGTH), index=True)
    cancelled_by: Mapped[str | None] = mapped_column(String(USER_NAME_LENGTH))
    # Lines the task logged past RUN_LOG_MAX_LINES (the kept ones are RunLogBatch).
    log_dropped: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The schedule that fired it (or that a user ran now), and the fire time it
    # stands for. A plain column, not a foreign key: the history outlives a
    # deleted schedule, as it outlives a deleted user.
    schedule_id: Mapped[int | None] = mapped_column(Integer, index=True)
    fire_at: Mapped[datetime | None] = mapped_column(DateTime)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None or self.started_at is None:
            return None
        return round((self.finished_at - self.started_at).total_seconds(), 3)

    @property
    def status_url(self) -> str:
        return f"/api/runs/{self.id}"

    def to_dict(self) -> dict[str, Any]:
        progress = None
        if self.progress_total is not None:
            progress = {
                "current": self.progress_current,
                "total": self.progress_total,
                "message": self.progress_message,
            }
        error = None
        if self.error_type is not None:
            error = {"type": self.error_type, "message": self.error_message}
        return {
            "id": self.id,
            "task": self.task,
            "params": self.params,
            "source": self.source,
            "state": self.state,
            "progress": progress,
            "result": self.result,
            "error": error,
            "attempts": self.attempts,
            "created_at": isoformat(self.created_at),
            "started_at": isoformat(self.started_at),
            "finished_at": isoformat(self.finished_at),
            "duration_s": self.duration_s,
            "status_url": self.status_url,
            "created_by": self.created_by,
            "cancelled_by": self.cancelled_by,
            "schedule_id": self.schedule_id,
            "fire_at": isoformat(self.fire_at),
        }


class RunLogBatch(db.Model):
    """Lines a task wrote to its run's log (`ctx.log`), as one flush wrote them:
    one row per batch (a write costs one row, whatever the task logs), each line
    `[seq, at, level, message]`. The task's words, shown to whoever may read the
    run; deleted with the run."""

    __tablename__ = "run_log_batches"

    run_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    # Seqs are 1, 2, … per run; a reader asks for the lines after the last it saw.
    first_seq: Mapped[int] = mapped_column(
        Integer, primary_key=True, autoincrement=False
    )
    last_seq: Mapped[int] = mapped_column(Integer)
    lines: Mapped[list[Any]] = mapped_column(JSON)


class Schedule(db.Model):
    """A task that beat starts on an interval or a cron expression, with its
    parameters; users edit it while the app runs (myapp.schedules)."""

    __tablename__ = "schedules"
    __table_args__ = (
        UniqueConstraint("name", name="uq_schedules_name"),
        # Ids are never reused (SQLite would reuse the highest after a delete), so
        # runs of a deleted schedule never name a new one.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(SCHEDULE_NAME_LENGTH))
    task: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Exactly one of the two is set (checked when saved).
    every_s: Mapped[int | None] = mapped_column(Integer)
    cron: Mapped[str | None] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # Its runs are started as this user (None: made by a migration, the system's).
    created_by: Mapped[str | None] = mapped_column(String(USER_NAME_LENGTH))
    updated_by: Mapped[str | None] = mapped_column(String(USER_NAME_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # The latest fire time beat has sent: the next one is computed from it.
    last_fire_at: Mapped[datetime | None] = mapped_column(DateTime)


class User(UserMixin, db.Model):
    """Someone who signs in (a browser session) or calls the API (a token)."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("name", name="uq_users_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(USER_NAME_LENGTH))
    role: Mapped[str] = mapped_column(String(16))
    # A slow salted hash (werkzeug's scrypt); None: no password sign-in at all.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Part of every session's id: raising it (disable, new password) ends every
    # session of this user at its next request.
    auth_epoch: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    def get_id(self) -> str:
        """What Flask-Login keeps in the session: the id and the epoch it was
        signed in under."""
        return f"{self.id}:{self.auth_epoch}"

    @property
    def is_active(self) -> bool:
        return not self.disabled


class ApiToken(db.Model):
    """A bearer token of a user. Only the SHA-256 of the token is stored: the token
    itself is shown once, when it is made."""

    __tablename__ = "api_tokens"
    __table_args__ = (UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
