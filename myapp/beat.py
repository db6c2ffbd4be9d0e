"""beat with one voice: celery-redbeat's scheduler, plus a record of when it ticked.

The schedule and a lock live in Redis (celeryconfig.py explains the settings). Every
beat process but one waits for the lock; the holder sends the due entries and, after
each pass, writes the time to Redis. The web side reads it back for `/metrics` and
`/readyz`: a tick older than `takeover_bound` means no beat is sending at all.

Beat also logs "Sending due task" at INFO for every entry it sends; for the
maintenance passes (every 15 s) that line is dropped, as the passes log themselves
when they act.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Celery
from redbeat import RedBeatScheduler
from redbeat.schedulers import get_redis

from myapp.schedules.sender import ScheduleSender

# Tasks whose routine sends, receipts and successes are not logged at INFO: the
# housekeeping passes (outbox, reaper, retention), which log when they act.
MAINTENANCE_TASK_PREFIX = "myapp."


def tick_key(celery_app: Celery) -> str:
    """The Redis key holding the time of the sending beat's last pass."""
    return celery_app.conf.redbeat_key_prefix + ":last-tick"


def takeover_bound(celery_app: Celery) -> float:
    """Seconds after which, with the lock holder dead, another beat has taken over
    and ticked: the lock's lifetime plus one wait between attempts to take it."""
    conf = celery_app.conf
    return float(conf.redbeat_lock_timeout + conf.beat_max_loop_interval)


def last_tick(celery_app: Celery, client: Any) -> float | None:
    """Unix time of the sending beat's last pass; None if no beat ever ticked."""
    value = client.get(tick_key(celery_app))
    return None if value is None else float(value)


class Scheduler(RedBeatScheduler):
    """RedBeatScheduler that records each pass (celeryconfig's `beat_scheduler`)."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        # The parent renews the lock first and raises if another beat holds it, so
        # only the sender gets here.
        delay = super().tick(*args, **kwargs)
        get_redis(self.app).set(tick_key(self.app), repr(time.time()))
        return min(delay, self._send_schedules())

    def _send_schedules(self) -> float:
        """The schedules users edit are rows, not RedBeat entries: send the due
        fires (never raises; see myapp.schedules.sender)."""
        sender = getattr(self, "_schedule_sender", None)
        if sender is None:
            sender = ScheduleSender(self.app.flask_app, self.max_interval)
            self._schedule_sender = sender
        return sender.tick()


class _RoutineMaintenance(logging.Filter):
    """Drops INFO lines about maintenance tasks being sent, received or done."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        data = getattr(record, "data", None)
        if isinstance(data, dict):  # the worker's "received" and "succeeded" lines
            name = data.get("name")
        elif isinstance(record.args, tuple) and len(record.args) == 2:
            name = record.args[1]  # beat's "Sending due task <entry> (<task>)"
        else:
            return True
        return not (isinstance(name, str) and name.startswith(MAINTENANCE_TASK_PREFIX))


def quiet_routine_logs() -> None:
    """Filter beat's and the worker's routine lines, once per process (apps are built
    many times in one process)."""
    for name in ("celery.beat", "celery.worker.strategy", "celery.app.trace"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RoutineMaintenance) for f in logger.filters):
            logger.addFilter(_RoutineMaintenance())
