"""The reaper: no accepted run stays PENDING, STARTED or RETRY forever.

Celery on Redis loses track of a run in three ways the run row can see:

- the worker's main process is SIGKILLed: its messages sit in the broker's `unacked`
  hash until the visibility timeout (30 min), the run row stays STARTED (or PENDING
  if the message was reserved but not started);
- a pool process dies or is killed by the hard time limit: the row stays STARTED
  with no heartbeat;
- a retry message (ETA) was held by a worker that died: the row stays RETRY.

`reap_runs` runs every few seconds (beat entry `reap-runs`) and, per run:

- STARTED/PROGRESS, heartbeat older than RUN_LEASE_SECONDS: back to RETRY and its
  message is sent again, or FAILURE "WorkerLost" once it has been claimed
  MAX_ATTEMPTS times;
- STARTED/PROGRESS, started longer ago than the hard time limit plus
  REAPER_SLACK_SECONDS: FAILURE "TimeLimitExceeded";
- PENDING (dispatched) or RETRY, untouched for REDISPATCH_SECONDS and with no
  message in the queue (a dead worker had reserved it): its message is sent again.

Sending a message again is always safe: the claim is a conditional UPDATE, so at
most one delivery runs at a time, and the data append is idempotent per run id.
An attempt taken over this way that comes back (its host was cut off, not dead)
is fenced by its attempt number (`transitions.Claim`): it changes nothing.

On PostgreSQL no update here waits longer than DB_LOCK_TIMEOUT_MS for a run row: a
row locked by a session on a host cut off mid-transaction is left for a later pass
(the server drops that session after DB_IDLE_TRANSACTION_SECONDS), and the pass
goes on with the other runs.
PENDING runs never dispatched are the outbox's (`dispatch.dispatch_pending`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import Celery
from flask import current_app
from sqlalchemy import Update, or_, select, update

from myapp.extensions import db, get_redis
from myapp.models import Run, utcnow
from myapp.runs.dispatch import dispatch
from myapp.runs.transitions import bound_lock_wait, fail_run, is_lock_timeout
from myapp.tasks import task_registry

log = logging.getLogger(__name__)

# Queue entries read per queue when looking for a run's message: far above any
# backlog MAX_ACTIVE_RUNS allows, so a queued message is never missed.
_QUEUE_SCAN_LIMIT = 10_000
# Kombu's naming of a queue's priority lists (see broker_lists).
_PRIORITY_SEPARATOR = "\x06\x16"
_PRIORITY_STEPS = ("3", "6", "9")


@dataclass
class ReapReport:
    """What one pass did, by run id (for logs and tests)."""

    resent: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.resent or self.failed)


def hard_time_limit(task: str | None = None) -> float:
    """The hard time limit of `task` in seconds (the pool kills it past that): its
    own (`@task(time_limit=...)`), else Celery's global one."""
    definition = task_registry().get(task) if task is not None else None
    if definition is not None and definition.time_limit is not None:
        return definition.time_limit
    celery_app: Celery = current_app.extensions["celery"]
    return float(celery_app.conf.task_time_limit or 0)


def reap_runs(now: datetime | None = None) -> ReapReport:
    """One pass of the reaper over active runs; see the module docstring."""
    now = now or utcnow()
    report = ReapReport()
    _reap_running(now, report)
    _reap_waiting(now, report)
    if report:
        log.warning(
            "reaper: sent again %s; failed %s",
            report.resent or "-",
            report.failed or "-",
        )
    return report


def _reap_running(now: datetime, report: ReapReport) -> None:
    """STARTED/PROGRESS runs past their hard time limit (FAILURE), or whose
    heartbeat is older than the lease (sent again, or FAILURE after MAX_ATTEMPTS)."""
    config = current_app.config
    lease = timedelta(seconds=config["RUN_LEASE_SECONDS"])
    slack = config["REAPER_SLACK_SECONDS"]

    def overdue(task: str | None = None) -> timedelta:
        return timedelta(seconds=hard_time_limit(task) + slack)

    # The query looks with the shortest limit any task has; each run is then held
    # to its own task's.
    shortest = min([overdue(), *(overdue(name) for name in task_registry())])
    max_attempts = config["MAX_ATTEMPTS"]

    running = db.session.scalars(
        select(Run)
        .where(Run.state.in_(("STARTED", "PROGRESS")))
        .where(
            or_(
                Run.heartbeat_at.is_(None),
                Run.heartbeat_at < now - lease,
                Run.started_at < now - shortest,
            )
        )
        .order_by(Run.created_at)
        .limit(500)
    ).all()
    for run in running:
        if run.started_at is not None and run.started_at < now - overdue(run.task):
            reason = (
                f"ran longer than the hard time limit "
                f"({hard_time_limit(run.task):g} s) and was stopped"
            )
            if _fail(run, "TimeLimitExceeded", reason):
                report.failed.append(run.id)
        elif run.heartbeat_at is not None and run.heartbeat_at >= now - lease:
            continue  # picked by the shortest limit only; alive and within its own
        elif run.attempts >= max_attempts:
            reason = (
                f"worker lost while running (no heartbeat for "
                f"{config['RUN_LEASE_SECONDS']} s); gave up after "
                f"{run.attempts} attempts"
            )
            if _fail(run, "WorkerLost", reason):
                report.failed.append(run.id)
        elif _requeue(run, now, lease):
            report.resent.append(run.id)


def _reap_waiting(now: datetime, report: ReapReport) -> None:
    """Sent PENDING and RETRY runs untouched for REDISPATCH_SECONDS with no message
    in the queue (a dead worker had reserved it): sent again."""
    quiet = now - timedelta(seconds=current_app.config["REDISPATCH_SECONDS"])
    waiting = db.session.scalars(
        select(Run)
        .where(
            or_(
                (Run.state == "PENDING")
                & Run.dispatched_at.is_not(None)
                & (Run.dispatched_at < quiet),
                (Run.state == "RETRY")
                & or_(Run.heartbeat_at.is_(None), Run.heartbeat_at < quiet),
            )
        )
        .order_by(Run.created_at)
        .limit(500)
    ).all()
    if waiting:
        queued = queued_task_ids()
        for run in waiting:
            if run.id not in queued and _resend(run, now):
                report.resent.append(run.id)


def _fail(run: Run, error_type: str, message: str) -> bool:
    # fail_run only moves an active run: a run that just finished keeps its result.
    try:
        bound_lock_wait()
        return fail_run(run.id, error_type, message)
    except Exception as exc:
        return _locked(exc)


def _requeue(run: Run, now: datetime, lease: timedelta) -> bool:
    """A STARTED run whose worker is gone: RETRY, then send its message again.

    The UPDATE repeats the staleness condition, so a run that reported progress
    since it was read is left alone.
    """
    marked = _mark(
        update(Run)
        .where(Run.id == run.id, Run.state.in_(("STARTED", "PROGRESS")))
        .where(or_(Run.heartbeat_at.is_(None), Run.heartbeat_at < now - lease))
        .values(
            state="RETRY",
            heartbeat_at=now,
            progress_message=(
                f"worker lost; running again (attempt {run.attempts + 1})"
            )[:200],
        )
    )
    if not marked:
        return False
    log.warning("run %s: worker lost in attempt %d, sent again", run.id, run.attempts)
    return _send(run)


def _resend(run: Run, now: datetime) -> bool:
    """Send a waiting run's message again; stamp it so the next pass waits."""
    stamp = {"dispatched_at": now} if run.state == "PENDING" else {"heartbeat_at": now}
    if not _mark(
        update(Run).where(Run.id == run.id, Run.state == run.state).values(**stamp)
    ):
        return False
    log.warning("run %s: %s with no message queued, sent again", run.id, run.state)
    return _send(run)


def _mark(statement: Update) -> bool:
    """Apply a conditional UPDATE of one run; False when another process changed the
    run since this pass read it (then it is not sent)."""
    try:
        bound_lock_wait()
        result = db.session.execute(
            statement.execution_options(synchronize_session=False)
        )
        db.session.commit()
    except Exception as exc:
        return _locked(exc)
    return result.rowcount == 1


def _locked(exc: Exception) -> bool:
    """A run row another session holds: left for a later pass (re-raises anything
    else)."""
    if not is_lock_timeout(exc):
        raise exc
    db.session.rollback()
    log.warning("reaper: a run row is locked by another session, left for later")
    return False


def _send(run: Run) -> bool:
    db.session.expire(run)
    fresh = db.session.get(Run, run.id)
    return fresh is not None and dispatch(fresh)


def broker_lists(celery_app: Celery) -> list[tuple[str, str]]:
    """(queue, Redis list) for every queue the app declares, priority lists included:
    kombu keeps priorities 3, 6 and 9 of queue Q in lists named Q + "\\x06\\x16" + p."""
    names = [queue.name for queue in celery_app.amqp.queues.values()]
    return [(n, n) for n in names] + [
        (n, n + _PRIORITY_SEPARATOR + p) for n in names for p in _PRIORITY_STEPS
    ]


def queued_task_ids() -> set[str]:
    """Ids of the task messages waiting in the broker's queues (not reserved)."""
    celery_app: Celery = current_app.extensions["celery"]
    client = get_redis()
    found: set[str] = set()
    for _, name in broker_lists(celery_app):
        for raw in client.lrange(name, 0, _QUEUE_SCAN_LIMIT - 1):
            try:
                found.add(json.loads(raw)["headers"]["id"])
            except (ValueError, KeyError, TypeError):
                continue  # not a Celery protocol 2 message: not ours to judge
    return found
