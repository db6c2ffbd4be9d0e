"""beat with one voice: celery-redbeat's scheduler, plus a record of when it ticked.

The schedule and a lock live in Redis (celeryconfig.py explains the settings). Every
beat process but one waits for the lock; the holder sends the due entries and, after
each pass, writes the time to Redis. The web side reads it back for `/metrics` and
`/readyz`: a tick older than `takeover_bound` means no beat is sending at all.

Beat also logs "Sending due task" at INFO for every entry it sends; for the
maintenance passes (every 15 s) that line is dropped, as the passes log themselves
when they act.

Redis going away, for any length of time, never ends a beat process (redbeat alone
exits on the first failed lock renewal). `Scheduler.tick` is the one loop: it takes
the lock when it has none (without blocking: a beat that does not hold it tries again
every `beat_max_loop_interval`), renews it, sends, and records the tick. A Redis
error anywhere in that pass is logged once per outage, and the pass is tried again
after a short wait; a lock that lapsed meanwhile (an outage longer than
`redbeat_lock_timeout`) is taken again, unless another beat took it first.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery import Celery
from kombu.exceptions import OperationalError
from redbeat import RedBeatScheduler
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, get_redis

from myapp.schedules.sender import ScheduleSender

log = logging.getLogger("celery.beat")

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


# What a pass meets while Redis (the schedule, the lock, the broker) is away or not
# yet serving: refused or reset connections, timeouts, a server still loading its
# data, a demoted primary's read-only replies; kombu wraps the broker's as
# OperationalError.
REDIS_DOWN = (redis.RedisError, OperationalError)

# While Redis is away, a pass is tried again this often: soon enough that beat sends
# within a second or two of its return, rare enough to cost nothing meanwhile.
OUTAGE_RETRY_SECONDS = 1.0


class Scheduler(RedBeatScheduler):
    """RedBeatScheduler that survives Redis outages, takes its lock in `tick`, and
    records each pass (celeryconfig's `beat_scheduler`)."""

    # Set before RedBeat's __init__, which installs the schedule (setup_schedule).
    _installed = False
    _outage_since: float | None = None

    def __init__(self, app: Celery, *args: Any, **kwargs: Any) -> None:
        super().__init__(app, *args, **kwargs)
        # redbeat's beat_init receiver takes the lock with a blocking acquire before
        # the first tick; a Redis error there leaves a beat with no lock that exits on
        # its first tick. It does nothing for a scheduler without `lock_key`, so the
        # key is kept under another name and `tick` takes the lock itself.
        self.lock_name, self.lock_key = self.lock_key, None
        self._lock: Any = None

    def setup_schedule(self) -> None:
        # Called while the scheduler is built: with Redis away, install the schedule
        # on the first pass that reaches it instead of exiting at start.
        try:
            super().setup_schedule()
        except REDIS_DOWN as exc:
            self._redis_down(exc)
        else:
            self._installed = True

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            if not self._installed:
                self.setup_schedule()
                if not self._installed:
                    return OUTAGE_RETRY_SECONDS
            if not self._hold_lock():
                # Another beat sends; try again after one loop interval.
                self._redis_back()
                return self.max_interval
            delay = super().tick(*args, **kwargs)
            get_redis(self.app).set(tick_key(self.app), repr(time.time()))
        except REDIS_DOWN as exc:
            self._redis_down(exc)
            return OUTAGE_RETRY_SECONDS
        self._redis_back()
        return min(delay, self._send_schedules())

    def _send_schedules(self) -> float:
        """The schedules users edit are rows, not RedBeat entries: send the due
        fires (never raises; see myapp.schedules.sender)."""
        sender = getattr(self, "_schedule_sender", None)
        if sender is None:
            sender = ScheduleSender(self.app.flask_app, self.max_interval)
            self._schedule_sender = sender
        return sender.tick()

    def _hold_lock(self) -> bool:
        """Renew the lock if this beat holds it, else try once to take it; True if
        this beat holds it now. Redis errors propagate."""
        if self.lock is not None:
            try:
                self.lock.extend(int(self.lock_timeout))
                return True
            except redis.exceptions.LockError:
                # It lapsed while Redis was away (or this process was paused past its
                # lifetime): another beat may be sending now.
                log.warning("beat: lost the lock; taking it again when it is free")
                self.lock = None
        if self._lock is None:
            client = get_redis(self.app)
            self._lock = client.lock(
                self.lock_name, timeout=self.lock_timeout, sleep=self.max_interval
            )
            # redbeat's extend sets the lifetime to lock_timeout (redis-py's adds to
            # what is left).
            self._lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)
        if self._lock.acquire(blocking=False):
            log.info("beat: Acquired lock")
            self.lock = self._lock
            return True
        return False

    def _redis_down(self, exc: Exception) -> None:
        """Log an outage once, when it begins (not a traceback per pass)."""
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning(
                "beat: Redis unreachable (%s: %s); not sending, trying again every "
                "%.0f s",
                type(exc).__name__,
                exc,
                OUTAGE_RETRY_SECONDS,
            )

    def _redis_back(self) -> None:
        if self._outage_since is not None:
            log.warning(
                "beat: Redis is back after %.0f s",
                time.monotonic() - self._outage_since,
            )
            self._outage_since = None

    def close(self) -> None:
        # Releasing the lock at shutdown lets another beat take over at once; it
        # lapses by itself otherwise, so Redis being away then is no error.
        lock, self.lock = self.lock, None
        if lock is not None:
            try:
                if lock.owned():
                    log.info("beat: Releasing lock")
                    lock.release()
            except REDIS_DOWN as exc:
                log.warning("beat: lock not released, it lapses by itself (%s)", exc)
        super().close()

    @property
    def info(self) -> str:
        return (
            super().info
            + f"\n       . lock -> `{self.lock_name}` ({self.lock_timeout}s)"
        )


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
