"""Running a run inside the worker: claim it, run the task body, keep the row in step.

A run is claimed by a conditional UPDATE (PENDING/RETRY -> STARTED, or a takeover of
a STARTED run whose heartbeat lease has lapsed), so of two deliveries of one message
only one runs at a time. While the task body runs, a heartbeat keeps that lease,
whether or not the task reports progress (`runs.progress`). Runs sent by beat or
another Celery client have no row yet: the worker adopts them (`runs.adoption`).

The claim answers the attempt number it set (`Claim`). A worker cut off for longer
than the lease keeps running while another takes the run over; when it comes back,
every write it makes (progress, heartbeat, log lines, finish or failure, its rows
in the data set) is conditional on that number still being the run's, so it is
refused, and the old attempt stops at its next progress report (RunSuperseded)
without touching the run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from flask import current_app
from sqlalchemy import (
    DateTime,
    Row,
    and_,
    bindparam,
    func,
    or_,
    select,
    update,
)

from myapp.extensions import db, get_store
from myapp.models import Run, utcnow
from myapp.runs.adoption import DuplicateFire, Fire, get_or_adopt
from myapp.runs.errors import RunBusy, RunFailed, RunSuperseded
from myapp.runs.logs import run_log
from myapp.runs.progress import ProgressReporter
from myapp.runs.results import ResultNotSerializable, jsonable
from myapp.runs.transitions import (
    COLUMNS,
    LOGGED,
    RUNS,
    Claim,
    apply_returning,
    bound_lock_wait,
    fail_run,
    finish_run,
    is_lock_timeout,
    is_transient,
    mark_retry,
    one_of,
)
from myapp.store import AttemptSuperseded
from myapp.tasks import (
    ProgressHook,
    RunCancelled,
    RunContext,
    TaskDefinition,
    ValidationError,
)

log = logging.getLogger("myapp.runs")


def execute_run(
    definition: TaskDefinition,
    run_id: str,
    kwargs: Mapping[str, Any],
    *,
    args: Sequence[Any] = (),
    source: str = "external",
    worker: str | None = None,
    on_progress: ProgressHook | None = None,
    adopt: bool = True,
    fire: Fire | None = None,
) -> Any:
    """Run a task body for run `run_id`, keeping its row in step.

    Returns the task's result. A run that has already finished returns its stored
    result without running again (duplicate delivery). Raises RunBusy when another
    delivery of the same run is alive, RunFailed for invalid parameters, a cancel
    or (with `adopt=False`) a run that was never admitted, and re-raises the task's
    own exception after recording FAILURE. Raises RunSuperseded (and writes
    nothing more) when a later attempt took the run over meanwhile.
    """
    params, problem = _arguments(definition, kwargs, args)
    # The common case is one UPDATE: the row exists and is waiting. Only when the
    # claim misses is the row read (or adopted, for beat and other clients).
    claim = _claim(run_id, worker)
    if claim is None:
        claimed = _claim_late(definition, run_id, kwargs, source, worker, adopt, fire)
        if not isinstance(claimed, Claim):
            return claimed.result
        claim = claimed
    if problem is not None:
        fail_run(run_id, "ValidationError", problem, claim)
        raise RunFailed(problem)
    result, last_report = _run_body(definition, claim, params, on_progress)
    if not finish_run(run_id, result, last_report, claim):
        # Refused: taken over (raises), or it ended meanwhile (a cancel that came
        # too late to stop the task keeps the run REVOKED).
        claim.check("finish")
    return result


@dataclass(frozen=True)
class _Answered:
    """A delivery answered without running: the run's stored result, or None."""

    result: Any


def _claim_late(
    definition: TaskDefinition,
    run_id: str,
    kwargs: Mapping[str, Any],
    source: str,
    worker: str | None,
    adopt: bool,
    fire: Fire | None,
) -> Claim | _Answered:
    """The claim missed: adopt a run sent without a row (beat, another client) and
    claim it, or answer a finished run's result; RunBusy while another delivery
    holds it, RunFailed for a run never admitted (with `adopt=False`)."""
    try:
        run = get_or_adopt(definition, run_id, kwargs, source, adopt, fire)
    except DuplicateFire:
        log.info(
            "run %s task=%s not run: schedule %s already has a run for its fire at %s",
            run_id,
            definition.name,
            fire.schedule_id if fire else "?",
            fire.at.isoformat() if fire else "?",
        )
        return _Answered(None)
    if run is None:
        raise RunFailed(f"run {run_id} was never admitted; nothing was run")
    if run.finished:
        return _Answered(run.result)
    claim = _claim(run_id, worker)
    if claim is not None:
        return claim
    db.session.expire_all()
    run = db.session.get(Run, run_id)
    if run is None or run.finished:
        return _Answered(None if run is None else run.result)
    raise RunBusy(run_id)


def _run_body(
    definition: TaskDefinition,
    claim: Claim,
    params: dict[str, Any],
    on_progress: ProgressHook | None,
) -> tuple[Any, tuple[int, int, str] | None]:
    """The task's function, with its progress, heartbeat and log: its result (made
    JSON) and its last progress report. Records the outcome of a failure, by this
    attempt only, and raises (RunFailed for the routine ends)."""
    run_id = claim.run_id
    lease = current_app.config["RUN_LEASE_SECONDS"]
    progress = ProgressReporter(run_id, on_progress, beat=lease / 3, claim=claim)
    try:
        with progress, run_log(run_id, claim) as logger:
            context = RunContext(run_id, progress, logger, attempt=claim.attempt)
            result = definition.func(context, **params)
        # A result JSON cannot hold must end the run now, not make the final
        # UPDATE raise and leave it STARTED for the reaper to run again.
        return jsonable(result), progress.last
    except RunSuperseded:
        db.session.rollback()
        raise
    except AttemptSuperseded:
        db.session.rollback()
        claim.refused("data commit")
        raise RunSuperseded(run_id, claim.attempt) from None
    except RunCancelled:
        db.session.rollback()
        claim.check("cancel")
        raise RunFailed(_why_stopped(run_id)) from None
    except SoftTimeLimitExceeded:
        db.session.rollback()
        _fail(claim, "TimeLimitExceeded", _over_time(definition))
        raise
    except ResultNotSerializable as exc:
        db.session.rollback()
        _fail(claim, "ResultNotSerializable", str(exc))
        raise RunFailed(str(exc)) from None
    except Exception as exc:
        db.session.rollback()
        if not is_transient(exc):
            _fail(claim, type(exc).__name__, str(exc) or repr(exc))
        else:
            _retry_or_stop(claim, exc)
        raise


def _why_stopped(run_id: str) -> str:
    """Why a run's row stopped taking this attempt's progress: a cancel, or the
    reaper sending the run again after its lease lapsed (the next claim runs it)."""
    state = db.session.scalar(select(Run.state).where(Run.id == run_id))
    db.session.commit()
    if state == "RETRY":
        return "the run's lease lapsed and it was sent again; this attempt stopped"
    return "the run was cancelled"


def _fail(claim: Claim, error_type: str, message: str) -> None:
    """FAILURE, by this attempt only; a taken-over attempt raises RunSuperseded
    (its error is not the run's: the later attempt decides the outcome)."""
    if not fail_run(claim.run_id, error_type, message, claim):
        claim.check("failure")


def _retry_or_stop(claim: Claim, exc: Exception) -> None:
    """A transient error (Redis away, e.g. on a host cut off): mark the run RETRY
    for Celery's retry, by this attempt only. A taken-over attempt raises
    RunSuperseded instead, so its worker leaves the later attempt's run alone."""
    try:
        marked = mark_retry(claim.run_id, f"retrying: {exc}", claim)
    except Exception as db_error:  # the database away too: Celery retries anyway
        log.warning("run %s: not marked RETRY: %s", claim.run_id, db_error)
        db.session.rollback()
        return
    if not marked:
        claim.check("retry")


def _over_time(definition: TaskDefinition) -> str:
    if definition.time_limit is not None:
        return f"the run reached its time limit of {definition.time_limit:g} s"
    limit = current_app.extensions["celery"].conf.task_soft_time_limit
    return f"the run took longer than {limit} s"


def _arguments(
    definition: TaskDefinition, kwargs: Mapping[str, Any], args: Sequence[Any]
) -> tuple[dict[str, Any], str | None]:
    """A message's parameters as the function's values (a `date`, an `Enum`); or
    what is wrong with them, as the field messages say it."""
    try:
        if args:
            raise ValidationError(
                {
                    "args": "positional arguments are not accepted; "
                    "send parameters by name (kwargs)"
                }
            )
        return definition.arguments(kwargs), None
    except ValidationError as exc:
        return {}, str(exc)


def _claim(run_id: str, worker: str | None) -> Claim | None:
    """PENDING/RETRY -> STARTED, or take over a STARTED run whose lease expired;
    the attempt it set, or None when the run is not there to claim.

    A takeover is refused once the run has been claimed MAX_ATTEMPTS times (a run
    that kills its worker every time is not run forever); the reaper ends it. A
    row locked by a session the database has not yet dropped (a host cut off
    mid-transaction) is not waited for: RunBusy, and Celery asks again later.
    """
    now = utcnow()
    stale = now - timedelta(seconds=current_app.config["RUN_LEASE_SECONDS"])
    max_attempts = current_app.config["MAX_ATTEMPTS"]
    try:
        bound_lock_wait()
        claimed = _claim_update(run_id, worker, now, stale, max_attempts)
    except Exception as exc:
        if not is_lock_timeout(exc):
            raise
        db.session.rollback()
        log.warning("run %s: claim gave up on a locked row", run_id)
        raise RunBusy(run_id) from None
    if claimed is None:
        return None
    claim = Claim(run_id, claimed.attempts)
    if claim.attempt > 1:  # a first attempt has no older one to fence off
        _fence_data(claim)
    return claim


def _fence_data(claim: Claim) -> None:
    """Tell the data set which attempt now owns the run, so an older attempt's
    commit is refused inside Redis even before this one reaches its own. Best
    effort: with Redis away the commit itself raises the fence (it passes the
    attempt too)."""
    try:
        get_store().fence_run(claim.run_id, claim.attempt)
    except Exception as exc:
        log.warning(
            "run %s: attempt %d not fenced in Redis yet: %s",
            claim.run_id,
            claim.attempt,
            exc,
        )


def _claim_update(
    run_id: str, worker: str | None, now: datetime, stale: datetime, max_attempts: int
) -> Row | None:
    return apply_returning(
        _CLAIM,
        {
            "run": run_id,
            "worker_name": worker,
            "now": now,
            "stale": stale,
            "max_attempts": max_attempts,
        },
    )


# Built once: building the statement cost more than running it (py-spy, a trivial
# run on SQLite).
_CLAIM = (
    update(RUNS)
    .where(COLUMNS.id == bindparam("run"))
    .where(
        or_(
            one_of(COLUMNS.state, ("PENDING", "RETRY")),
            and_(
                one_of(COLUMNS.state, ("STARTED", "PROGRESS")),
                or_(
                    COLUMNS.heartbeat_at.is_(None),
                    COLUMNS.heartbeat_at < bindparam("stale", type_=DateTime()),
                ),
                COLUMNS.attempts < bindparam("max_attempts"),
            ),
        )
    )
    .values(
        state="STARTED",
        started_at=bindparam("now", type_=DateTime()),
        heartbeat_at=bindparam("now", type_=DateTime()),
        attempts=COLUMNS.attempts + 1,
        worker=bindparam("worker_name"),
        dispatched_at=func.coalesce(
            COLUMNS.dispatched_at, bindparam("now", type_=DateTime())
        ),
    )
    .returning(*LOGGED)
)
