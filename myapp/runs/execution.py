"""Running a run inside the worker: claim it, run the task body, keep the row in step.

A run is claimed by a conditional UPDATE (PENDING/RETRY -> STARTED, or a takeover of
a STARTED run whose heartbeat lease has lapsed), so of two deliveries of one message
only one runs at a time. While the task body runs, a heartbeat keeps that lease,
whether or not the task reports progress. Runs sent by beat or another Celery client
have no row yet: the worker adopts them here, with the source their message names.
A schedule's fire also names its schedule and fire time; the database refuses a
second run of one fire (two beats, a message sent twice), and that message is
dropped without running.

The claim answers the attempt number it set (`Claim`). A worker cut off for longer
than the lease keeps running while another takes the run over; when it comes back,
every write it makes (progress, heartbeat, log lines, finish or failure, its rows
in the data set) is conditional on that number still being the run's, so it is
refused, and the old attempt stops at its next progress report (RunSuperseded)
without touching the run.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from flask import current_app
from sqlalchemy import (
    DateTime,
    Row,
    Update,
    and_,
    bindparam,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from myapp.extensions import db, get_store
from myapp.models import SOURCES, Run, Schedule, utcnow
from myapp.per_process import PerProcess
from myapp.runs.errors import RunBusy, RunFailed, RunSuperseded
from myapp.runs.logs import run_log
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
    log_run,
    mark_retry,
    one_of,
)
from myapp.runs.waiting import notify
from myapp.store import AttemptSuperseded
from myapp.tasks import (
    ProgressHook,
    RunCancelled,
    RunContext,
    TaskDefinition,
    ValidationError,
)

log = logging.getLogger("myapp.runs")

# How often the ticker looks at running reports: the shortest interval between
# two progress writes of one run.
TICK_SECONDS = 0.2


@dataclass(frozen=True)
class Fire:
    """One fire of a schedule, as its message's headers name it."""

    schedule_id: int
    at: datetime  # naive UTC

    @classmethod
    def from_headers(cls, schedule_id: Any, fire_at: Any) -> Fire | None:
        """The fire named by a message's headers; None when they are absent or not
        what beat writes (then the run is adopted as a plain one)."""
        try:
            moment = datetime.fromisoformat(str(fire_at).replace("Z", "+00:00"))
            number = int(schedule_id)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        return cls(number, moment)


class DuplicateFire(Exception):
    """Another run already stands for this fire of this schedule."""


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
        try:
            run = _get_or_adopt(definition, run_id, kwargs, source, adopt, fire)
        except DuplicateFire:
            log.info(
                "run %s task=%s not run: schedule %s already has a run for its "
                "fire at %s",
                run_id,
                definition.name,
                fire.schedule_id if fire else "?",
                fire.at.isoformat() if fire else "?",
            )
            return None
        if run is None:
            raise RunFailed(f"run {run_id} was never admitted; nothing was run")
        if run.finished:
            return run.result
        claim = _claim(run_id, worker)
        if claim is None:
            db.session.expire_all()
            run = db.session.get(Run, run_id)
            if run is None or run.finished:
                return None if run is None else run.result
            raise RunBusy(run_id)
    if problem is not None:
        fail_run(run_id, "ValidationError", problem, claim)
        raise RunFailed(problem)
    lease = current_app.config["RUN_LEASE_SECONDS"]
    progress = ProgressReporter(run_id, on_progress, beat=lease / 3, claim=claim)
    try:
        with progress, run_log(run_id, claim) as logger:
            context = RunContext(run_id, progress, logger, attempt=claim.attempt)
            result = definition.func(context, **params)
        # A result JSON cannot hold must end the run now, not make the final
        # UPDATE raise and leave it STARTED for the reaper to run again.
        result = jsonable(result)
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
    if not finish_run(run_id, result, progress.last, claim):
        # Refused: taken over (raises), or it ended meanwhile (a cancel that came
        # too late to stop the task keeps the run REVOKED).
        claim.check("finish")
    return result


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


def _get_or_adopt(
    definition: TaskDefinition,
    run_id: str,
    kwargs: Mapping[str, Any],
    source: str,
    adopt: bool,
    fire: Fire | None = None,
) -> Run | None:
    """The run's row; a run sent by beat or another Celery client gets one now. A
    schedule's fire is started as the schedule's creator; DuplicateFire when that
    fire already has its run."""
    run = db.session.get(Run, run_id)
    if run is not None or not adopt:
        return run
    owner = None
    if fire is not None:
        schedule = db.session.get(Schedule, fire.schedule_id)
        owner = schedule.created_by if schedule is not None else None
    run = Run(
        id=run_id,
        task=definition.name,
        params=_jsonable(kwargs),
        source=source if source in SOURCES else "external",
        state="PENDING",
        attempts=0,
        created_at=utcnow(),
        dispatched_at=utcnow(),
        created_by=owner,
        schedule_id=fire.schedule_id if fire else None,
        fire_at=fire.at if fire else None,
    )
    db.session.add(run)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # a duplicate delivery adopted it first
        run = db.session.get(Run, run_id)
        if run is None:  # another message of the same fire did
            raise DuplicateFire(run_id) from None
        return run
    log_run(run)
    return run


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


class ProgressReporter:
    """Writes progress to the run row, and keeps the run's lease, while the task body
    runs (`with reporter:`).

    Reports are written at most every `interval` seconds; one held back is written
    once the interval is up, so a task's last word ("starting", then minutes of
    work) is what the run shows. When the task says nothing, the heartbeat alone is
    written every `beat` seconds: a task need not report to keep its lease (the
    reaper takes a run silent for RUN_LEASE_SECONDS for one whose worker died).
    Those writes come from the process's ticker thread (`_Ticker`), which dies with
    its process, so a killed worker still goes quiet.

    Each write finds out about a cancel: once the row is no longer active, the
    task is stopped with RunCancelled (at its next report). With a `claim`, each
    write is also fenced: once a later attempt owns the run, the task is stopped
    with RunSuperseded and nothing more is written.
    """

    def __init__(
        self,
        run_id: str,
        hook: ProgressHook | None = None,
        interval: float = TICK_SECONDS,
        beat: float = 10.0,
        claim: Claim | None = None,
    ):
        self.run_id = run_id
        self.claim = claim
        self.hook = hook
        self.interval = interval
        self.beat = beat
        self.last: tuple[int, int, str] | None = None
        # The claim has just written the heartbeat: the first report can wait.
        self._written_at = time.monotonic()
        self._pending = False
        self._cancelled = False
        self._closed = False
        self._lock = threading.Lock()
        self._app = current_app._get_current_object()

    def __enter__(self) -> ProgressReporter:
        _ticker.get().reporters.add(self)
        return self

    def __exit__(self, *_: object) -> None:
        _ticker.get().reporters.discard(self)
        # Wait for a write in flight, but not for long: a write held up by the
        # database must not hold the worker, and one that lands after the run
        # ended changes nothing (it only touches active runs).
        if self._lock.acquire(timeout=10):
            self._closed = True
            self._lock.release()
        else:
            self._closed = True

    def __call__(self, current: int, total: int, message: str) -> None:
        if self.claim is not None and self.claim.superseded:
            raise RunSuperseded(self.run_id, self.claim.attempt)
        if self._cancelled:
            raise RunCancelled(self.run_id)
        self.last = (current, total, message)
        if self.hook is not None:
            self.hook(current, total, message)
        with self._lock:
            if time.monotonic() - self._written_at < self.interval:
                self._pending = True  # written when the interval is up
                return
            active = self._write()
        if not active:
            if self.claim is not None:
                self.claim.check("progress")
            raise RunCancelled(self.run_id)

    def _write(self) -> bool:
        """The last report (or the heartbeat alone) into the row, under the lock;
        False when the run is no longer active."""
        # The next heartbeat is due `beat` after this one's time, not after its
        # write returned: on a slow link (each round trip hundreds of ms) the
        # row's heartbeat would otherwise age by beat + the write's duration.
        started = time.monotonic()
        values: dict[str, Any] = {"heartbeat_at": utcnow()}
        if self.last is not None:
            current, total, message = self.last
            values.update(
                state="PROGRESS",
                progress_current=current,
                progress_total=total,
                progress_message=message[:200],
            )
        params = {f"new_{name}": value for name, value in values.items()}
        params["run"] = self.run_id
        if self.claim is not None:
            params["attempt"] = self.claim.attempt
        statement = _progress_statement(tuple(values), self.claim is not None)
        result = db.session.execute(statement, params)
        db.session.commit()
        self._written_at = started
        self._pending = False
        if result.rowcount == 0:
            self._cancelled = True
        elif self.last is not None:
            notify(self.run_id)  # a heartbeat alone changes nothing a waiter sees
        return result.rowcount == 1

    def _due(self) -> bool:
        quiet = time.monotonic() - self._written_at
        superseded = self.claim is not None and self.claim.superseded
        return not (self._closed or self._cancelled or superseded) and (
            (self._pending and quiet >= self.interval) or quiet >= self.beat
        )

    def tick(self) -> None:
        """From the ticker thread: write a held-back report, or the heartbeat."""
        with self._lock:
            if not self._due():
                return
            # Its own app context: its own session and connection.
            with self._app.app_context():
                try:
                    claim = self.claim
                    # Refused and taken over: the task's thread raises
                    # RunSuperseded at its next report.
                    if not self._write() and claim and claim.taken_over():
                        claim.refused("heartbeat")
                except Exception as exc:  # the database away: try again later
                    db.session.rollback()
                    self._written_at = time.monotonic()
                    log.warning("run %s: progress not written: %s", self.run_id, exc)


@functools.cache
def _progress_statement(columns: tuple[str, ...], fenced: bool) -> Update:
    """A progress or heartbeat UPDATE, built once per shape (see `_CLAIM`)."""
    statement = update(RUNS).where(
        COLUMNS.id == bindparam("run"), one_of(COLUMNS.state, ("STARTED", "PROGRESS"))
    )
    if fenced:
        statement = statement.where(COLUMNS.attempts == bindparam("attempt"))
    return statement.values(
        {name: bindparam(f"new_{name}", type_=COLUMNS[name].type) for name in columns}
    )


class _Ticker:
    """One daemon thread per process for every running reporter's held-back reports
    and heartbeats, instead of a thread started (and joined) for each run."""

    def __init__(self) -> None:
        self.reporters: weakref.WeakSet[ProgressReporter] = weakref.WeakSet()
        threading.Thread(target=self._loop, name="run-progress", daemon=True).start()

    def _loop(self) -> None:
        while True:
            time.sleep(TICK_SECONDS)
            for reporter in list(self.reporters):
                reporter.tick()


_ticker = PerProcess(_Ticker)


def _jsonable(value: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as sent by another client may hold anything; keep what JSON can."""
    try:
        return json.loads(json.dumps(dict(value), default=str))
    except (TypeError, ValueError):
        return {}
