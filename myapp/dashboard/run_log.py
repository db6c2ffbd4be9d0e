"""The run panel's `run-log`: the lines the followed run's task wrote (`ctx.log`),
live, on the main page and on every task page.

It follows the run the panel follows (the background job's run, or the queued run
being polled): when that changes the list starts over, and on each tick of its own
interval it asks for the lines after the last it showed (one indexed read). The
interval stops once the run has ended and its last lines are in.
"""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, Patch, State, ctx, dcc, html
from dash.exceptions import PreventUpdate
from sqlalchemy.exc import SQLAlchemyError

from myapp import runs
from myapp.dashboard import ids
from myapp.dashboard.values import ref_run_id, run_id
from myapp.extensions import db

LOG_POLL_MS = 1000


def log_block() -> html.Div:
    """The panel's log: a list of lines, its interval and what it has shown."""
    return html.Div(
        className="run-log-block",
        children=[
            html.Ol(id=ids.RUN_LOG, className="run-log", children=[]),
            dcc.Store(id=ids.RUN_LOG_STATE),
            dcc.Interval(id=ids.RUN_LOG_INTERVAL, interval=LOG_POLL_MS, disabled=True),
        ],
    )


def _line(entry: dict[str, Any]) -> html.Li:
    return html.Li(
        [html.Time(entry["at"][11:19]), f" {entry['level']} {entry['message']}"],
        className=f"log-{entry['level'].lower()}",
    )


def register_run_log_callbacks(dash_app: dash.Dash) -> None:
    @dash_app.callback(
        output={
            "lines": Output(ids.RUN_LOG, "children"),
            "state": Output(ids.RUN_LOG_STATE, "data"),
            "stopped": Output(ids.RUN_LOG_INTERVAL, "disabled"),
        },
        inputs={
            "_tick": Input(ids.RUN_LOG_INTERVAL, "n_intervals"),
            "bg_run": Input(ids.BG_RUN, "data"),
            "queued": Input(ids.QUEUED_RUN, "data"),
        },
        state={"shown": State(ids.RUN_LOG_STATE, "data")},
    )
    def follow_log(_tick: Any, bg_run: Any, queued: Any, shown: Any):
        """New lines of the followed run; all of them when it changed."""
        shown = shown if isinstance(shown, dict) else {}
        current = run_id(shown.get("run"))
        after = shown.get("next") if type(shown.get("next")) is int else 0
        started = {ids.BG_RUN: run_id(bg_run), ids.QUEUED_RUN: ref_run_id(queued)}
        switched = started.get(ctx.triggered_id) or (
            None if current else started[ids.BG_RUN] or started[ids.QUEUED_RUN]
        )
        if switched and switched != current:
            current, after = switched, 0
        elif shown.get("done"):
            raise PreventUpdate  # its last line is shown already
        if current is None:
            raise PreventUpdate
        try:
            db.session.expire_all()
            run = runs.get_run(current)
            page = runs.read_lines(run, after=after) if run is not None else None
        except SQLAlchemyError:
            db.session.rollback()
            raise PreventUpdate from None
        if page is None:
            raise PreventUpdate
        lines = [_line(entry) for entry in page["lines"]]
        if after == 0:
            children: Any = lines
        else:
            children = Patch()
            children.extend(lines)
        if page["dropped"] and run.finished and len(page["lines"]) < 500:
            children.append(html.Li(f"… {page['dropped']} later lines were not kept."))
        # Ended with every line read: nothing more will come.
        done = run.finished and len(page["lines"]) < 500
        return {
            "lines": children,
            "state": {"run": current, "next": page["next"], "done": done},
            "stopped": done,
        }
