"""`/dash/tasks` (every task of the app's registry) and `/dash/tasks/<name>` (a page
per task, generated from its declaration).

A task page is a function of the task's definition and of who is looking: the
generated form (`forms`), the run panel shared with the main page (`run_panel`,
whose callbacks start and follow runs of any task), the result view (`results`)
and the task's recent runs. Nothing here knows any particular task.
"""

from __future__ import annotations

from typing import Any

import dash
import dash_ag_grid as dag
from dash import Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate
from sqlalchemy.exc import SQLAlchemyError

from myapp import runs, schedules
from myapp.dashboard import forms, history, ids, polling, results, run_panel
from myapp.dashboard.values import only
from myapp.extensions import db
from myapp.models import Run
from myapp.runs import Requester
from myapp.tasks import TaskDefinition, TaskRegistry

TASKS_PATH = "/dash/tasks"

TASK_RUN_COLUMNS = [
    # A link to the run's own page (/runs/<id>).
    {"field": "run", "cellRenderer": "markdown", "minWidth": 100},
    {"field": "created_at", "headerName": "created (UTC)", "minWidth": 210},
    {
        "field": "status",
        "cellClass": {"function": "'st-' + params.data.state"},
        "minWidth": 100,
    },
    {"field": "source", "minWidth": 140},
    {"field": "created_by", "headerName": "by", "minWidth": 90},
    {"field": "params", "minWidth": 200},
    {
        "field": "duration_s",
        "headerName": "duration (s)",
        "type": "numericColumn",
        "minWidth": 120,
    },
    {"field": "error", "minWidth": 220},
]


# -- pages ------------------------------------------------------------------------


def tasks_page(registry: TaskRegistry, requester: Requester) -> html.Div:
    """Every task: its name (a link to its page), what it does, the role it needs."""
    rows = [
        html.Tr(
            [
                html.Td(dcc.Link(d.name, href=f"{TASKS_PATH}/{d.name}")),
                html.Td(d.description),
                html.Td(", ".join(f.name for f in d.fields) or "none"),
                html.Td(d.role.value),
                html.Td(
                    "yes" if runs.may_start(requester, d) else "no",
                    className="muted" if not runs.may_start(requester, d) else "",
                ),
            ]
        )
        for d in registry.values()
    ]
    return html.Div(
        className="page",
        children=[
            html.H1("Tasks"),
            html.P(
                "Every task this app can run. Open one to start it with your "
                "parameters, follow it and see its result.",
                className="muted",
            ),
            html.Section(
                className="card",
                children=html.Table(
                    id=ids.TASK_LIST,
                    className="task-list",
                    children=[
                        html.Thead(
                            html.Tr(
                                [
                                    html.Th("task"),
                                    html.Th("what it does"),
                                    html.Th("parameters"),
                                    html.Th("lowest role that may start it"),
                                    html.Th("you may start it"),
                                ]
                            )
                        ),
                        html.Tbody(rows),
                    ],
                ),
            ),
        ],
    )


def task_page(
    definition: TaskDefinition,
    requester: Requester,
    following: Run | None,
    latest: Run | None = None,
) -> html.Div:
    """The page of one task, as `requester` sees it: a user who may not start it
    sees the form with its controls disabled, and why. `latest` is the task's
    newest successful run, whose result the page opens with."""
    page = run_panel.Page(definition.name, forms.TASK_FORM)
    return html.Div(
        className="page",
        children=[
            html.P(dcc.Link("← all tasks", href=TASKS_PATH), className="muted"),
            html.H1(definition.name),
            html.P(definition.description, className="lead"),
            _start_section(definition, requester, following),
            html.Section(
                className="card",
                children=[
                    html.H2("Result"),
                    html.Div(
                        id=ids.RESULT_VIEW,
                        children=results.waiting_view()
                        if latest is None
                        else results.ended_view(latest, latest=True),
                    ),
                ],
            ),
            _task_runs_section(),
            html.Section(
                className="card",
                children=[
                    html.H2("Schedules"),
                    html.Div(
                        id=ids.TASK_SCHEDULES,
                        children=schedules_view(definition.name),
                    ),
                ],
            ),
            *run_panel.stores(page, following),
            dcc.Store(id=ids.TASK_RUNS_SIG),
            dcc.Interval(id=ids.TASK_RUNS_INTERVAL, interval=polling.HISTORY_POLL_MS),
        ],
    )


def _start_section(
    definition: TaskDefinition, requester: Requester, following: Run | None
) -> html.Section:
    """The generated form, the run panel's buttons and progress; disabled, with
    the reason, for a user who may not start the task."""
    allowed = runs.may_start(requester, definition)
    reason = None
    if not allowed:
        reason = html.P(
            id=ids.START_REASON,
            className="notice",
            role="note",
            children=start_refusal(requester, definition),
        )
    return html.Section(
        className="card",
        children=[
            reason,
            html.Div(
                className="form",
                children=[
                    html.Div(
                        id=ids.RUN_FORM,
                        className="task-fields",
                        children=forms.form_controls(definition, disabled=not allowed),
                    ),
                ],
            ),
            html.Div(
                className="form run-row",
                children=run_panel.mode_and_buttons(following, may_start=allowed),
            ),
            run_panel.progress_block(following, plain=True),
        ],
    )


def _task_runs_section() -> html.Section:
    return html.Section(
        className="card",
        children=[
            html.H2("Recent runs of this task"),
            html.P(
                "From every source, newest first; open one for its page.",
                className="muted",
            ),
            task_runs_grid(),
        ],
    )


def schedules_view(task: str) -> list[Any]:
    """This task's schedules, each with when it fires and its next fire time (or
    why it is paused); edited on the /schedules pages."""
    found = [schedules.schedule_json(s) for s in schedules.list_schedules(task)]
    link = html.A("Schedules page", href="/schedules")
    if not found:
        return [
            html.P(
                ["Nothing starts this task on a schedule. ", link], className="muted"
            )
        ]
    items = []
    for data in found:
        if data["enabled"]:
            state = (
                f"next: {data['next_runs'][0][:16].replace('T', ' ')} UTC"
                if data["next_runs"]
                else "no next fire"
            )
        else:
            state = (
                f"paused ({data['paused_reason']})"
                if data["paused_reason"]
                else "paused"
            )
        items.append(
            html.Li(
                [
                    html.A(data["name"], href=f"/schedules/{data['id']}"),
                    f" — {data['describe']}; {state}",
                ]
            )
        )
    return [
        html.Ul(items),
        html.P(["Add or change them on the ", link, "."], className="muted"),
    ]


def start_refusal(requester: Requester, definition: TaskDefinition) -> str:
    """Why `requester` may not start the task, in a sentence."""
    who = (
        f"You are signed in as {requester.name} ({requester.role})"
        if requester.role is not None
        else "You are not signed in"
    )
    return (
        f"{who}: starting {definition.name} needs the {definition.role} role, so "
        "its controls are disabled. You can still follow its runs below."
    )


def task_runs_grid() -> dag.AgGrid:
    return dag.AgGrid(
        id=ids.TASK_RUNS_GRID,
        columnDefs=TASK_RUN_COLUMNS,
        rowData=[],
        getRowId="params.data.id",
        # Columns share the width; the grid scrolls sideways on a narrow screen.
        defaultColDef={"resizable": True, "sortable": True, "flex": 1},
        dashGridOptions={"animateRows": False},
        style={"height": "320px", "width": "100%"},
        className="ag-theme-alpine",
    )


def not_found(message: str) -> html.Div:
    """What an unknown Dash path or task shows, with the way back."""
    return html.Div(
        className="page",
        children=[
            html.H1("Not found"),
            html.P(message, id="not-found", role="alert"),
            html.P(
                [
                    dcc.Link("All tasks", href=TASKS_PATH),
                    " · ",
                    dcc.Link("Generate data", href="/dash/"),
                    " · ",
                    dcc.Link("Run history", href="/dash/history"),
                ]
            ),
        ],
    )


def task_run_rows(items: list[Run]) -> list[dict[str, Any]]:
    rows = history.history_rows(items)
    for row in rows:
        row["run"] = f"[{row['id'][:8]}](/runs/{row['id']})"
    return rows


# -- callbacks --------------------------------------------------------------------

TASK_RUNS_OUTPUTS = {
    "rows": Output(ids.TASK_RUNS_GRID, "rowData"),
    "interval": Output(ids.TASK_RUNS_INTERVAL, "interval"),
    "signature": Output(ids.TASK_RUNS_SIG, "data"),
}


def register_task_page_callbacks(dash_app: dash.Dash, registry: TaskRegistry) -> None:
    @dash_app.callback(
        output=TASK_RUNS_OUTPUTS,
        inputs={"_n": Input(ids.TASK_RUNS_INTERVAL, "n_intervals")},
        state={
            "page": State(ids.RUN_PAGE, "data"),
            "known": State(ids.TASK_RUNS_SIG, "data"),
        },
    )
    def task_runs(_n: Any, page: Any, known: Any):
        """The task's newest runs; polled fast while one is in flight. Nothing is
        sent when nothing changed."""
        found = run_panel.page_of(page)
        if found is None or found.task not in registry:
            raise PreventUpdate
        try:
            items = history.task_runs(found.task)
        except SQLAlchemyError:
            db.session.rollback()
            raise PreventUpdate from None
        rows = task_run_rows(items)
        interval = polling.history_poll_ms(history.any_active(items))
        signature = history.signature(rows)
        if signature == known:
            return only(TASK_RUNS_OUTPUTS, interval=interval)
        return only(
            TASK_RUNS_OUTPUTS, rows=rows, interval=interval, signature=signature
        )

    # A field's message goes away as soon as its value is edited. In the browser:
    # one small function per parameter name of the registry (ids are plain
    # strings, as the contract names them), shared by every task with that name.
    names = dict.fromkeys(f.name for d in registry.values() for f in d.fields)
    for name in names:
        for prop in ("value", "date"):
            if prop == "date" and not _has_date(registry, name):
                continue
            dash_app.clientside_callback(
                "function(_value) { return ''; }",
                Output(ids.param_error_id(name), "children", allow_duplicate=True),
                Input(ids.param_id(name), prop),
                prevent_initial_call=True,
            )


def _has_date(registry: TaskRegistry, name: str) -> bool:
    return any(
        f.name == name and f.kind == "date" and not f.multiple
        for d in registry.values()
        for f in d.fields
    )
