"""The run lifecycle: record, dispatch, claim, report, finish, cancel, list.

Every run, whatever started it, goes through these functions, so the run row is the
status of record. State changes are conditional UPDATEs: a duplicate message, a
late progress report or a cancel racing a finish can never move a run backwards.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn

from celery.exceptions import SoftTimeLimitExceeded
from flask import current_app
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from myapp.extensions import db, get_store
from myapp.models import ACTIVE_STATES, FINISHED_STATES, SOURCES, STATES, Run, utcnow
from myapp.registry import TaskDefinition, ValidationError
from myapp.tasks import get_definition

log = logging.getLogger(__name__)

# The columns a transition's log line needs, read back by each UPDATE (RETURNING)
# instead of a second query.
_LOGGED = (
    Run.id,
    Run.task,
    Run.source,
    Run.state,
    Run.attempts,
    Run.started_at,
    Run.finished_at,
)

# Message header that tells the worker who sent a run it has no row for (beat).
SOURCE_HEADER = "myapp_source"

# Publishing must not hold a web request for long when Redis is away: a failed send
# leaves the run PENDING in the outbox and the sweeper sends it later.
PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}

ProgressHook = Callable[[int, int, str], None]


class TooManyActiveRuns(Exception):
    """MAX_ACTIVE_RUNS runs are already PENDING, STARTED or PROGRESS."""


class TooManyActiveRunsOfTask(TooManyActiveRuns):
    """MAX_ACTIVE_RUNS_PER_TASK runs of this task are already active."""

    def __init__(self, task: str, limit: int):
        super().__init__(f"{limit} runs of {task} are already active; try later")
        self.task = task
        self.limit = limit


class RunFinished(Exception):
    """The run has already ended; it cannot be cancelled."""


class RunCancelled(Exception):
    """Raised inside a task when its run was revoked: stop working."""


class RunBusy(Exception):
    """Another delivery of this run holds a live lease: try again after it."""


class RunFailed(Exception):
    """A task's run ended FAILURE for a reason the task states (not a bug)."""


@dataclass(frozen=True)
class RunContext:
    """What a task function gets besides its parameters."""

    run_id: str
    progress: ProgressHook

    def cancelled(self) -> NoReturn:
        """Stop the task: its run was cancelled."""
        raise RunCancelled(self.run_id)


# -- starting ----------------------------------------------------------------


def create_run(
    task: str,
    raw_params: Mapping[str, Any] | None,
    *,
    source: str,
    idempotency_key: str | None = None,
    from_text: bool = False,
) -> tuple[Run, bool]:
    """Validate and commit a PENDING run without sending it; return (run, created).

    With an idempotency key already used, the first run comes back and `created`
    is False. Raises UnknownTask, ValidationError or TooManyActiveRuns.
    """
    definition = get_definition(task)
    params = definition.validate(raw_params, from_text=from_text)
    return _insert_run(definition, params, source, idempotency_key, dispatching=False)


def start_run(
    task: str,
    raw_params: Mapping[str, Any] | None,
    *,
    source: str,
    idempotency_key: str | None = None,
    from_text: bool = False,
) -> tuple[Run, bool]:
    """Record a run, then send its message; the one way every edge starts a task."""
    definition = get_definition(task)
    params = definition.validate(raw_params, from_text=from_text)
    run, created = _insert_run(
        definition, params, source, idempotency_key, dispatching=True
    )
    if created and not send(run.id, definition.name, params, source):
        db.session.execute(
            update(Run).where(Run.id == run.id).values(dispatched_at=None)
        )
        db.session.commit()
    return run, created


def _insert_run(
    definition: TaskDefinition,
    params: dict[str, Any],
    source: str,
    idempotency_key: str | None,
    *,
    dispatching: bool,
) -> tuple[Run, bool]:
    if idempotency_key is not None:
        existing = _by_idempotency_key(idempotency_key)
        if existing is not None:
            return existing, False
    active, active_of_task = _count_active_for(definition.name)
    if active >= current_app.config["MAX_ACTIVE_RUNS"]:
        raise TooManyActiveRuns()
    per_task = current_app.config["MAX_ACTIVE_RUNS_PER_TASK"]
    if active_of_task >= per_task:
        raise TooManyActiveRunsOfTask(definition.name, per_task)
    now = utcnow()
    run = Run(
        id=str(uuid.uuid4()),
        task=definition.name,
        params=params,
        source=source,
        state="PENDING",
        attempts=0,
        idempotency_key=idempotency_key,
        created_at=now,
        # A run about to be sent is marked dispatched in the same commit, saving a
        # second commit per start; a failed send clears the mark (the outbox sweeper
        # then sends it), and a crash in between is resent by the reaper
        # (REDISPATCH_SECONDS: dispatched, still PENDING, no message queued).
        dispatched_at=now if dispatching else None,
    )
    run_id = run.id
    db.session.add(run)
    try:
        db.session.commit()
    except IntegrityError:
        # Two requests with the same key at once: the other one won.
        db.session.rollback()
        existing = _by_idempotency_key(idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return existing, False
    log_transition(run_id, definition.name, source, "PENDING", 0)
    return run, True


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


def send(run_id: str, task: str, params: Mapping[str, Any], source: str) -> bool:
    """Publish a run's message with the run id as task id; False if the broker is
    unreachable (the run stays in the outbox)."""
    celery_app = current_app.extensions["celery"]
    try:
        celery_app.send_task(
            task,
            kwargs=dict(params),
            task_id=run_id,
            headers={SOURCE_HEADER: source},
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


def dispatch_pending() -> int:
    """Send PENDING runs whose message never reached the broker (the outbox)."""
    grace = timedelta(seconds=current_app.config["DISPATCH_GRACE_SECONDS"])
    waiting = db.session.scalars(
        select(Run)
        .where(Run.state == "PENDING", Run.dispatched_at.is_(None))
        .where(Run.created_at < utcnow() - grace)
        .order_by(Run.created_at)
        .limit(500)
    ).all()
    return sum(dispatch(run) for run in waiting)


# -- running (inside the worker) -------------------------------------------------


def execute_run(
    definition: TaskDefinition,
    run_id: str,
    kwargs: Mapping[str, Any],
    *,
    args: Sequence[Any] = (),
    source: str = "external",
    worker: str | None = None,
    on_progress: ProgressHook | None = None,
) -> Any:
    """Run a task body for run `run_id`, keeping its row in step.

    Returns the task's result. A run that has already finished returns its stored
    result without running again (duplicate delivery). Raises RunBusy when another
    delivery of the same run is alive, RunFailed for invalid parameters or a
    cancel, and re-raises the task's own exception after recording FAILURE.
    """
    params, problem = _arguments(definition, kwargs, args)
    # The common case is one UPDATE: the row exists and is waiting. Only when the
    # claim misses is the row read (or adopted, for beat and other clients).
    if not _claim(run_id, worker):
        run = _get_or_adopt(definition, run_id, kwargs, source)
        if run.finished:
            return run.result
        if not _claim(run_id, worker):
            db.session.expire_all()
            run = db.session.get(Run, run_id)
            if run is None or run.finished:
                return None if run is None else run.result
            raise RunBusy(run_id)
    if problem is not None:
        fail_run(run_id, "ValidationError", problem)
        raise RunFailed(problem)
    progress = ProgressReporter(run_id, on_progress)
    try:
        result = definition.func(RunContext(run_id, progress), **params)
    except RunCancelled:
        db.session.rollback()
        raise RunFailed("the run was cancelled") from None
    except SoftTimeLimitExceeded:
        db.session.rollback()
        limit = current_app.extensions["celery"].conf.task_soft_time_limit
        fail_run(run_id, "TimeLimitExceeded", f"the run took longer than {limit} s")
        raise
    except Exception as exc:
        db.session.rollback()
        if not is_transient(exc):
            fail_run(run_id, type(exc).__name__, str(exc) or repr(exc))
        raise
    finish_run(run_id, result, progress.last)
    return result


def _arguments(
    definition: TaskDefinition, kwargs: Mapping[str, Any], args: Sequence[Any]
) -> tuple[dict[str, Any], str | None]:
    """A message's parameters, validated; or what is wrong with them, as the field
    messages say it."""
    try:
        if args:
            raise ValidationError(
                {
                    "args": "positional arguments are not accepted; "
                    "send parameters by name (kwargs)"
                }
            )
        return definition.validate(kwargs), None
    except ValidationError as exc:
        return {}, str(exc)


def _get_or_adopt(
    definition: TaskDefinition, run_id: str, kwargs: Mapping[str, Any], source: str
) -> Run:
    """The run's row; a run sent by beat or another Celery client gets one now."""
    run = db.session.get(Run, run_id)
    if run is not None:
        return run
    run = Run(
        id=run_id,
        task=definition.name,
        params=_jsonable(kwargs),
        source=source if source in SOURCES else "external",
        state="PENDING",
        attempts=0,
        created_at=utcnow(),
        dispatched_at=utcnow(),
    )
    db.session.add(run)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # a duplicate delivery adopted it first
        run = db.session.get(Run, run_id)
        assert run is not None
        return run
    log_run(run)
    return run


def _claim(run_id: str, worker: str | None) -> bool:
    """PENDING/RETRY -> STARTED, or take over a STARTED run whose lease expired.

    A takeover is refused once the run has been claimed MAX_ATTEMPTS times (a run
    that kills its worker every time is not run forever); the reaper ends it.
    """
    now = utcnow()
    stale = now - timedelta(seconds=current_app.config["RUN_LEASE_SECONDS"])
    max_attempts = current_app.config["MAX_ATTEMPTS"]
    result = db.session.execute(
        update(Run)
        .where(Run.id == run_id)
        .where(
            or_(
                Run.state.in_(("PENDING", "RETRY")),
                and_(
                    Run.state.in_(("STARTED", "PROGRESS")),
                    or_(Run.heartbeat_at.is_(None), Run.heartbeat_at < stale),
                    Run.attempts < max_attempts,
                ),
            )
        )
        .values(
            state="STARTED",
            started_at=now,
            heartbeat_at=now,
            attempts=Run.attempts + 1,
            worker=worker,
            dispatched_at=func.coalesce(Run.dispatched_at, now),
        )
        .returning(*_LOGGED)
        .execution_options(synchronize_session=False)
    )
    claimed = result.first()
    db.session.commit()
    if claimed is not None:
        log_transition(*claimed)
    return claimed is not None


class ProgressReporter:
    """Writes progress to the run row at most every `interval` seconds.

    Each write is also the run's heartbeat, and finds out about a cancel: when the
    row is no longer active the task is stopped with RunCancelled.
    """

    def __init__(
        self, run_id: str, hook: ProgressHook | None = None, interval: float = 0.2
    ):
        self.run_id = run_id
        self.hook = hook
        self.interval = interval
        self.last: tuple[int, int, str] | None = None
        # The claim has just written the heartbeat: the first report can wait.
        self._written_at = time.monotonic()

    def __call__(self, current: int, total: int, message: str) -> None:
        self.last = (current, total, message)
        if self.hook is not None:
            self.hook(current, total, message)
        now = time.monotonic()
        # Reports are throttled, the last one included: a cancel that lands after it
        # is caught by the data commit itself (DataStore.cancel_run).
        if now - self._written_at < self.interval:
            return
        self._written_at = now
        result = db.session.execute(
            update(Run)
            .where(Run.id == self.run_id, Run.state.in_(("STARTED", "PROGRESS")))
            .values(
                state="PROGRESS",
                progress_current=current,
                progress_total=total,
                progress_message=message[:200],
                heartbeat_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
        if result.rowcount == 0:
            raise RunCancelled(self.run_id)


def finish_run(run_id: str, result: Any, progress: tuple[int, int, str] | None) -> bool:
    values: dict[str, Any] = {"state": "SUCCESS", "result": result}
    if progress is not None:
        values.update(
            progress_current=progress[0],
            progress_total=progress[1],
            progress_message=progress[2][:200],
        )
    return _end(run_id, values)


def fail_run(run_id: str, error_type: str, message: str) -> bool:
    return _end(
        run_id,
        {
            "state": "FAILURE",
            "error_type": error_type[:100],
            "error_message": message[:2000],
        },
    )


def mark_retry(run_id: str, reason: str) -> None:
    db.session.rollback()
    db.session.execute(
        update(Run)
        .where(Run.id == run_id, Run.state.in_(ACTIVE_STATES))
        .values(state="RETRY", progress_message=reason[:200], heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _end(run_id: str, values: dict[str, Any]) -> bool:
    now = utcnow()
    result = db.session.execute(
        update(Run)
        .where(Run.id == run_id, Run.state.in_(ACTIVE_STATES))
        .values(finished_at=now, heartbeat_at=now, **values)
        .returning(*_LOGGED)
        .execution_options(synchronize_session=False)
    )
    ended = result.first()
    db.session.commit()
    if ended is not None:
        log_transition(*ended)
    return ended is not None


# -- cancelling -----------------------------------------------------------------


def cancel_run(run: Run) -> Run:
    """Mark the run REVOKED and tell the workers; a running task stops at its next
    progress report, a queued message is discarded when it arrives."""
    if run.finished:
        raise RunFinished(run.id)
    try:
        # First, so a commit racing this cancel is refused inside Redis.
        get_store().cancel_run(run.id)
    except Exception as exc:  # Redis away: the row and the progress check still stop it
        log.warning("could not flag %s as cancelled in the data store: %s", run.id, exc)
    if _end(run.id, {"state": "REVOKED"}):
        try:
            current_app.extensions["celery"].control.revoke(run.id)
        except Exception as exc:  # the row already says REVOKED; workers will obey it
            log.warning("revoke broadcast for %s failed: %s", run.id, exc)
    db.session.refresh(run)
    if run.state != "REVOKED" and not run.finished:  # pragma: no cover - defensive
        raise RunFinished(run.id)
    return run


# -- reading ----------------------------------------------------------------------


def get_run(run_id: str) -> Run | None:
    return db.session.get(Run, run_id)


def _count_active_for(task: str) -> tuple[int, int]:
    """Active runs in all and of one task, in one query."""
    row = db.session.execute(
        select(func.count(), func.count().filter(Run.task == task)).where(
            Run.state.in_(ACTIVE_STATES)
        )
    ).one()
    return int(row[0]), int(row[1])


def count_active(task: str | None = None) -> int:
    query = select(func.count()).select_from(Run).where(Run.state.in_(ACTIVE_STATES))
    if task is not None:
        query = query.where(Run.task == task)
    return int(db.session.scalar(query) or 0)


@dataclass(frozen=True)
class RunFilter:
    task: str | None = None
    state: str | None = None
    source: str | None = None


def parse_filter(args: Mapping[str, str], task_names: tuple[str, ...]) -> RunFilter:
    """A RunFilter from query arguments, or ValidationError naming the bad one."""
    errors: dict[str, str] = {}
    allowed = {"task": task_names, "state": STATES, "source": SOURCES}
    values: dict[str, str | None] = {}
    for name, choices in allowed.items():
        value = args.get(name) or None
        if value is not None and value not in choices:
            errors[name] = "must be one of " + ", ".join(choices)
        values[name] = value
    if errors:
        raise ValidationError(errors)
    return RunFilter(**values)


def list_runs(
    filters: RunFilter, *, limit: int, cursor: str | None = None
) -> tuple[list[Run], str | None]:
    """Newest first; returns a page and the cursor of the next page (or None)."""
    query = select(Run).order_by(Run.created_at.desc(), Run.id.desc())
    for column, value in (
        (Run.task, filters.task),
        (Run.state, filters.state),
        (Run.source, filters.source),
    ):
        if value is not None:
            query = query.where(column == value)
    if cursor is not None:
        created, run_id = decode_cursor(cursor)
        query = query.where(
            or_(
                Run.created_at < created,
                and_(Run.created_at == created, Run.id < run_id),
            )
        )
    rows = db.session.scalars(query.limit(limit + 1)).all()
    page = list(rows[:limit])
    next_cursor = encode_cursor(page[-1]) if len(rows) > limit else None
    return page, next_cursor


def encode_cursor(run: Run) -> str:
    raw = json.dumps([run.created_at.isoformat(), run.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, run_id = json.loads(base64.urlsafe_b64decode(padded))
        return datetime.fromisoformat(created), str(run_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ValidationError({"cursor": "is not a cursor this API returned"}) from None


def _by_idempotency_key(key: str) -> Run | None:
    return db.session.scalar(select(Run).where(Run.idempotency_key == key))


def _jsonable(value: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as sent by another client may hold anything; keep what JSON can."""
    try:
        return json.loads(json.dumps(dict(value), default=str))
    except (TypeError, ValueError):
        return {}


def is_transient(exc: BaseException) -> bool:
    """Errors worth a retry: Redis briefly away. Task bugs are not."""
    import redis

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
    """One line per transition: what operators grep for."""
    duration = None
    if started_at is not None and finished_at is not None:
        duration = round((finished_at - started_at).total_seconds(), 3)
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


__all__ = [
    "FINISHED_STATES",
    "RunBusy",
    "RunCancelled",
    "RunContext",
    "RunFailed",
    "RunFinished",
    "TooManyActiveRuns",
    "TooManyActiveRunsOfTask",
    "create_run",
    "dispatch",
    "execute_run",
    "start_run",
]
