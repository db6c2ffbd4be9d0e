"""State changes of a run row, shared by the worker, cancel and the reaper.

Every change is a conditional UPDATE … RETURNING: a duplicate message, a late
progress report or a cancel racing a finish can never move a run backwards, and the
one log line per transition is written from what the UPDATE returned.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from flask import current_app
from sqlalchemy import (
    ColumnElement,
    Row,
    Update,
    bindparam,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import OperationalError

from myapp import metrics
from myapp.extensions import db, get_store
from myapp.models import ACTIVE_STATES, Run, utcnow
from myapp.runs.errors import RunFinished, RunSuperseded
from myapp.runs.permissions import Requester, check_cancel
from myapp.runs.waiting import notify

log = logging.getLogger("myapp.runs")

# Transitions update the table itself, not the mapped class: a plain UPDATE …
# RETURNING skips the ORM's bulk-update machinery, which took a fifth of a trivial
# run's time in the worker (py-spy, bench/tasks.py's no-op).
RUNS = Run.__table__
COLUMNS = RUNS.c

# The columns a transition's log line needs, read back by each UPDATE (RETURNING)
# instead of a second query.
LOGGED = (
    COLUMNS.id,
    COLUMNS.task,
    COLUMNS.source,
    COLUMNS.state,
    COLUMNS.attempts,
    COLUMNS.started_at,
    COLUMNS.finished_at,
)


@dataclass
class Claim:
    """One attempt's hold on a run: the attempt number its claim set.

    A worker cut off from the database for longer than the lease is still running
    when another worker takes the run over (attempt n+1). Every write the first one
    makes afterwards (progress, heartbeat, log lines, its finish, its rows) is
    conditional on `runs.attempts` still being its own number, so it is refused and
    the run's history is only ever written by its current attempt.
    """

    run_id: str
    attempt: int
    superseded: bool = False

    def current(self) -> ColumnElement[bool]:
        """The WHERE clause that fences a write of this attempt."""
        return (COLUMNS.id == self.run_id) & (COLUMNS.attempts == self.attempt)

    def check(self, what: str) -> None:
        """After a refused write: raise RunSuperseded if a later attempt owns the
        run (else the refusal had another reason, e.g. a cancel)."""
        if self.superseded or self.taken_over():
            self.refused(what)
            raise RunSuperseded(self.run_id, self.attempt)

    def taken_over(self) -> bool:
        db.session.rollback()
        attempts = db.session.scalar(select(Run.attempts).where(Run.id == self.run_id))
        db.session.commit()
        return attempts != self.attempt

    def refused(self, what: str) -> None:
        """Note a refused write; the first one is logged (not every heartbeat)."""
        if not self.superseded:
            self.superseded = True
            log.warning(
                "run %s: attempt %d was taken over by a later attempt; its %s and "
                "every later write of it are refused",
                self.run_id,
                self.attempt,
                what,
            )


def bound_lock_wait() -> None:
    """On PostgreSQL, make this transaction's statements give up on a row lock
    after DB_LOCK_TIMEOUT_MS instead of waiting: a session on a host that was cut
    off mid-transaction keeps its locks until the server drops it, and a claim or
    a reaper pass must not hang behind it meanwhile."""
    if db.engine.dialect.name == "postgresql":
        ms = int(current_app.config["DB_LOCK_TIMEOUT_MS"])
        db.session.execute(text(f"SET LOCAL lock_timeout = {ms}"))


def is_lock_timeout(exc: BaseException) -> bool:
    """A statement that gave up on a lock (`bound_lock_wait`)."""
    return (
        isinstance(exc, OperationalError)
        and getattr(exc.orig, "sqlstate", None) == "55P03"
    )


def finish_run(
    run_id: str,
    result: Any,
    progress: tuple[int, int, str] | None,
    claim: Claim | None = None,
) -> bool:
    """Active -> SUCCESS with its result (and the last progress report); with
    `claim`, only while that attempt still owns the run."""
    values: dict[str, Any] = {"state": "SUCCESS", "result": result}
    if progress is not None:
        values.update(
            progress_current=progress[0],
            progress_total=progress[1],
            progress_message=progress[2][:200],
        )
    return end_run(run_id, values, claim)


def fail_run(
    run_id: str,
    error_type: str,
    message: str,
    claim: Claim | None = None,
    *,
    workers: list[str] | None = None,
) -> bool:
    """Active -> FAILURE with `{type, message}`; a finished run keeps its outcome.
    With `claim`, only while that attempt still owns the run; with `workers`, only
    while the run's claim is one of theirs (for a caller that knows no attempt)."""
    return end_run(
        run_id,
        {
            "state": "FAILURE",
            "error_type": error_type[:100],
            "error_message": message[:2000],
        },
        claim,
        workers=workers,
    )


def mark_retry(run_id: str, reason: str, claim: Claim | None = None) -> bool:
    """Active -> RETRY: a transient error, Celery sends the message again. With
    `claim`, only while that attempt still owns the run."""
    db.session.rollback()
    statement = update(RUNS).where(
        COLUMNS.id == run_id, COLUMNS.state.in_(ACTIVE_STATES)
    )
    if claim is not None:
        statement = statement.where(claim.current())
    result = db.session.execute(
        statement.values(
            state="RETRY", progress_message=reason[:200], heartbeat_at=utcnow()
        ).execution_options(synchronize_session=False)
    )
    db.session.commit()
    return result.rowcount == 1


def end_run(
    run_id: str,
    values: dict[str, Any],
    claim: Claim | None = None,
    *,
    workers: list[str] | None = None,
) -> bool:
    """Move an active run to a final state; False if it had already ended (or, with
    `claim` or `workers`, if another attempt owns it)."""
    now = utcnow()
    values = {"finished_at": now, "heartbeat_at": now, **values}
    statement, params = run_update(run_id, ACTIVE_STATES, values, claim, workers)
    return apply_returning(_logged(statement), params) is not None


@functools.cache
def _logged(statement: Update) -> Update:
    """`statement` reading back the columns of the transition's log line, made once
    per statement (a new statement object would compute its cache key anew)."""
    return statement.returning(*LOGGED)


def one_of(column: ColumnElement[Any], values: tuple[str, ...]) -> ColumnElement[bool]:
    """`column IN (…)` for a fixed set, written out: an IN of literals is rendered
    anew at every execution (SQLAlchemy's expanding parameters)."""
    return or_(*(column == literal(value) for value in values))


def run_update(
    run_id: str,
    states: tuple[str, ...],
    values: dict[str, Any],
    claim: Claim | None = None,
    workers: list[str] | None = None,
) -> tuple[Update, dict[str, Any]]:
    """The UPDATE setting `values` on the run while it is in one of `states` (and,
    with `claim`, still that attempt's; with `workers`, claimed by one of them),
    with its parameters. The statement is built once per shape: building one cost
    more than running it on a trivial run."""
    statement = _run_update(
        states, tuple(sorted(values)), claim is not None, bool(workers)
    )
    params = {f"new_{name}": value for name, value in values.items()}
    params["run"] = run_id
    if claim is not None:
        params["attempt"] = claim.attempt
    if workers:
        params["workers"] = workers
    return statement, params


@functools.cache
def _run_update(
    states: tuple[str, ...], columns: tuple[str, ...], fenced: bool, by_workers: bool
) -> Update:
    statement = update(RUNS).where(
        COLUMNS.id == bindparam("run"), one_of(COLUMNS.state, states)
    )
    if fenced:
        statement = statement.where(COLUMNS.attempts == bindparam("attempt"))
    if by_workers:
        statement = statement.where(
            COLUMNS.worker.in_(bindparam("workers", expanding=True))
        )
    return statement.values(
        {name: bindparam(f"new_{name}", type_=COLUMNS[name].type) for name in columns}
    )


def apply_returning(statement: Update, params: dict[str, Any]) -> Row | None:
    """Run one conditional UPDATE … RETURNING LOGGED of one run and commit; when it
    matched, write the transition's log line from the columns it returned (no
    second query). The row it returned, or None when it matched no row."""
    changed = db.session.execute(statement, params).first()
    db.session.commit()
    if changed is not None:
        log_transition(*changed)
    return changed


def cancel_run(run: Run, requester: Requester) -> Run:
    """Cancel a run for `requester` (an operator their own runs, an admin any):
    raises NotAllowed, or RunFinished when it has already ended."""
    check_cancel(requester, run)
    return revoke_run(run, cancelled_by=requester.name)


def revoke_run(run: Run, *, cancelled_by: str | None) -> Run:
    """Mark the run REVOKED and tell the workers; a running task stops at its next
    progress report, a queued message is discarded when it arrives. Callers have
    decided it may be cancelled (`cancel_run` checks the requester)."""
    if run.finished:
        raise RunFinished(run.id)
    try:
        # First, so a commit racing this cancel is refused inside Redis; if the
        # run's rows are already in, the cancel is too late and the run finishes.
        if not get_store().cancel_run(run.id):
            raise RunFinished(run.id)
    except RunFinished:
        raise
    except Exception as exc:  # Redis away: the row and the progress check still stop it
        log.warning("could not flag %s as cancelled in the data store: %s", run.id, exc)
    if end_run(run.id, {"state": "REVOKED", "cancelled_by": cancelled_by}):
        log.info("run %s cancelled by %s", run.id, cancelled_by or "the system")
        try:
            current_app.extensions["celery"].control.revoke(run.id)
        except Exception as exc:  # the row already says REVOKED; workers will obey it
            log.warning("revoke broadcast for %s failed: %s", run.id, exc)
    db.session.refresh(run)
    if run.state != "REVOKED":
        raise RunFinished(run.id)  # it finished first, with its own outcome
    return run


def is_transient(exc: BaseException) -> bool:
    """Errors worth a retry: Redis briefly away. Task bugs are not."""
    return isinstance(exc, redis.ConnectionError | redis.TimeoutError)


def log_transition(
    run_id: str,
    task: str,
    source: str,
    state: str,
    attempts: int,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
) -> None:
    """One line per transition: what operators grep for; counted for /metrics."""
    duration = None
    if started_at is not None and finished_at is not None:
        duration = round((finished_at - started_at).total_seconds(), 3)
    metrics.observe_transition(task, source, state, duration)
    if state != "PENDING":  # nobody waits on a run that was just admitted
        notify(run_id)
    log.info(
        "run %s task=%s source=%s state=%s attempts=%s duration_s=%s",
        run_id,
        task,
        source,
        state,
        attempts,
        duration,
    )


def log_run(run: Run) -> None:
    log_transition(
        run.id,
        run.task,
        run.source,
        run.state,
        run.attempts,
        run.started_at,
        run.finished_at,
    )
