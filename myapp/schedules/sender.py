"""Beat's side of schedules: on every pass of the beat that holds the lock, read the
rows and send the fires that are due.

Beat follows the table itself instead of copying rows into RedBeat entries: the row
is the one truth (no second copy in Redis to drift, nothing to reconcile when a
sync fails half-way), a change is seen at the next pass (at most
`beat_max_loop_interval`, 5 s) by whichever beat sends, and the fire time is
computed from the row (`timing`), so two senders name the same fire.

For each enabled row whose task exists and whose creator may start it:

1. the latest fire time due and not yet sent (one, however long beat was away);
2. its message, with the schedule's id and the fire time in headers
   (`runs.SCHEDULE_HEADER`, `runs.FIRE_HEADER`);
3. only once the broker took it, `last_fire_at` moves forward (a conditional
   UPDATE, never backwards). A send that fails is tried again next pass; a crash
   between 2 and 3 sends the fire again, and the worker keeps one run per fire
   (the database's unique (schedule_id, fire_at)).

Nothing here raises into beat: a bad row is logged (once per problem) and skipped,
a database outage is logged and the pass ends; the maintenance entries go on.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from flask import Flask
from sqlalchemy import or_, select, update

from myapp.extensions import db
from myapp.models import Schedule, isoformat, utcnow
from myapp.runs.dispatch import FIRE_HEADER, SCHEDULE_HEADER, send
from myapp.schedules.service import paused_reason, timing_of

log = logging.getLogger("myapp.schedules")


class ScheduleSender:
    """Sends the due fires of the schedules table; one per beat process."""

    def __init__(self, flask_app: Flask, max_delay: float):
        self.flask_app = flask_app
        self.max_delay = max_delay
        # The last problem reported per schedule, so each is logged once, not on
        # every pass.
        self._reported: dict[int, str | None] = {}

    def tick(self) -> float:
        """Send what is due; seconds until the next fire (at most max_delay)."""
        try:
            with self.flask_app.app_context():
                try:
                    return self._send_due(utcnow())
                finally:
                    db.session.remove()
        except Exception as exc:  # the database away: try again next pass
            self._report(0, f"schedules not read: {type(exc).__name__}: {exc}")
            return self.max_delay

    def _send_due(self, now: datetime) -> float:
        rows = db.session.scalars(
            select(Schedule).where(Schedule.enabled.is_(True)).order_by(Schedule.id)
        ).all()
        self._report(0, None)
        delay = self.max_delay
        for schedule in rows:
            try:
                delay = min(delay, self._send_one(schedule, now))
            except Exception as exc:  # one bad row must not stop the others
                db.session.rollback()
                self._report(schedule.id, f"{type(exc).__name__}: {exc}")
        return max(delay, 0.1)

    def _send_one(self, schedule: Schedule, now: datetime) -> float:
        """Send this schedule's due fire, if any; seconds until its next one."""
        reason = paused_reason(schedule)
        self._report(schedule.id, reason, paused=True)
        if reason is not None:
            return self.max_delay
        timing = timing_of(schedule)
        anchor, last = schedule.created_at, schedule.last_fire_at
        fire_at = timing.due(
            anchor=anchor, last_fire=last, now=now, changed=schedule.updated_at
        )
        if fire_at is not None and self._send(schedule, fire_at):
            last = fire_at
        (upcoming,) = timing.upcoming(anchor=anchor, last_fire=last, now=now, count=1)
        return (upcoming - now).total_seconds()

    def _send(self, schedule: Schedule, fire_at: datetime) -> bool:
        # The line beat writes for its own entries, so one grep finds every send.
        log.info("Scheduler: Sending due task %s (%s)", schedule.name, schedule.task)
        headers = {SCHEDULE_HEADER: str(schedule.id), FIRE_HEADER: isoformat(fire_at)}
        sent = send(str(uuid.uuid4()), schedule.task, schedule.params, "beat", headers)
        if sent:
            db.session.execute(
                update(Schedule)
                .where(Schedule.id == schedule.id)
                .where(
                    or_(
                        Schedule.last_fire_at.is_(None),
                        Schedule.last_fire_at < fire_at,
                    )
                )
                .values(last_fire_at=fire_at)
            )
            db.session.commit()
        return sent

    def _report(self, key: int, problem: str | None, *, paused: bool = False) -> None:
        """Log a schedule's problem when it changes (and when it clears)."""
        before = self._reported.get(key)
        if problem == before:
            return
        self._reported[key] = problem
        what = "schedules" if key == 0 else f"schedule {key}"
        if problem is None:
            log.info("%s: sending again", what)
        elif paused:
            log.warning("%s paused: %s", what, problem)
        else:
            log.error("%s skipped: %s", what, problem)
