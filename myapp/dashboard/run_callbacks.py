"""Starting and following a run from a Dash page: one set of callbacks for the main
page and every task page.

Both kinds of page carry the same run panel (`run_panel`), so a callback keyed on
`run-button` finds every input, state and output it names on whichever page is
shown (dash-renderer refuses to run a callback with a state or output missing from
the layout, and throws). The task and form come from the `run-page` store and the
parameters from the `run-form` container (see `forms`): no callback exists per
task. What only one kind of page has (the field messages, the result view, the
task's runs) is written with `set_props`, which the renderer skips for ids not in
the layout (with suppress_callback_exceptions, as the app has).
"""

from __future__ import annotations

import time
from typing import Any

import dash
from dash import Input, Output, State, ctx, no_update, set_props
from dash.exceptions import PreventUpdate
from sqlalchemy.exc import SQLAlchemyError

from myapp import runs
from myapp.dashboard import core, forms, history, ids, polling, results
from myapp.dashboard.core import Mode
from myapp.dashboard.manager import AppCeleryManager
from myapp.dashboard.run_panel import page_of, plain_words
from myapp.dashboard.task_page import task_run_rows
from myapp.dashboard.values import clicks, dup, only, ref_run_id, run_id
from myapp.edge import current_requester
from myapp.extensions import db
from myapp.tasks import UnknownTask, get_definition, task_registry


def background_run_id(request: Any) -> str | None:
    """The run id in BG_REQUEST's `{"run_id": …, "click": …}`, or None if the
    value is not such a request."""
    if not isinstance(request, dict) or not request.keys() <= {"run_id", "click"}:
        return None
    return run_id(request.get("run_id"))


# What the background callback's input must be for Dash to start its job.
JOB_INPUTS = {(ids.BG_REQUEST, "data"): lambda v: background_run_id(v) is not None}


# What a click on run may change; each callback below names the part it changes.
SUBMIT_OUTPUTS = {
    "status": dup(ids.APP_STATUS, "children"),
    "bg_request": Output(ids.BG_REQUEST, "data"),
    "bg_run": dup(ids.BG_RUN, "data"),
    "queued_run": Output(ids.QUEUED_RUN, "data"),
    "poll_disabled": dup(ids.POLL_INTERVAL, "disabled"),
    "run_disabled": dup(ids.RUN_BUTTON, "disabled"),
    "cancel_disabled": dup(ids.CANCEL_BUTTON, "disabled"),
    "progress": dup(ids.RUN_PROGRESS, "value"),
    "progress_max": dup(ids.RUN_PROGRESS, "max"),
    "progress_text": dup(ids.RUN_PROGRESS_TEXT, "children"),
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
    "progress": dup(ids.RUN_PROGRESS, "value"),
    "progress_max": dup(ids.RUN_PROGRESS, "max"),
    "progress_text": dup(ids.RUN_PROGRESS_TEXT, "children"),
    "status": dup(ids.APP_STATUS, "children"),
    "poll_disabled": dup(ids.POLL_INTERVAL, "disabled"),
    "poll_interval": Output(ids.POLL_INTERVAL, "interval"),
    "run_disabled": dup(ids.RUN_BUTTON, "disabled"),
    "cancel_disabled": dup(ids.CANCEL_BUTTON, "disabled"),
    "ended": Output(ids.QUEUED_DONE, "data"),
}


def _background_progress(**values: Any) -> list[Any]:
    return [values[name] for name in BACKGROUND_PROGRESS]


def submit_run(page_value: Any, form_tree: Any, mode: Mode) -> core.Started:
    """Read the page's form, then admit a run of its task (`core.start`). Each
    field's message (or none) goes next to its control."""
    page = page_of(page_value)
    if page is None:
        return core.Started(message="Not started: this page names no task.")
    try:
        definition = get_definition(page.task)
    except UnknownTask:
        return core.Started(message=f"Not started: there is no task named {page.task}.")
    fields = forms.fields_of(definition, page.form)
    started = core.start(forms.read_form(form_tree, fields), mode=mode, task=page.task)
    for field in fields:
        message = field.message(started.field_errors.get(field.name, ""))
        set_props(field.error, {"children": message})
    return started


def show_task_runs(task: str) -> None:
    """Put the task's newest runs in its page's list now (a run just started
    there), and keep the list polled fast while it runs."""
    try:
        rows = task_run_rows(history.task_runs(task))
    except SQLAlchemyError:
        db.session.rollback()
        return
    set_props(ids.TASK_RUNS_GRID, {"rowData": rows})
    set_props(ids.TASK_RUNS_INTERVAL, {"interval": polling.HISTORY_POLL_MS})


def refusal(started: core.Started) -> str:
    """The status line of a start that was refused, naming each field."""
    if started.message:
        return started.message
    names = "; ".join(f"{k} {v}" for k, v in started.field_errors.items())
    return f"Not started: {names}."


def register_run_callbacks(dash_app: dash.Dash, manager: AppCeleryManager) -> None:
    """Bind the run panel's callbacks to `dash_app` (the background one runs as a
    job of `manager`): start a run, follow it, cancel it, show how it ended."""
    _register_start(dash_app, manager)
    _register_follow(dash_app)


def _register_start(dash_app: dash.Dash, manager: AppCeleryManager) -> None:
    dash_app.callback(
        output=SUBMIT_OUTPUTS,
        inputs={"n_clicks": Input(ids.RUN_BUTTON, "n_clicks")},
        state={
            "form": State(ids.RUN_FORM, "children"),
            "mode": State(ids.MODE_SELECT, "value"),
            "page": State(ids.RUN_PAGE, "data"),
        },
        prevent_initial_call=True,
    )(submit)

    @dash_app.callback(
        Output(ids.BG_DONE, "data"),
        Input(ids.BG_REQUEST, "data"),
        State(ids.RUN_PAGE, "data"),
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
    def run_in_background(set_progress, request: Any, page: Any):
        # A function of this app's own (not the module's): each app's Celery job
        # calls its own app's callback, never another app's.
        return background_run(set_progress, request, page)


def _register_follow(dash_app: dash.Dash) -> None:
    dash_app.callback(
        output=POLL_OUTPUTS,
        inputs={"_n": Input(ids.POLL_INTERVAL, "n_intervals")},
        state={
            "queued": State(ids.QUEUED_RUN, "data"),
            "page": State(ids.RUN_PAGE, "data"),
        },
        prevent_initial_call=True,
    )(poll_queued)
    dash_app.callback(
        dup(ids.APP_STATUS, "children"),
        Input(ids.CANCEL_BUTTON, "n_clicks"),
        State(ids.BG_RUN, "data"),
        State(ids.QUEUED_RUN, "data"),
        State(ids.RUN_PAGE, "data"),
        prevent_initial_call=True,
    )(cancel)
    dash_app.callback(
        Output(ids.RUN_SHOWN, "data"),
        Input(ids.BG_DONE, "data"),
        Input(ids.QUEUED_DONE, "data"),
        State(ids.RUN_PAGE, "data"),
        prevent_initial_call=True,
    )(show_ended)


# -- the callbacks ------------------------------------------------------------------


def submit(n_clicks: Any, form: Any, mode: Any, page: Any):
    """Validate with the task's definition; start a queued run, or hand the
    admitted run to the background callback. Invalid input starts nothing."""
    mode = Mode.parse(mode)
    started = submit_run(page, form, mode)
    if not started.ok or started.run is None:
        return only(SUBMIT_OUTPUTS, status=refusal(started))
    run = started.run
    if plain_words(page):
        show_task_runs(run.task)
    fresh = {"progress": "0", "progress_max": "1"}
    if mode is Mode.QUEUED:
        return only(
            SUBMIT_OUTPUTS,
            **fresh,
            status=core.describe(run, mode=mode, plain=plain_words(page)),
            queued_run={"id": run.id},
            poll_disabled=False,
            run_disabled=True,
            cancel_disabled=False,
            progress_text="queued",
        )
    # The background job gets only the admitted run's id and reads the
    # parameters from its row; the click count makes each request new, so a
    # second run of the same parameters still starts a job.
    return only(
        SUBMIT_OUTPUTS,
        **fresh,
        status="Starting a background run…",
        bg_request={"run_id": run.id, "click": clicks(n_clicks)},
        bg_run=run.id,
        progress_text="starting",
    )


def background_run(set_progress, request: Any, page: Any):
    """Runs in the Celery worker, inside the Flask app context (FlaskTask)."""
    admitted = background_run_id(request)
    if admitted is None:
        raise PreventUpdate
    head = "Running" if plain_words(page) else "STARTED"
    set_props(ids.APP_STATUS, {"children": f"{head}: background run {admitted[:8]}"})

    def report(current: int, total: int, message: str) -> None:
        set_progress(
            _background_progress(
                progress=str(current),
                progress_max=str(total),
                progress_text=message,
                bg_run=admitted,
            )
        )

    report(0, 1, "started")
    run = core.execute_background(
        admitted, worker=core.worker_name(), on_progress=report
    )
    set_props(
        ids.APP_STATUS,
        {"children": core.describe(run, mode=Mode.BACKGROUND, plain=plain_words(page))},
    )
    return None if run is None else {"id": run.id}


def poll_queued(_n: Any, queued: Any, page: Any):
    """One cheap read of the run row per tick; stops when the run has ended."""
    began = time.monotonic()
    followed = ref_run_id(queued)
    if followed is None:
        return only(
            POLL_OUTPUTS,
            poll_disabled=True,
            run_disabled=False,
            cancel_disabled=True,
        )
    try:
        db.session.expire_all()
        run = runs.get_run(followed)
    except SQLAlchemyError:
        db.session.rollback()
        return only(
            POLL_OUTPUTS,
            status="The run history is unreachable; still trying…",
        )
    value, maximum, text = core.progress_of(run)
    # A page reloaded while a background run was in flight follows it here too.
    mode = Mode.QUEUED if run is None else Mode.of(run)
    status = core.describe(run, mode=mode, plain=plain_words(page))
    gave_up = run is not None and core.gave_up_waiting(run)
    if gave_up:
        status += " Stopped watching; follow it on the history page."
    ended = run is None or run.finished or gave_up
    took_ms = (time.monotonic() - began) * 1000
    return only(
        POLL_OUTPUTS,
        progress=value,
        progress_max=maximum,
        progress_text=text,
        status=status,
        poll_disabled=ended,
        poll_interval=core.poll_interval_ms(run, took_ms),
        run_disabled=not ended,
        cancel_disabled=ended,
        ended={"id": followed} if run is not None and run.finished else no_update,
    )


def cancel(_n: Any, bg_run: Any, queued: Any, page: Any):
    """Mark the run in flight REVOKED. The background job is also terminated by
    Dash's `cancel=`; a queued task stops at its next progress report."""
    cancelled = None
    for candidate in (run_id(bg_run), ref_run_id(queued)):
        run = runs.get_run(candidate) if candidate else None
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
    return core.describe(cancelled, mode=Mode.of(cancelled), plain=plain_words(page))


def show_ended(bg_done: Any, queued_done: Any, page_value: Any):
    """A run of this page has ended, in either mode: a task page shows its
    result and the run in its list of runs (the main page has neither)."""
    page = page_of(page_value)
    ended = bg_done if ctx.triggered_id == ids.BG_DONE else queued_done
    ended_id = ref_run_id(ended)
    if page is None or not page.plain or ended_id is None:
        raise PreventUpdate
    if page.task not in task_registry():
        raise PreventUpdate
    try:
        db.session.expire_all()
        run = runs.get_run(ended_id)
        rows = task_run_rows(history.task_runs(page.task))
    except SQLAlchemyError:
        db.session.rollback()
        raise PreventUpdate from None
    # A background job started on another page ends while this one is shown
    # (pages share the panel's ids): its result is not this task's.
    if run is None or not run.finished or run.task != page.task:
        raise PreventUpdate
    set_props(ids.RESULT_VIEW, {"children": results.ended_view(run)})
    set_props(ids.TASK_RUNS_GRID, {"rowData": rows})
    return {"id": run.id}


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
