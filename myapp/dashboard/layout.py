"""The Dash pages: a shell with a router, the main page and the history page."""

from __future__ import annotations

import dash_ag_grid as dag
from dash import dcc, html

from myapp.dashboard import forms, ids, run_panel
from myapp.dashboard.core import TASK
from myapp.dashboard.polling import DATA_POLL_MS, HISTORY_POLL_MS, SCHEDULE_POLL_MS
from myapp.models import SOURCES, STATES, Run

# Where Dash is mounted on the Flask server.
DASH_PATH = "/dash/"

DATA_COLUMNS = [
    {"field": "id", "headerName": "#", "maxWidth": 110, "sortable": False},
    {
        "field": "created_at",
        "headerName": "created (UTC)",
        "sortable": True,
        "minWidth": 190,
    },
    {
        "field": "value",
        "sortable": True,
        "type": "numericColumn",
        "valueFormatter": {
            "function": "params.value == null ? '' : d3.format('.3f')(params.value)"
        },
    },
    {"field": "category", "sortable": False},
    {"field": "run_id", "headerName": "run", "sortable": False, "minWidth": 120},
]

HISTORY_COLUMNS = [
    {"field": "created_at", "headerName": "created (UTC)", "minWidth": 190},
    {"field": "task", "filter": True},
    {"field": "source", "filter": True},
    {"field": "created_by", "headerName": "by", "filter": True},
    {
        "field": "state",
        "filter": True,
        "cellClass": {"function": "'st-' + params.value"},
    },
    {"field": "params"},
    {"field": "progress"},
    {"field": "duration_s", "headerName": "duration (s)", "type": "numericColumn"},
    {"field": "error", "minWidth": 220},
    {"field": "id", "headerName": "run id", "minWidth": 120},
]


def shell() -> html.Div:
    """Same for every path: the router, the Dash pages' own links and the router's
    target. The site's navigation bar is around the Dash app (templates/dash.html).
    """
    return html.Div(
        className="dash-shell",
        children=[
            dcc.Location(id=ids.URL),
            html.Nav(
                className="dash-nav",
                **{"aria-label": "Dash pages"},
                children=[
                    dcc.Link("Generate data", href=DASH_PATH),
                    dcc.Link("Tasks", href=DASH_PATH + "tasks"),
                    dcc.Link("History", href=DASH_PATH + "history"),
                ],
            ),
            html.Div(id=ids.PAGE),
        ],
    )


def main_page(following: Run | None = None) -> html.Div:
    """The main page; `following` is a run of this user still in flight, which the
    page follows from its first render (its row's progress, and cancel), whichever
    mode started it: a reload loses Dash's handle on a background job, not the run.
    """
    page = run_panel.Page(TASK, forms.MAIN_FORM)
    return html.Div(
        className="page",
        children=[
            html.H1("Generate data"),
            html.Section(
                className="card",
                children=[
                    html.Div(
                        className="form",
                        children=[
                            html.Div(
                                id=ids.RUN_FORM,
                                className="form-fields",
                                children=[
                                    _field(
                                        "Rows", ids.ROWS_INPUT, ids.ROWS_ERROR, "10"
                                    ),
                                    _field(
                                        "Seconds",
                                        ids.SECONDS_INPUT,
                                        ids.SECONDS_ERROR,
                                        "5",
                                    ),
                                ],
                            ),
                            *run_panel.mode_and_buttons(following),
                        ],
                    ),
                    run_panel.progress_block(following, plain=False),
                ],
            ),
            html.P(id=ids.SCHEDULE_INFO, className="muted"),
            html.Section(
                className="card",
                children=[
                    html.Div(
                        className="grid-head",
                        children=[
                            html.H2("Data set"),
                            html.Span(
                                ["rows: ", html.Strong(id=ids.DATA_TOTAL, children="…")]
                            ),
                        ],
                    ),
                    data_grid(),
                ],
            ),
            *run_panel.stores(page, following),
            dcc.Store(id=ids.DATA_VERSION),
            dcc.Store(id=ids.GRID_REFRESHED),
            dcc.Interval(id=ids.DATA_INTERVAL, interval=DATA_POLL_MS),
            dcc.Interval(id=ids.SCHEDULE_INTERVAL, interval=SCHEDULE_POLL_MS),
        ],
    )


def _field(label: str, input_id: str, error_id: str, value: str) -> html.Div:
    return html.Div(
        className="field",
        children=[
            html.Label(label, htmlFor=input_id),
            dcc.Input(
                id=input_id,
                type="text",
                inputMode="decimal",
                value=value,
                debounce=False,
                autoComplete="off",
            ),
            html.Div(id=error_id, className="field-error", role="alert"),
        ],
    )


def data_grid() -> dag.AgGrid:
    """The whole data set, one block at a time: only visible rows cross the wire."""
    return dag.AgGrid(
        id=ids.DATA_GRID,
        rowModelType="infinite",
        columnDefs=DATA_COLUMNS,
        defaultColDef={"flex": 1, "minWidth": 90, "resizable": True},
        dashGridOptions={
            # One request at a time: dash-ag-grid keeps one pending request, so a
            # second concurrent block could receive the first block's rows.
            "maxConcurrentDatasourceRequests": 1,
            "cacheBlockSize": 100,
            "infiniteInitialRowCount": 1,
            "maxBlocksInCache": 20,
            "rowBuffer": 0,
        },
        getRowId="params.data.id",
        style={"height": "420px", "width": "100%"},
        className="ag-theme-alpine",
    )


def history_page(
    user_names: tuple[str, ...] = (), task_names: tuple[str, ...] = ()
) -> html.Div:
    """Every run, newest first; filters (who started it among them), and Run again
    for the row selected in the grid."""
    return html.Div(
        className="page",
        children=[
            html.H1("Run history"),
            html.Section(
                className="card form",
                children=[
                    _choice(ids.HISTORY_STATE, "State", STATES),
                    _choice(ids.HISTORY_SOURCE, "Source", SOURCES),
                    _choice(ids.HISTORY_TASK, "Task", task_names),
                    _choice(ids.HISTORY_CREATED_BY, "Started by", user_names),
                ],
            ),
            html.Section(
                className="card",
                children=[history_grid(), _rerun_buttons()],
            ),
            html.Section(className="card", children=[dcc.Graph(id=ids.HISTORY_CHART)]),
            dcc.Store(id=ids.HISTORY_SIG),
            dcc.Interval(id=ids.HISTORY_INTERVAL, interval=HISTORY_POLL_MS),
        ],
    )


def _choice(id_: str, label: str, values: tuple[str, ...]) -> html.Div:
    """A filter of the history: one of `values`, or any."""
    return html.Div(
        className="field",
        children=[
            html.Label(label, htmlFor=id_),
            dcc.Dropdown(
                id=id_,
                options=[{"label": v, "value": v} for v in values],
                placeholder="any",
                clearable=True,
            ),
        ],
    )


def history_grid() -> dag.AgGrid:
    """The runs of the history, filled by its callback; a click selects one."""
    return dag.AgGrid(
        id=ids.HISTORY_GRID,
        columnDefs=HISTORY_COLUMNS,
        rowData=[],
        getRowId="params.data.id",
        defaultColDef={"resizable": True, "sortable": True},
        columnSize="autoSize",
        dashGridOptions={
            "animateRows": False,
            # A click selects a run for Run again.
            "rowSelection": {
                "mode": "singleRow",
                "checkboxes": False,
                "enableClickSelection": True,
            },
        },
        style={"height": "420px", "width": "100%"},
        className="ag-theme-alpine",
    )


def _rerun_buttons() -> html.Div:
    return html.Div(
        className="buttons",
        children=[
            html.Button("Run again", id=ids.HISTORY_RERUN, disabled=True),
            html.Span(
                id=ids.HISTORY_STATUS,
                role="status",
                children="Select a run to start it again.",
            ),
        ],
    )
