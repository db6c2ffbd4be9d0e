"""Reading the run history for the Dash pages: the history page's filters, grid and
chart, and a task page's recent runs and latest result."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from myapp import runs, users
from myapp.dashboard.core import params_text
from myapp.models import Run, isoformat
from myapp.runs.words import state_word

HISTORY_LIMIT = 200
TASK_RUNS_LIMIT = 50
OUTCOME_COLOURS = {"SUCCESS": "#2e7d32", "FAILURE": "#c62828", "REVOKED": "#757575"}


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
                "status": state_word(run.state),
                "params": params_text(run.params),
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


def signature(rows: Sequence[Mapping[str, Any]]) -> str:
    """A fingerprint of a grid's rows: a polled grid is sent rows only when it
    changed."""
    return hashlib.sha256(
        json.dumps(rows, sort_keys=True, default=str).encode()
    ).hexdigest()


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
