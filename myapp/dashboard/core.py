"""Starting and following runs from the Dash pages, as plain typed functions over the
run lifecycle: the callbacks (`run_callbacks`) parse component values, call one of
these, shape output. The data set is `data`, reading the history `history`."""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from myapp import runs
from myapp.dashboard import polling
from myapp.edge import current_requester
from myapp.extensions import db, get_redis
from myapp.models import ACTIVE_STATES, Run, utcnow
from myapp.runs.words import state_word
from myapp.tasks import ProgressHook, UnknownTask, ValidationError, get_definition

log = logging.getLogger(__name__)

TASK = "generate_data"
# A queued run still PENDING after this long gets an explicit warning (after
# polling.GIVE_UP_MS the page stops polling it).
WAITING_WARN_SECONDS = 10


class Mode(StrEnum):
    """How the main page runs generate_data: the values of its mode selector."""

    # A Dash background callback runs the admitted run inside its Celery job.
    BACKGROUND = "background"
    # A regular callback admits and sends the run; the page polls its row.
    QUEUED = "queued"

    @property
    def source(self) -> str:
        """The run's `source` in the history."""
        return f"dash-{self.value}"

    @classmethod
    def parse(cls, value: Any) -> Mode:
        """The selector's value; anything unknown is the default, background."""
        return cls.QUEUED if value == cls.QUEUED.value else cls.BACKGROUND

    @classmethod
    def of(cls, run: Run) -> Mode:
        """The mode a run was started in (a re-run from the history is queued)."""
        return cls.BACKGROUND if run.source == cls.BACKGROUND.source else cls.QUEUED


# -- starting -----------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    """Outcome of a click on run: either parameters/run, or what went wrong."""

    params: dict[str, Any] | None = None
    run: Run | None = None
    field_errors: dict[str, str] = field(default_factory=dict)
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.message is None and not self.field_errors


def start(raw: Mapping[str, Any], *, mode: Mode | str, task: str = TASK) -> Started:
    """Admit a run of `task` exactly as the API does.

    Queued mode sends its Celery message; background mode records the run and hands
    its id to the Dash background job (the job claims that run, and if no job ever
    does, the reaper sends it as a message). Nothing is started while the broker is
    down in background mode: Dash could not send the job.
    """
    mode = Mode(mode)
    try:
        if mode is Mode.BACKGROUND and not broker_reachable():
            return Started(
                message="FAILURE: the broker is unreachable, so no background run "
                "was started. Try again when it is back, or use queued mode."
            )
        run, _ = runs.start_run(
            task,
            raw,
            source=mode.source,
            requester=current_requester(),
            from_text=True,
            send_message=mode is Mode.QUEUED,
        )
    except ValidationError as exc:
        return Started(field_errors=exc.fields)
    except UnknownTask as exc:
        return Started(message=f"Not started: there is no task named {exc}.")
    except (runs.StartRefused, runs.NotAllowed) as exc:
        return Started(message=f"Not started: {exc}.")
    except SQLAlchemyError as exc:
        db.session.rollback()
        return Started(message=database_message(exc))
    return Started(params=run.params, run=run)


def broker_reachable() -> bool:
    """Whether the broker answers now (it is the app's Redis): one cheap PING."""
    try:
        return bool(get_redis().ping())
    except Exception:  # redis raises several types for "not there"
        return False


def database_message(exc: Exception) -> str:
    log.warning("dash: database unreachable: %s", exc)
    return "FAILURE: the run history database is unreachable; nothing was started."


# -- running a background callback's work ----------------------------------------------


def execute_background(
    run_id: str, *, worker: str | None, on_progress: ProgressHook
) -> Run | None:
    """Run the admitted run `run_id` inline in a Dash background job.

    Its parameters come from the row admission wrote, never from the request, and a
    run that was never admitted is not adopted: calling the background callback
    directly cannot get around the limits. A redelivered job finds the same run.
    Every outcome ends in the row; the finished row is returned.
    """
    run = runs.get_run(run_id)
    if run is None or run.source != Mode.BACKGROUND.source:
        return None
    try:
        runs.execute_run(
            get_definition(run.task),
            run_id,
            run.params,
            source=Mode.BACKGROUND.source,
            worker=worker,
            on_progress=on_progress,
            adopt=False,
        )
    except (runs.RunFailed, runs.RunBusy):
        pass  # recorded (FAILURE or REVOKED), or another delivery is running it
    except Exception as exc:
        db.session.rollback()
        if runs.is_transient(exc):
            # A queued task would be retried by Celery; a background job is not, so
            # end the run here rather than leave it STARTED.
            runs.fail_run(run_id, type(exc).__name__, str(exc) or repr(exc))
        else:
            log.warning("background run %s failed: %s", run_id, exc)
    db.session.expire_all()
    return runs.get_run(run_id)


def worker_name() -> str:
    return f"dash@{socket.gethostname()}"


# -- describing runs ------------------------------------------------------------------


def run_in_flight(user: str | None, task: str = TASK) -> Run | None:
    """The user's newest run of `task` started from a Dash page that has not ended
    (nor been given up on): what a reloaded page follows again, in either mode."""
    if user is None:
        return None
    run = db.session.scalar(
        select(Run)
        .where(
            Run.created_by == user,
            Run.task == task,
            Run.source.in_([m.source for m in Mode]),
            Run.state.in_(ACTIVE_STATES),
        )
        .order_by(Run.created_at.desc())
        .limit(1)
    )
    return None if run is None or gave_up_waiting(run) else run


def rerun(run_id: str) -> str:
    """Start the run `run_id` again for the signed-in user (queued: the history
    page follows it in its grid); one line saying what happened."""
    run = runs.get_run(run_id)
    if run is None:
        return "Not started: that run is not in the history (was it pruned?)."
    try:
        new_run, _ = runs.rerun(
            run, source=Mode.QUEUED.source, requester=current_requester()
        )
    except ValidationError as exc:
        fields = "; ".join(f"{k} {v}" for k, v in exc.fields.items())
        return f"Not started: {fields}."
    except (runs.StartRefused, runs.NotAllowed, UnknownTask) as exc:
        return f"Not started: {exc}."
    except SQLAlchemyError as exc:
        db.session.rollback()
        return database_message(exc)
    return (
        f"Started {new_run.task} again as queued run {new_run.id[:8]} "
        f"({params_text(new_run.params)})."
    )


def params_text(params: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (params or {}).items())


def describe(run: Run | None, *, mode: Mode | str, plain: bool = False) -> str:
    """One honest line about a run: what it is doing or how it ended. `plain`
    lines start with a word people use ("Running", "Cancelled"), the others with
    the run's state."""
    if run is None:
        head = "Failed" if plain else "FAILURE"
        return f"{head}: the run is not in the history (was it pruned?)."
    head = state_word(run.state).capitalize() if plain else run.state
    short = run.id[:8]
    label = f"{mode} run {short}" + (f" of {run.task}" if plain else "")
    took = f" in {run.duration_s:.2f} s" if run.duration_s is not None else ""
    if run.state == "SUCCESS":
        if plain:
            took = f" took {run.duration_s:.2f} s" if run.duration_s is not None else ""
            return f"{head}: {label}{took}."
        rows = (run.result or {}).get("rows", 0)
        return f"{head}: {label} appended {rows} rows{took}."
    if run.state == "FAILURE":
        return f"{head}: {label}: {run.error_type}: {run.error_message}"
    if run.state == "REVOKED":
        if plain:
            by = f" by {run.cancelled_by}" if run.cancelled_by else ""
            return f"{head}: {label} was cancelled{by}."
        return f"{head}: {label} was cancelled; nothing was appended."
    if run.state == "PENDING":
        waited = (utcnow() - run.created_at).total_seconds()
        if run.dispatched_at is None:
            return (
                f"{head}: {label} is queued, waiting for the broker "
                f"({waited:.0f} s); it is sent when the broker is back."
            )
        if waited > WAITING_WARN_SECONDS:
            return (
                f"{head}: {label} has waited {waited:.0f} s for a worker. "
                "Is a worker running?"
            )
        if plain:
            return f"{head}: {label} is waiting for a worker."
        return f"{head}: {label} is queued."
    if run.state == "RETRY":
        return f"{head}: {label} hit a transient error and will retry."
    progress = ""
    if run.progress_total:
        progress = f": {run.progress_message}"
    if plain:
        return f"{head}: {label}{progress}."
    return f"{head}: {label} is running{progress}."


def poll_interval_ms(run: Run | None, took_ms: float) -> int:
    """The next poll interval of a queued run's page (see `polling`)."""
    age_ms = 0.0
    if run is not None:
        age_ms = (utcnow() - run.created_at).total_seconds() * 1000
    return polling.run_poll_ms(age_ms, took_ms)


def progress_of(run: Run | None) -> tuple[str, str, str]:
    """(value, max, text) for the progress bar."""
    if run is None or not run.progress_total:
        return "0", "1", ""
    return (
        str(run.progress_current or 0),
        str(run.progress_total),
        run.progress_message or "",
    )


def gave_up_waiting(run: Run) -> bool:
    """A run PENDING this long is left to the history page; the page stops polling."""
    return run.state == "PENDING" and utcnow() - run.created_at > timedelta(
        milliseconds=polling.GIVE_UP_MS
    )
