"""A finished run's result as a person reads it (the contract's "Result views").

A result object with a `table` (a list of row objects) is a grid, one with a
`figure` (a Plotly figure) a chart, both when it has both; what else it holds, and
any other result, is shown as formatted JSON.
"""

from __future__ import annotations

import json
from typing import Any

import dash_ag_grid as dag
from dash import dcc, html

from myapp.dashboard import ids
from myapp.models import Run, isoformat
from myapp.runs.results import result_view as split_result

# Rows a grid is given at once; a bigger table is cut, and the page says so.
MAX_TABLE_ROWS = 5000
SHORT_TABLE_ROWS = 15


def result_view(result: Any) -> list[Any]:
    """The children of `result-view` for a finished run's result, split as the
    HTML run page splits it (myapp.runs.results.result_view)."""
    view = split_result(result)
    parts: list[Any] = []
    if view.figure is not None:
        parts.append(dcc.Graph(id=ids.RESULT_GRAPH, figure=view.figure))
    if view.table is not None:
        parts.extend(_grid(view.table, view.columns))
    if view.rest is None:
        return parts or [html.P("The task returned nothing.", className="muted")]
    if parts:
        parts.append(html.H3("Other values"))
    parts.append(html.Pre(json.dumps(view.rest, indent=2), className="result-json"))
    return parts


def _grid(table: list[dict[str, Any]], columns: tuple[str, ...]) -> list[Any]:
    rows = table[:MAX_TABLE_ROWS]
    # A short table is as tall as its rows; a long one scrolls.
    short = len(rows) <= SHORT_TABLE_ROWS
    parts: list[Any] = [
        dag.AgGrid(
            id=ids.RESULT_GRID,
            columnDefs=[{"field": name} for name in columns],
            rowData=rows,
            defaultColDef={
                "resizable": True,
                "sortable": True,
                "filter": True,
                "flex": 1,
                "minWidth": 110,
            },
            dashGridOptions={
                "animateRows": False,
                **({"domLayout": "autoHeight"} if short else {}),
            },
            style={"width": "100%", **({} if short else {"height": "420px"})},
            className="ag-theme-alpine",
        )
    ]
    if len(table) > MAX_TABLE_ROWS:
        parts.append(
            html.P(
                f"Showing the first {MAX_TABLE_ROWS:,} of {len(table):,} rows.",
                className="muted",
            )
        )
    return parts


def waiting_view() -> html.P:
    """What `result-view` shows while the task has no result to show."""
    return html.P(
        "No run of this task has finished yet. The result of a run started here "
        "appears here when it finishes.",
        className="muted",
    )


def ended_view(run: Run, *, latest: bool = False) -> list[Any]:
    """What `result-view` shows for a run that has ended: which run it is, then
    its result (or why it has none). `latest`: the newest result of the task,
    shown when the page opens."""
    finished = isoformat(run.finished_at) or ""
    who = f", started by {run.created_by}" if run.created_by else ""
    caption = html.P(
        [
            "Latest result: " if latest else "Result of ",
            html.A(f"run {run.id[:8]}", href=f"/runs/{run.id}"),
            f" ({run.source}{who}, ended {finished}).",
        ],
        className="muted",
    )
    if run.state == "SUCCESS":
        return [caption, *result_view(run.result)]
    if run.state == "REVOKED":
        return [caption, html.P("The run was cancelled: it has no result.")]
    return [
        caption,
        html.P(
            f"The run failed: {run.error_type}: {run.error_message}", className="error"
        ),
    ]
