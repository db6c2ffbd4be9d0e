"""Sending a recorded run's message, and the outbox that sends what could not be.

The row is committed before its message is sent (admission), so a broker outage
leaves the run PENDING and not dispatched; beat's `dispatch-pending` sends it later.
Sending twice is harmless: the worker's claim is a conditional UPDATE.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select, update

from myapp.extensions import db
from myapp.models import Run, utcnow

log = logging.getLogger("myapp.runs")

# Message header that tells the worker who sent a run it has no row for (beat).
SOURCE_HEADER = "myapp_source"
# Headers of a schedule's fire: which schedule, and the fire time it stands for
# (ISO 8601 UTC). The worker records both on the run it adopts, and the database
# keeps one run per (schedule, fire time).
SCHEDULE_HEADER = "myapp_schedule_id"
FIRE_HEADER = "myapp_fire_at"

# Publishing must not hold a web request for long when Redis is away: a failed send
# leaves the run PENDING in the outbox and the sweeper sends it later.
PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}

# Runs sent per outbox pass: a long outage drains over a few passes, each short.
OUTBOX_BATCH = 500


def send(
    run_id: str,
    task: str,
    params: Mapping[str, Any],
    source: str,
    headers: Mapping[str, str] | None = None,
) -> bool:
    """Publish a run's message with the run id as task id; False if the broker is
    unreachable (the run stays in the outbox). `headers` are added to the source's."""
    celery_app = current_app.extensions["celery"]
    try:
        celery_app.send_task(
            task,
            kwargs=dict(params),
            task_id=run_id,
            headers={SOURCE_HEADER: source, **(headers or {})},
            retry=True,
            retry_policy=PUBLISH_RETRY_POLICY,
            # The run row is the status of record. A stored result would also make
            # send_task subscribe this process to the result channel first, which
            # blocks ~20 s (the backend's retries) when Redis is down, and leaks a
            # subscription per run in every web process.
            ignore_result=True,
        )
    except Exception as exc:  # kombu raises many types for an unreachable broker
        log.warning("run %s stays in the outbox: broker unreachable (%s)", run_id, exc)
        return False
    return True


def dispatch(run: Run) -> bool:
    """Send the message of a run in the outbox and mark it dispatched. False leaves
    it in the outbox (PENDING, not dispatched) for `dispatch_pending`."""
    if not send(run.id, run.task, run.params, run.source):
        return False
    db.session.execute(
        update(Run).where(Run.id == run.id).values(dispatched_at=utcnow())
    )
    db.session.commit()
    return True


def undispatched(run_id: str) -> None:
    """Put a run whose first send failed back in the outbox."""
    db.session.execute(update(Run).where(Run.id == run_id).values(dispatched_at=None))
    db.session.commit()


def dispatch_pending() -> int:
    """Send PENDING runs whose message never reached the broker (the outbox)."""
    grace = timedelta(seconds=current_app.config["DISPATCH_GRACE_SECONDS"])
    waiting = db.session.scalars(
        select(Run)
        .where(Run.state == "PENDING", Run.dispatched_at.is_(None))
        .where(Run.created_at < utcnow() - grace)
        .order_by(Run.created_at)
        .limit(OUTBOX_BATCH)
    ).all()
    return sum(dispatch(run) for run in waiting)
