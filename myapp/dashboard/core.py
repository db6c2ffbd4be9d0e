"""What the Dash callbacks do, as plain typed functions over the run lifecycle and the
data store. The callbacks parse component values, call one of these, shape output."""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

import plotly.graph_objects as go
from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from myapp import runs, users
from myapp.dashboard import polling
from myapp.extensions import db, get_redis, get_store
from myapp.models import ACTIVE_STATES, Run, isoformat, utcnow
from myapp.tasks import ProgressHook, UnknownTask, ValidationError, get_definition
from myapp.web.security import current_requester

log = logging.getLogger(__name__)

TASK = "generate_data"
# A queued run still PENDING after this long gets an explicit warning (after
# polling.GIVE_UP_MS the page stops polling it).
WAITING_WARN_SECONDS = 10
HISTORY_LIMIT = 200
TASK_RUNS_LIMIT = 50
OUTCOME_COLOURS = {"SUCCESS": "#2e7d32", "FAILURE": "#c62828", "REVOKED": "#757575"}


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


def form_params(rows: Any, seconds: Any) -> dict[str, Any]:
    """The form's raw values as the definition expects text: empty means default."""
    raw: dict[str, Any] = {}
    for name, value in (("rows", rows), ("seconds", seconds)):
        if value is not None:
            raw[name] = str(value)
    return raw


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
        f"({_params_text(new_run.params)})."
    )


def _params_text(params: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (params or {}).items())


# What a page that speaks to people calls each state (the task pages; the main
# page keeps its state names, which its users and tests read).
STATE_WORDS = {
    "PENDING": "Queued",
    "STARTED": "Running",
    "PROGRESS": "Running",
    "RETRY": "Retrying",
    "SUCCESS": "Finished",
    "FAILURE": "Failed",
    "REVOKED": "Cancelled",
}


def describe(run: Run | None, *, mode: Mode | str, plain: bool = False) -> str:
    """One honest line about a run: what it is doing or how it ended. `plain`
    lines start with a word people use ("Running", "Cancelled"), the others with
    the run's state."""
    if run is None:
        head = "Failed" if plain else "FAILURE"
        return f"{head}: the run is not in the history (was it pruned?)."
    head = STATE_WORDS[run.state] if plain else run.state
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
        return f"{head}: {label} is queued."
    if run.state == "RETRY":
        return f"{head}: {label} hit a transient error and will retry."
    progress = ""
    if run.progress_total:
        progress = f": {run.progress_message}"
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


def schedule_line() -> str:
    """The beat interval and when the last scheduled generate_data run finished."""
    every = int(current_app.config["SCHEDULE_SECONDS"])
    last = db.session.scalar(
        select(Run)
        .where(Run.source == "beat", Run.task == TASK, Run.finished_at.is_not(None))
        .order_by(Run.finished_at.desc())
        .limit(1)
    )
    line = f"Scheduled: generate_data every {every} s. "
    if last is None:
        return line + "No scheduled run has finished yet."
    ago = (utcnow() - last.finished_at).total_seconds()
    return (
        line + f"Last scheduled run finished {ago:.0f} s ago "
        f"({isoformat(last.finished_at)}, {last.state})."
    )


# -- the data grid --------------------------------------------------------------------


def grid_block(request: Any, max_block: int = 1000) -> dict:
    """One block for the infinite row model: `getRowsRequest` -> `getRowsResponse`.
    Anything in the request that is not what AG Grid sends counts as absent."""
    request = request if isinstance(request, Mapping) else {}
    start = _bounded_int(request.get("startRow"), 0, 10**9)
    end = _bounded_int(request.get("endRow"), start, start + max_block)
    sort, order = "created_at", "desc"
    sort_model = request.get("sortModel")
    for item in sort_model if isinstance(sort_model, list) else []:
        if not isinstance(item, Mapping):
            continue
        column, direction = item.get("colId"), item.get("sort")
        if column in ("value", "created_at", "id") and direction in ("asc", "desc"):
            # Ids are given in creation order, so sorting by id is sorting by time.
            sort = "value" if column == "value" else "created_at"
            order = direction
            break
    page = get_store().page(offset=start, limit=end - start, sort=sort, order=order)
    return {"rowData": page.rows, "rowCount": page.total}


def _bounded_int(value: Any, low: int, high: int) -> int:
    """A whole number clamped to [low, high]; `low` for anything else (text,
    fractions, Infinity and NaN included)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if type(value) is not int:
        return low
    return max(low, min(high, value))


def data_state() -> tuple[int, int]:
    """(version, total) of the data set: two cheap GETs, no rows."""
    store = get_store()
    return store.version(), store.total()


# -- history --------------------------------------------------------------------------


def user_names() -> list[str]:
    """Everyone who may have started a run: the history page's filter choices."""
    return [user.name for user in users.list_users()]


def history(filters: Mapping[str, str | None]) -> list[Run]:
    """The newest runs matching the page's filters (task, state, source,
    created_by); raises ValidationError for a value that is not one of the
    choices."""
    parsed = runs.RunFilter(**{k: v or None for k, v in filters.items()})
    items, _ = runs.list_runs(parsed, limit=HISTORY_LIMIT)
    return items


def latest_result(task: str) -> Run | None:
    """The newest run of `task` that succeeded: the result its page opens with."""
    items, _ = runs.list_runs(runs.RunFilter(task=task, state="SUCCESS"), limit=1)
    return items[0] if items else None


def task_runs(task: str, limit: int = TASK_RUNS_LIMIT) -> list[Run]:
    """The newest runs of one task, from every source."""
    items, _ = runs.list_runs(runs.RunFilter(task=task), limit=limit)
    return items


def history_rows(items: Sequence[Run]) -> list[dict[str, Any]]:
    rows = []
    for run in items:
        row = run.to_dict()
        rows.append(
            {
                "id": run.id,
                "task": run.task,
                "source": run.source,
                "state": run.state,
                "status": STATE_WORDS[run.state].lower(),
                "params": _params_text(run.params),
                "created_by": run.created_by or "",
                "progress": run.progress_message or "",
                "duration_s": run.duration_s,
                "error": (
                    f"{run.error_type}: {run.error_message}" if run.error_type else ""
                ),
                "created_at": row["created_at"],
                "finished_at": row["finished_at"],
            }
        )
    return rows


def any_active(items: Sequence[Run]) -> bool:
    return any(not run.finished for run in items)


def duration_figure(items: Sequence[Run]) -> go.Figure:
    """Run durations over time, one trace per outcome."""
    figure = go.Figure()
    for state, colour in OUTCOME_COLOURS.items():
        done = [r for r in items if r.state == state and r.duration_s is not None]
        figure.add_trace(
            go.Scatter(
                name=state,
                x=[isoformat(r.finished_at) for r in done],
                y=[r.duration_s for r in done],
                mode="markers",
                marker={"color": colour, "size": 9},
                text=[f"{r.task} ({r.source}) {r.id[:8]}" for r in done],
                hovertemplate="%{text}<br>%{y:.2f} s<extra>" + state + "</extra>",
            )
        )
    figure.update_layout(
        title="Run durations",
        xaxis_title="finished (UTC)",
        yaxis_title="duration (s)",
        margin={"l": 50, "r": 10, "t": 40, "b": 40},
        height=320,
        legend={"orientation": "h", "y": -0.25},
    )
    return figure
