"""Running a run inside the worker: claim it, run the task body, keep the row in step.

A run is claimed by a conditional UPDATE (PENDING/RETRY -> STARTED, or a takeover of
a STARTED run whose heartbeat lease has lapsed), so of two deliveries of one message
only one runs at a time. While the task body runs, a heartbeat keeps that lease,
whether or not the task reports progress. Runs sent by beat or another Celery client
have no row yet: the worker adopts them here, with the source their message names.
A schedule's fire also names its schedule and fire time; the database refuses a
second run of one fire (two beats, a message sent twice), and that message is
dropped without running.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from flask import current_app
from sqlalchemy import and_, func, or_, update
from sqlalchemy.exc import IntegrityError

from myapp.extensions import db
from myapp.models import SOURCES, Run, Schedule, utcnow
from myapp.runs.errors import RunBusy, RunFailed
from myapp.runs.logs import run_log
from myapp.runs.results import ResultNotSerializable, jsonable
from myapp.runs.transitions import (
    apply_logged,
    fail_run,
    finish_run,
    is_transient,
    log_run,
)
from myapp.runs.waiting import notify
from myapp.tasks import (
    ProgressHook,
    RunCancelled,
    RunContext,
    TaskDefinition,
    ValidationError,
)

log = logging.getLogger("myapp.runs")


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
    own exception after recording FAILURE.
    """
    params, problem = _arguments(definition, kwargs, args)
    # The common case is one UPDATE: the row exists and is waiting. Only when the
    # claim misses is the row read (or adopted, for beat and other clients).
    if not _claim(run_id, worker):
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
        if not _claim(run_id, worker):
            db.session.expire_all()
            run = db.session.get(Run, run_id)
            if run is None or run.finished:
                return None if run is None else run.result
            raise RunBusy(run_id)
    if problem is not None:
        fail_run(run_id, "ValidationError", problem)
        raise RunFailed(problem)
    lease = current_app.config["RUN_LEASE_SECONDS"]
    progress = ProgressReporter(run_id, on_progress, beat=lease / 3)
    try:
        with progress, run_log(run_id) as logger:
            result = definition.func(RunContext(run_id, progress, logger), **params)
        # A result JSON cannot hold must end the run now, not make the final
        # UPDATE raise and leave it STARTED for the reaper to run again.
        result = jsonable(result)
    except RunCancelled:
        db.session.rollback()
        raise RunFailed("the run was cancelled") from None
    except SoftTimeLimitExceeded:
        db.session.rollback()
        fail_run(run_id, "TimeLimitExceeded", _over_time(definition))
        raise
    except ResultNotSerializable as exc:
        db.session.rollback()
        fail_run(run_id, "ResultNotSerializable", str(exc))
        raise RunFailed(str(exc)) from None
    except Exception as exc:
        db.session.rollback()
        if not is_transient(exc):
            fail_run(run_id, type(exc).__name__, str(exc) or repr(exc))
        raise
    finish_run(run_id, result, progress.last)
    return result


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


def _claim(run_id: str, worker: str | None) -> bool:
    """PENDING/RETRY -> STARTED, or take over a STARTED run whose lease expired.

    A takeover is refused once the run has been claimed MAX_ATTEMPTS times (a run
    that kills its worker every time is not run forever); the reaper ends it.
    """
    now = utcnow()
    stale = now - timedelta(seconds=current_app.config["RUN_LEASE_SECONDS"])
    max_attempts = current_app.config["MAX_ATTEMPTS"]
    return apply_logged(
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
    )


class ProgressReporter:
    """Writes progress to the run row, and keeps the run's lease, while the task body
    runs (`with reporter:`).

    Reports are written at most every `interval` seconds; one held back is written
    once the interval is up, so a task's last word ("starting", then minutes of
    work) is what the run shows. When the task says nothing, the heartbeat alone is
    written every `beat` seconds: a task need not report to keep its lease (the
    reaper takes a run silent for RUN_LEASE_SECONDS for one whose worker died).
    Those writes come from a thread, which dies with its process, so a killed
    worker still goes quiet.

    Each write finds out about a cancel: once the row is no longer active, the
    task is stopped with RunCancelled (at its next report).
    """

    def __init__(
        self,
        run_id: str,
        hook: ProgressHook | None = None,
        interval: float = 0.2,
        beat: float = 10.0,
    ):
        self.run_id = run_id
        self.hook = hook
        self.interval = interval
        self.beat = beat
        self.last: tuple[int, int, str] | None = None
        # The claim has just written the heartbeat: the first report can wait.
        self._written_at = time.monotonic()
        self._pending = False
        self._cancelled = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._app = current_app._get_current_object()
        self._thread = threading.Thread(
            target=self._keep_up, name=f"progress-{run_id}", daemon=True
        )

    def __enter__(self) -> ProgressReporter:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        # A write held up by the database must not hold the worker: one that lands
        # after the run ended changes nothing (it only touches active runs).
        self._thread.join(timeout=10)

    def __call__(self, current: int, total: int, message: str) -> None:
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
            raise RunCancelled(self.run_id)

    def _write(self) -> bool:
        """The last report (or the heartbeat alone) into the row, under the lock;
        False when the run is no longer active."""
        values: dict[str, Any] = {"heartbeat_at": utcnow()}
        if self.last is not None:
            current, total, message = self.last
            values.update(
                state="PROGRESS",
                progress_current=current,
                progress_total=total,
                progress_message=message[:200],
            )
        result = db.session.execute(
            update(Run)
            .where(Run.id == self.run_id, Run.state.in_(("STARTED", "PROGRESS")))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
        self._written_at = time.monotonic()
        self._pending = False
        if result.rowcount == 0:
            self._cancelled = True
        elif self.last is not None:
            notify(self.run_id)  # a heartbeat alone changes nothing a waiter sees
        return result.rowcount == 1

    def _keep_up(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                quiet = time.monotonic() - self._written_at
                if self._cancelled or not (
                    (self._pending and quiet >= self.interval) or quiet >= self.beat
                ):
                    continue
                # Its own app context: its own session and connection.
                with self._app.app_context():
                    try:
                        self._write()
                    except Exception as exc:  # the database away: try again later
                        db.session.rollback()
                        self._written_at = time.monotonic()
                        log.warning(
                            "run %s: progress not written: %s", self.run_id, exc
                        )


def _jsonable(value: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as sent by another client may hold anything; keep what JSON can."""
    try:
        return json.loads(json.dumps(dict(value), default=str))
    except (TypeError, ValueError):
        return {}
