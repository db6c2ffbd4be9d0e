"""Running a run inside the worker: claim it, run the task body, keep the row in step.

A run is claimed by a conditional UPDATE (PENDING/RETRY -> STARTED, or a takeover of
a STARTED run whose heartbeat lease has lapsed), so of two deliveries of one message
only one runs at a time. While the task body runs, a heartbeat keeps that lease,
whether or not the task reports progress. Runs sent by beat or another Celery client
have no row yet: the worker adopts them here, with the source their message names.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from flask import current_app
from sqlalchemy import and_, func, or_, update
from sqlalchemy.exc import IntegrityError

from myapp.extensions import db
from myapp.models import SOURCES, Run, utcnow
from myapp.runs.errors import RunBusy, RunFailed
from myapp.runs.results import ResultNotSerializable, jsonable
from myapp.runs.transitions import (
    apply_logged,
    fail_run,
    finish_run,
    is_transient,
    log_run,
)
from myapp.tasks import (
    ProgressHook,
    RunCancelled,
    RunContext,
    TaskDefinition,
    ValidationError,
)

log = logging.getLogger(__name__)


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
        run = _get_or_adopt(definition, run_id, kwargs, source, adopt)
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
    progress = ProgressReporter(run_id, on_progress)
    lease = current_app.config["RUN_LEASE_SECONDS"]
    try:
        with Heartbeat(run_id, interval=lease / 3):
            result = definition.func(RunContext(run_id, progress), **params)
        # Inside the try: a result JSON cannot hold must end the run now, not make
        # the final UPDATE raise and leave it STARTED for the reaper to run again.
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
) -> Run | None:
    """The run's row; a run sent by beat or another Celery client gets one now."""
    run = db.session.get(Run, run_id)
    if run is not None or not adopt:
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


class Heartbeat:
    """Keeps a run's lease while its task body runs, whatever the body does.

    The reaper takes a STARTED run whose heartbeat is older than RUN_LEASE_SECONDS
    for one whose worker died, and sends it again. Progress reports write the
    heartbeat too, but a task need not report: a team's function may compute for
    minutes in one call. This thread writes it every `interval` seconds until the
    body returns; it dies with its process, so a killed worker still goes quiet.
    """

    def __init__(self, run_id: str, interval: float):
        self.run_id = run_id
        self.interval = interval
        self._app = current_app._get_current_object()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"heartbeat-{run_id}", daemon=True
        )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        # A beat held up by the database must not hold the worker: one that lands
        # after the run ended changes nothing (it only touches active runs).
        self._thread.join(timeout=10)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            # Its own app context: its own session and connection.
            with self._app.app_context():
                try:
                    db.session.execute(
                        update(Run)
                        .where(
                            Run.id == self.run_id,
                            Run.state.in_(("STARTED", "PROGRESS")),
                        )
                        .values(heartbeat_at=utcnow())
                        .execution_options(synchronize_session=False)
                    )
                    db.session.commit()
                except Exception as exc:  # the database away: the next beat retries
                    db.session.rollback()
                    log.warning("run %s: heartbeat not written: %s", self.run_id, exc)


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


def _jsonable(value: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as sent by another client may hold anything; keep what JSON can."""
    try:
        return json.loads(json.dumps(dict(value), default=str))
    except (TypeError, ValueError):
        return {}
