"""Callbacks of the Dash pages, bound to one Dash app (never `dash.callback`).

Thin edges: each parses component values, calls one function of `core`, shapes the
output. The run row is the status of record in both modes.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping
from typing import Any

import dash
from dash import Input, Output, State, no_update, set_props
from dash.exceptions import PreventUpdate
from sqlalchemy.exc import SQLAlchemyError

from myapp import runs
from myapp.dashboard import core, ids, layout, polling
from myapp.dashboard.manager import AppCeleryManager
from myapp.extensions import db
from myapp.tasks import ValidationError, task_registry
from myapp.web.security import current_requester


def register_callbacks(dash_app: dash.Dash, manager: AppCeleryManager) -> None:
    _register_router(dash_app)
    _register_run(dash_app, manager)
    _register_data(dash_app)
    _register_history(dash_app)


def _register_router(dash_app: dash.Dash) -> None:
    @dash_app.callback(Output(ids.PAGE, "children"), Input(ids.URL, "pathname"))
    def route(pathname: Any):
        """Each page as the signed-in user sees it: the history's filter names the
        users; the main page follows the user's run in flight, so a reload (or a
        visit to the history and back) keeps following it."""
        try:
            if _text(pathname).rstrip("/").endswith("/history"):
                return layout.history_page(
                    tuple(core.user_names()), tuple(task_registry())
                )
            following = core.run_in_flight(current_requester().name)
        except SQLAlchemyError:
            db.session.rollback()
            following = None  # the page still works; the poll says the rest
        return layout.main_page(following)


# Every callback below can be sent any JSON for any of its inputs (the endpoint is
# public): each value is checked for its type before use, and a value of the wrong
# type counts as absent.


_RUN_ID = re.compile(r"[0-9A-Za-z-]{1,64}")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _run_id(value: Any) -> str | None:
    """A run id as this app issues them, or None for anything else."""
    if isinstance(value, str) and _RUN_ID.fullmatch(value):
        return value
    return None


def _queued_run_id(queued: Any) -> str | None:
    """The run id in QUEUED_RUN's `{"id": …}`, or None for anything else."""
    return _run_id(queued.get("id")) if isinstance(queued, dict) else None


def background_run_id(request: Any) -> str | None:
    """The run id in BG_REQUEST's `{"run_id": …, "click": …}`, or None if the
    value is not such a request."""
    if not isinstance(request, dict) or not request.keys() <= {"run_id", "click"}:
        return None
    return _run_id(request.get("run_id"))


# What the background callback's input must be for Dash to start its job.
JOB_INPUTS = {(ids.BG_REQUEST, "data"): lambda v: background_run_id(v) is not None}


def _clicks(n_clicks: Any) -> int | None:
    return n_clicks if type(n_clicks) is int else None


def _dup(component: str, prop: str) -> Output:
    return Output(component, prop, allow_duplicate=True)


def _only(outputs: Mapping[str, Output], **changed: Any) -> dict[str, Any]:
    """The value of a dict-output callback that changes only the outputs named."""
    unknown = changed.keys() - outputs.keys()
    if unknown:
        raise KeyError(f"not outputs of this callback: {sorted(unknown)}")
    return {name: changed.get(name, no_update) for name in outputs}


# What a click on run may change; each callback below names the part it changes.
SUBMIT_OUTPUTS = {
    "rows_error": Output(ids.ROWS_ERROR, "children"),
    "seconds_error": Output(ids.SECONDS_ERROR, "children"),
    "status": _dup(ids.APP_STATUS, "children"),
    "bg_request": Output(ids.BG_REQUEST, "data"),
    "bg_run": _dup(ids.BG_RUN, "data"),
    "queued_run": Output(ids.QUEUED_RUN, "data"),
    "poll_disabled": _dup(ids.POLL_INTERVAL, "disabled"),
    "run_disabled": _dup(ids.RUN_BUTTON, "disabled"),
    "cancel_disabled": _dup(ids.CANCEL_BUTTON, "disabled"),
    "progress": _dup(ids.RUN_PROGRESS, "value"),
    "progress_max": _dup(ids.RUN_PROGRESS, "max"),
    "progress_text": _dup(ids.RUN_PROGRESS_TEXT, "children"),
}

# A background job reports through `set_progress`, which Dash takes as a list in
# the order of `progress=`: `_background_progress` builds it from names.
BACKGROUND_PROGRESS = {
    "progress": Output(ids.RUN_PROGRESS, "value"),
    "progress_max": Output(ids.RUN_PROGRESS, "max"),
    "progress_text": Output(ids.RUN_PROGRESS_TEXT, "children"),
    "bg_run": Output(ids.BG_RUN, "data"),
}

POLL_OUTPUTS = {
    "progress": _dup(ids.RUN_PROGRESS, "value"),
    "progress_max": _dup(ids.RUN_PROGRESS, "max"),
    "progress_text": _dup(ids.RUN_PROGRESS_TEXT, "children"),
    "status": _dup(ids.APP_STATUS, "children"),
    "poll_disabled": _dup(ids.POLL_INTERVAL, "disabled"),
    "poll_interval": Output(ids.POLL_INTERVAL, "interval"),
    "run_disabled": _dup(ids.RUN_BUTTON, "disabled"),
    "cancel_disabled": _dup(ids.CANCEL_BUTTON, "disabled"),
}


def _background_progress(**values: Any) -> list[Any]:
    return [values[name] for name in BACKGROUND_PROGRESS]


def _register_run(dash_app: dash.Dash, manager: AppCeleryManager) -> None:
    @dash_app.callback(
        output=SUBMIT_OUTPUTS,
        inputs={"n_clicks": Input(ids.RUN_BUTTON, "n_clicks")},
        state={
            "rows": State(ids.ROWS_INPUT, "value"),
            "seconds": State(ids.SECONDS_INPUT, "value"),
            "mode": State(ids.MODE_SELECT, "value"),
        },
        prevent_initial_call=True,
    )
    def submit(n_clicks: Any, rows: Any, seconds: Any, mode: Any):
        """Validate with the task's definition; start a queued run, or hand the
        admitted run to the background callback. Invalid input starts nothing."""
        mode = core.Mode.parse(mode)
        started = core.start(core.form_params(rows, seconds), mode=mode)
        if not started.ok or started.run is None:
            errors = started.field_errors
            return _only(
                SUBMIT_OUTPUTS,
                rows_error=errors.get("rows", ""),
                seconds_error=errors.get("seconds", ""),
                status=started.message or "Not started: check the fields marked above.",
            )
        run = started.run
        fresh = {
            "rows_error": "",
            "seconds_error": "",
            "progress": "0",
            "progress_max": str(run.params["rows"]),
        }
        if mode is core.Mode.QUEUED:
            return _only(
                SUBMIT_OUTPUTS,
                **fresh,
                status=core.describe(run, mode=mode),
                queued_run={"id": run.id},
                poll_disabled=False,
                run_disabled=True,
                cancel_disabled=False,
                progress_text="queued",
            )
        # The background job gets only the admitted run's id and reads the
        # parameters from its row; the click count makes each request new, so a
        # second run of the same parameters still starts a job.
        return _only(
            SUBMIT_OUTPUTS,
            **fresh,
            status="Starting a background run…",
            bg_request={"run_id": run.id, "click": _clicks(n_clicks)},
            bg_run=run.id,
            progress_text="starting",
        )

    @dash_app.callback(
        Output(ids.BG_DONE, "data"),
        Input(ids.BG_REQUEST, "data"),
        background=True,
        manager=manager,
        # The fast interval a young job gets; assets/run_poll.js holds the polls of
        # older jobs back (Dash cannot change the interval per job).
        interval=polling.RUN_POLL_MS,
        running=[
            (Output(ids.RUN_BUTTON, "disabled"), True, False),
            (Output(ids.CANCEL_BUTTON, "disabled"), False, True),
        ],
        cancel=[Input(ids.CANCEL_BUTTON, "n_clicks")],
        progress=list(BACKGROUND_PROGRESS.values()),
        on_error=_background_error,
        prevent_initial_call=True,
    )
    def run_in_background(set_progress, request: Any):
        """Runs in the Celery worker, inside the Flask app context (FlaskTask)."""
        run_id = background_run_id(request)
        if run_id is None:
            raise PreventUpdate
        set_props(ids.APP_STATUS, {"children": f"STARTED: background run {run_id[:8]}"})

        def report(current: int, total: int, message: str) -> None:
            set_progress(
                _background_progress(
                    progress=str(current),
                    progress_max=str(total),
                    progress_text=message,
                    bg_run=run_id,
                )
            )

        report(0, 1, "started")
        run = core.execute_background(
            run_id, worker=core.worker_name(), on_progress=report
        )
        set_props(
            ids.APP_STATUS,
            {"children": core.describe(run, mode=core.Mode.BACKGROUND)},
        )
        return None if run is None else run.to_dict()

    @dash_app.callback(
        output=POLL_OUTPUTS,
        inputs={"_n": Input(ids.POLL_INTERVAL, "n_intervals")},
        state={"queued": State(ids.QUEUED_RUN, "data")},
        prevent_initial_call=True,
    )
    def poll_queued(_n: Any, queued: Any):
        """One cheap read of the run row per tick; stops when the run has ended."""
        began = time.monotonic()
        run_id = _queued_run_id(queued)
        if run_id is None:
            return _only(
                POLL_OUTPUTS,
                poll_disabled=True,
                run_disabled=False,
                cancel_disabled=True,
            )
        try:
            db.session.expire_all()
            run = runs.get_run(run_id)
        except SQLAlchemyError:
            db.session.rollback()
            return _only(
                POLL_OUTPUTS,
                status="The run history is unreachable; still trying…",
            )
        value, maximum, text = core.progress_of(run)
        # A page reloaded while a background run was in flight follows it here too.
        mode = core.Mode.QUEUED if run is None else core.Mode.of(run)
        status = core.describe(run, mode=mode)
        gave_up = run is not None and core.gave_up_waiting(run)
        if gave_up:
            status += " Stopped watching; follow it on the history page."
        ended = run is None or run.finished or gave_up
        took_ms = (time.monotonic() - began) * 1000
        return _only(
            POLL_OUTPUTS,
            progress=value,
            progress_max=maximum,
            progress_text=text,
            status=status,
            poll_disabled=ended,
            poll_interval=core.poll_interval_ms(run, took_ms),
            run_disabled=not ended,
            cancel_disabled=ended,
        )

    @dash_app.callback(
        _dup(ids.APP_STATUS, "children"),
        Input(ids.CANCEL_BUTTON, "n_clicks"),
        State(ids.BG_RUN, "data"),
        State(ids.QUEUED_RUN, "data"),
        prevent_initial_call=True,
    )
    def cancel(_n: Any, bg_run: Any, queued: Any):
        """Mark the run in flight REVOKED. The background job is also terminated by
        Dash's `cancel=`; a queued task stops at its next progress report."""
        cancelled = None
        for run_id in (_run_id(bg_run), _queued_run_id(queued)):
            run = runs.get_run(run_id) if run_id else None
            if run is None or run.finished:
                continue
            try:
                cancelled = runs.cancel_run(run, current_requester())
            except runs.RunFinished:
                continue
            except runs.NotAllowed as exc:
                return f"Not cancelled: {exc}."
        if cancelled is None:
            return "Cancel requested; the background job is being stopped."
        # The run's own mode: a reloaded page follows a background run as a row.
        return core.describe(cancelled, mode=core.Mode.of(cancelled))


def _background_error(exc: Exception) -> Any:
    """A background job that failed outside the run (e.g. the broker went away while
    sending it): say so, without a stack trace, and keep the page usable."""
    set_props(
        ids.APP_STATUS,
        {
            "children": "FAILURE: the background job could not run "
            f"({type(exc).__name__}). Is the broker up? See the run history."
        },
    )
    return no_update


def _register_data(dash_app: dash.Dash) -> None:
    @dash_app.callback(
        Output(ids.DATA_GRID, "getRowsResponse"),
        Input(ids.DATA_GRID, "getRowsRequest"),
        prevent_initial_call=True,
    )
    def grid_rows(request: dict[str, Any] | None):
        """Only the requested block crosses the wire, sorted by the store."""
        return core.grid_block(request)

    @dash_app.callback(
        Output(ids.DATA_VERSION, "data"),
        Output(ids.DATA_TOTAL, "children"),
        Input(ids.DATA_INTERVAL, "n_intervals"),
        Input(ids.BG_DONE, "data"),
        State(ids.DATA_VERSION, "data"),
    )
    def watch_data(_n: int | None, _done: Any, known: int | None):
        """Asks the store's change counter; rows are refetched only when it moved."""
        try:
            version, total = core.data_state()
        except Exception:  # Redis away: keep what the page shows
            raise PreventUpdate from None
        if version == known:
            raise PreventUpdate
        return version, f"{total:,}"

    # Refresh the visible blocks in the browser when the counter moves; the grid then
    # asks `grid_rows` again for what is on screen, keeping rows shown meanwhile. A
    # grid that holds no rows has no blocks to refresh, so it is purged instead.
    dash_app.clientside_callback(
        """
        function(version, refreshed) {
            if (version === undefined || version === null) {
                return window.dash_clientside.no_update;
            }
            if (refreshed !== undefined && refreshed !== null) {
                dash_ag_grid.getApiAsync(GRID_ID).then((api) => {
                    if (api.getInfiniteRowCount()) {
                        api.refreshInfiniteCache();
                    } else {
                        api.purgeInfiniteCache();
                    }
                });
            }
            return version;
        }
        """.replace("GRID_ID", repr(ids.DATA_GRID)),
        Output(ids.GRID_REFRESHED, "data"),
        Input(ids.DATA_VERSION, "data"),
        State(ids.GRID_REFRESHED, "data"),
    )

    @dash_app.callback(
        Output(ids.SCHEDULE_INFO, "children"),
        Input(ids.SCHEDULE_INTERVAL, "n_intervals"),
    )
    def schedule_info(_n: int | None):
        try:
            return core.schedule_line()
        except SQLAlchemyError:
            db.session.rollback()
            return "Schedule: the run history is unreachable."


HISTORY_OUTPUTS = {
    "rows": Output(ids.HISTORY_GRID, "rowData"),
    "figure": Output(ids.HISTORY_CHART, "figure"),
    "interval": Output(ids.HISTORY_INTERVAL, "interval"),
    "signature": Output(ids.HISTORY_SIG, "data"),
}


def _register_history(dash_app: dash.Dash) -> None:
    @dash_app.callback(
        output=HISTORY_OUTPUTS,
        inputs={
            "_n": Input(ids.HISTORY_INTERVAL, "n_intervals"),
            "state": Input(ids.HISTORY_STATE, "value"),
            "source": Input(ids.HISTORY_SOURCE, "value"),
            "task": Input(ids.HISTORY_TASK, "value"),
            "created_by": Input(ids.HISTORY_CREATED_BY, "value"),
        },
        state={"known": State(ids.HISTORY_SIG, "data")},
    )
    def history(
        _n: Any, state: Any, source: Any, task: Any, created_by: Any, known: Any
    ):
        """Newest first; polled fast while runs are in flight, slowly otherwise.
        Nothing is sent when nothing changed."""
        filters = {
            "state": state,
            "source": source,
            "task": task,
            "created_by": created_by,
        }
        try:
            items = core.history(filters)
        except ValidationError:
            raise PreventUpdate from None  # not one of the dropdown's choices
        except SQLAlchemyError:
            db.session.rollback()
            raise PreventUpdate from None
        rows = core.history_rows(items)
        interval = polling.history_poll_ms(core.any_active(items))
        signature = hashlib.sha256(
            json.dumps(rows, sort_keys=True, default=str).encode()
        ).hexdigest()
        if signature == known:
            return _only(HISTORY_OUTPUTS, interval=interval)
        return _only(
            HISTORY_OUTPUTS,
            rows=rows,
            figure=core.duration_figure(items),
            interval=interval,
            signature=signature,
        )

    @dash_app.callback(
        Output(ids.HISTORY_RERUN, "disabled"),
        Input(ids.HISTORY_GRID, "selectedRows"),
    )
    def select_run(selected: Any):
        """Run again is offered once a run is selected."""
        return _selected_run_id(selected) is None

    @dash_app.callback(
        Output(ids.HISTORY_STATUS, "children"),
        Input(ids.HISTORY_RERUN, "n_clicks"),
        State(ids.HISTORY_GRID, "selectedRows"),
        prevent_initial_call=True,
    )
    def run_again(_n: Any, selected: Any):
        """Start the selected run again, through the same admission as any start
        (the signed-in user's role and limits)."""
        run_id = _selected_run_id(selected)
        if run_id is None:
            return "Select a run to start it again."
        return core.rerun(run_id)


def _selected_run_id(selected: Any) -> str | None:
    """The id of the one row selected in the history grid (a list of row dicts)."""
    if not isinstance(selected, list) or len(selected) != 1:
        return None
    row = selected[0]
    return _run_id(row.get("id")) if isinstance(row, dict) else None
