"""Callbacks of the Dash pages, bound to one Dash app (never `dash.callback`).

Thin edges: each parses component values, calls one function of `core`, shapes the
output. Here: the router, the main page's data set and the history page; starting
and following runs is `run_panel`, the task pages `task_page`.
"""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, State
from dash.exceptions import PreventUpdate
from sqlalchemy.exc import SQLAlchemyError

from myapp.dashboard import core, data, history, ids, layout, polling, task_page
from myapp.dashboard.manager import AppCeleryManager
from myapp.dashboard.run_callbacks import register_run_callbacks
from myapp.dashboard.run_log import register_run_log_callbacks
from myapp.dashboard.task_page import register_task_page_callbacks
from myapp.dashboard.values import only, run_id, text
from myapp.edge import current_requester
from myapp.extensions import db
from myapp.tasks import TaskRegistry, ValidationError, get_definition, task_registry


def register_callbacks(
    dash_app: dash.Dash, manager: AppCeleryManager, registry: TaskRegistry
) -> None:
    _register_router(dash_app)
    register_run_callbacks(dash_app, manager)
    register_run_log_callbacks(dash_app)
    register_task_page_callbacks(dash_app, registry)
    _register_data(dash_app)
    _register_history(dash_app)


def _register_router(dash_app: dash.Dash) -> None:
    @dash_app.callback(Output(ids.PAGE, "children"), Input(ids.URL, "pathname"))
    def route(pathname: Any):
        """Each page as the signed-in user sees it."""
        try:
            return page_for(text(pathname))
        except SQLAlchemyError:
            db.session.rollback()
            return task_page.not_found(
                "The run history is unreachable; reload the page in a moment."
            )


def page_for(pathname: str) -> Any:
    """The page at `pathname` (under /dash/). The history's filter names the users;
    the main page and the task pages follow the user's run in flight, so a reload
    (or a visit elsewhere and back) keeps following it."""
    # Anything that is not text (a hostile request) is the main page.
    base = layout.DASH_PATH
    path = pathname[len(base) :] if pathname.startswith(base) else pathname
    parts = [p for p in path.strip("/").split("/") if p]
    requester = current_requester()
    if not parts:
        return layout.main_page(core.run_in_flight(requester.name))
    if parts == ["history"]:
        return layout.history_page(tuple(history.user_names()), tuple(task_registry()))
    if parts == ["tasks"]:
        return task_page.tasks_page(task_registry(), requester)
    if len(parts) == 2 and parts[0] == "tasks":
        name = parts[1]
        if name not in task_registry():
            return task_page.not_found(f"There is no task named {name!r}.")
        definition = get_definition(name)
        following = core.run_in_flight(requester.name, name)
        latest = history.latest_result(name)
        return task_page.task_page(definition, requester, following, latest)
    return task_page.not_found(f"There is no Dash page at {pathname}.")


# Refresh the visible blocks in the browser when the counter moves; the grid then
# asks `grid_rows` again for what is on screen, keeping rows shown meanwhile. A
# grid that holds no rows has no blocks to refresh, so it is purged instead.
REFRESH_GRID_JS = """
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
        """.replace("GRID_ID", repr(ids.DATA_GRID))


def _register_data(dash_app: dash.Dash) -> None:
    dash_app.callback(
        Output(ids.DATA_GRID, "getRowsResponse"),
        Input(ids.DATA_GRID, "getRowsRequest"),
        prevent_initial_call=True,
    )(grid_rows)
    dash_app.callback(
        Output(ids.DATA_VERSION, "data"),
        Output(ids.DATA_TOTAL, "children"),
        Input(ids.DATA_INTERVAL, "n_intervals"),
        State(ids.DATA_VERSION, "data"),
    )(watch_data)
    dash_app.clientside_callback(
        REFRESH_GRID_JS,
        Output(ids.GRID_REFRESHED, "data"),
        Input(ids.DATA_VERSION, "data"),
        State(ids.GRID_REFRESHED, "data"),
    )
    dash_app.callback(
        Output(ids.SCHEDULE_INFO, "children"),
        Input(ids.SCHEDULE_INTERVAL, "n_intervals"),
    )(schedule_info)


def grid_rows(request: dict[str, Any] | None):
    """Only the requested block crosses the wire, sorted by the store."""
    return data.grid_block(request)


def watch_data(_n: int | None, known: int | None):
    """Asks the store's change counter; rows are refetched only when it moved."""
    try:
        version, total = data.data_state()
    except Exception:  # Redis away: keep what the page shows
        raise PreventUpdate from None
    if version == known:
        raise PreventUpdate
    return version, f"{total:,}"


def schedule_info(_n: int | None):
    try:
        return data.schedule_line()
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
    dash_app.callback(
        output=HISTORY_OUTPUTS,
        inputs={
            "_n": Input(ids.HISTORY_INTERVAL, "n_intervals"),
            "state": Input(ids.HISTORY_STATE, "value"),
            "source": Input(ids.HISTORY_SOURCE, "value"),
            "task": Input(ids.HISTORY_TASK, "value"),
            "created_by": Input(ids.HISTORY_CREATED_BY, "value"),
        },
        state={"known": State(ids.HISTORY_SIG, "data")},
    )(history_grid)
    dash_app.callback(
        Output(ids.HISTORY_RERUN, "disabled"),
        Input(ids.HISTORY_GRID, "selectedRows"),
    )(select_run)
    dash_app.callback(
        Output(ids.HISTORY_STATUS, "children"),
        Input(ids.HISTORY_RERUN, "n_clicks"),
        State(ids.HISTORY_GRID, "selectedRows"),
        prevent_initial_call=True,
    )(run_again)


def history_grid(
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
        items = history.history(filters)
    except ValidationError:
        raise PreventUpdate from None  # not one of the dropdown's choices
    except SQLAlchemyError:
        db.session.rollback()
        raise PreventUpdate from None
    rows = history.history_rows(items)
    interval = polling.history_poll_ms(history.any_active(items))
    signature = history.signature(rows)
    if signature == known:
        return only(HISTORY_OUTPUTS, interval=interval)
    return only(
        HISTORY_OUTPUTS,
        rows=rows,
        figure=history.duration_figure(items),
        interval=interval,
        signature=signature,
    )


def select_run(selected: Any):
    """Run again is offered once a run is selected."""
    return _selected_run_id(selected) is None


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
    return run_id(row.get("id")) if isinstance(row, dict) else None
