"""Callbacks of the Dash pages, bound to one Dash app (never `dash.callback`).

Thin edges: each parses component values, calls one function of `core`, shapes the
output. The run row is the status of record in both modes.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import dash
from dash import Input, Output, State, no_update, set_props
from sqlalchemy.exc import SQLAlchemyError

from myapp import runs
from myapp.dashboard import core, ids, layout
from myapp.dashboard.manager import AppCeleryManager
from myapp.extensions import db
from myapp.web.security import current_requester

MAX_POLL_MS = core.MAX_POLL_MS
# The renderer asks a background job for progress/result this often. Dash fixes it
# per callback, so it is a trade: 100 ms makes a short run report at once, at the
# cost of ten small polls a second per page while a long run is in flight.
BACKGROUND_POLL_MS = 100


def register_callbacks(dash_app: dash.Dash, manager: AppCeleryManager) -> None:
    _register_router(dash_app)
    _register_run(dash_app, manager)
    _register_data(dash_app)
    _register_history(dash_app)


def _register_router(dash_app: dash.Dash) -> None:
    @dash_app.callback(Output(ids.PAGE, "children"), Input(ids.URL, "pathname"))
    def route(pathname: str | None):
        if (pathname or "").rstrip("/").endswith("/history"):
            return layout.history_page()
        return layout.main_page()


def _dup(component: str, prop: str) -> Output:
    return Output(component, prop, allow_duplicate=True)


def _register_run(dash_app: dash.Dash, manager: AppCeleryManager) -> None:
    @dash_app.callback(
        Output(ids.ROWS_ERROR, "children"),
        Output(ids.SECONDS_ERROR, "children"),
        _dup(ids.APP_STATUS, "children"),
        Output(ids.BG_REQUEST, "data"),
        _dup(ids.BG_RUN, "data"),
        Output(ids.QUEUED_RUN, "data"),
        _dup(ids.POLL_INTERVAL, "disabled"),
        _dup(ids.RUN_BUTTON, "disabled"),
        _dup(ids.CANCEL_BUTTON, "disabled"),
        _dup(ids.RUN_PROGRESS, "value"),
        _dup(ids.RUN_PROGRESS, "max"),
        _dup(ids.RUN_PROGRESS_TEXT, "children"),
        Input(ids.RUN_BUTTON, "n_clicks"),
        State(ids.ROWS_INPUT, "value"),
        State(ids.SECONDS_INPUT, "value"),
        State(ids.MODE_SELECT, "value"),
        prevent_initial_call=True,
    )
    def submit(n_clicks: int | None, rows: Any, seconds: Any, mode: str | None):
        """Validate with the task's definition; start a queued run, or hand the
        parameters to the background callback. Invalid input starts nothing."""
        raw = core.form_params(rows, seconds)
        mode = "queued" if mode == "queued" else "background"
        started = core.start(raw, mode=mode)
        errors = started.field_errors
        unchanged = [no_update] * 9
        if not started.ok or started.run is None:
            status = started.message or "Not started: check the fields marked above."
            return errors.get("rows", ""), errors.get("seconds", ""), status, *unchanged
        run = started.run
        if mode == "queued":
            return (
                "",
                "",
                core.describe(run, mode="queued"),
                no_update,
                no_update,
                {"id": run.id},
                False,
                True,
                False,
                "0",
                str(run.params["rows"]),
                "queued",
            )
        # The background job gets only the admitted run's id; it reads the
        # parameters from the run row.
        request = {"run_id": run.id, "click": n_clicks}
        return (
            "",
            "",
            "Starting a background run…",
            request,
            run.id,
            *[no_update] * 4,
            "0",
            str(run.params["rows"]),
            "starting",
        )

    @dash_app.callback(
        Output(ids.BG_DONE, "data"),
        Input(ids.BG_REQUEST, "data"),
        background=True,
        manager=manager,
        interval=BACKGROUND_POLL_MS,
        running=[
            (Output(ids.RUN_BUTTON, "disabled"), True, False),
            (Output(ids.CANCEL_BUTTON, "disabled"), False, True),
        ],
        cancel=[Input(ids.CANCEL_BUTTON, "n_clicks")],
        progress=[
            Output(ids.RUN_PROGRESS, "value"),
            Output(ids.RUN_PROGRESS, "max"),
            Output(ids.RUN_PROGRESS_TEXT, "children"),
            Output(ids.BG_RUN, "data"),
        ],
        on_error=_background_error,
        prevent_initial_call=True,
    )
    def run_in_background(set_progress, request: dict[str, Any] | None):
        """Runs in the Celery worker, inside the Flask app context (FlaskTask)."""
        run_id = request.get("run_id") if isinstance(request, dict) else None
        if not isinstance(run_id, str):
            raise dash.exceptions.PreventUpdate
        set_props(ids.APP_STATUS, {"children": f"STARTED: background run {run_id[:8]}"})
        set_progress(("0", "1", "started", run_id))

        def on_progress(current: int, total: int, message: str) -> None:
            set_progress((str(current), str(total), message, run_id))

        run = core.execute_background(
            run_id, worker=core.worker_name(), on_progress=on_progress
        )
        set_props(ids.APP_STATUS, {"children": core.describe(run, mode="background")})
        return None if run is None else run.to_dict()

    @dash_app.callback(
        _dup(ids.RUN_PROGRESS, "value"),
        _dup(ids.RUN_PROGRESS, "max"),
        _dup(ids.RUN_PROGRESS_TEXT, "children"),
        _dup(ids.APP_STATUS, "children"),
        _dup(ids.POLL_INTERVAL, "disabled"),
        Output(ids.POLL_INTERVAL, "interval"),
        _dup(ids.RUN_BUTTON, "disabled"),
        _dup(ids.CANCEL_BUTTON, "disabled"),
        Input(ids.POLL_INTERVAL, "n_intervals"),
        State(ids.QUEUED_RUN, "data"),
        prevent_initial_call=True,
    )
    def poll_queued(_n: int, queued: dict[str, Any] | None):
        """One cheap read of the run row per tick; stops when the run has ended."""
        began = time.monotonic()
        if not queued:
            return *[no_update] * 4, True, no_update, False, True
        try:
            db.session.expire_all()
            run = runs.get_run(queued["id"])
        except SQLAlchemyError:
            db.session.rollback()
            status = "The run history is unreachable; still trying…"
            return no_update, no_update, no_update, status, *[no_update] * 4
        value, maximum, text = core.progress_of(run)
        status = core.describe(run, mode="queued")
        ended = run is None or run.finished or core.gave_up_waiting(run)
        if run is not None and core.gave_up_waiting(run):
            status += " Stopped watching; follow it on the history page."
        took_ms = (time.monotonic() - began) * 1000
        interval = core.poll_interval_ms(run, took_ms)
        return value, maximum, text, status, ended, interval, not ended, ended

    @dash_app.callback(
        _dup(ids.APP_STATUS, "children"),
        Input(ids.CANCEL_BUTTON, "n_clicks"),
        State(ids.BG_RUN, "data"),
        State(ids.QUEUED_RUN, "data"),
        prevent_initial_call=True,
    )
    def cancel(_n: int | None, bg_run: str | None, queued: dict[str, Any] | None):
        """Mark the run in flight REVOKED. The background job is also terminated by
        Dash's `cancel=`; a queued task stops at its next progress report."""
        cancelled = []
        for run_id in (bg_run, (queued or {}).get("id")):
            run = runs.get_run(run_id) if run_id else None
            if run is None or run.finished:
                continue
            try:
                cancelled.append(runs.cancel_run(run, current_requester()))
            except (runs.RunFinished, runs.NotAllowed):
                continue
        if not cancelled:
            return "Cancel requested; the background job is being stopped."
        return core.describe(cancelled[-1], mode=cancelled[-1].source[5:])


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
            return no_update, no_update
        if version == known:
            return no_update, no_update
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


def _register_history(dash_app: dash.Dash) -> None:
    @dash_app.callback(
        Output(ids.HISTORY_GRID, "rowData"),
        Output(ids.HISTORY_CHART, "figure"),
        Output(ids.HISTORY_INTERVAL, "interval"),
        Output(ids.HISTORY_SIG, "data"),
        Input(ids.HISTORY_INTERVAL, "n_intervals"),
        Input(ids.HISTORY_STATE, "value"),
        Input(ids.HISTORY_SOURCE, "value"),
        Input(ids.HISTORY_TASK, "value"),
        State(ids.HISTORY_SIG, "data"),
    )
    def history(
        _n: int | None,
        state: str | None,
        source: str | None,
        task: str | None,
        known: str | None,
    ):
        """Newest first; polled fast while runs are in flight, slowly otherwise.
        Nothing is sent when nothing changed."""
        try:
            items = core.history({"state": state, "source": source, "task": task})
        except SQLAlchemyError:
            db.session.rollback()
            return no_update, no_update, no_update, no_update
        rows = core.history_rows(items)
        interval = layout.HISTORY_POLL_MS if core.any_active(items) else MAX_POLL_MS
        signature = hashlib.sha256(
            json.dumps(rows, sort_keys=True, default=str).encode()
        ).hexdigest()
        if signature == known:
            return no_update, no_update, interval, no_update
        return rows, core.duration_figure(items), interval, signature
