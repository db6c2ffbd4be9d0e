"""Tasks the Dash task-page tests start (TASK_MODULES="tests.dash_result_tasks"):
one whose result has a table and a Plotly figure, and one with a parameter of
every kind the forms draw."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

import plotly.graph_objects as go
from pydantic import Field

from myapp.tasks import RunContext, task

COUNTS = {"alpha": 3, "beta": 5, "gamma": 2}


@task(role="operator")
def tabulate(
    ctx: RunContext,
    categories: Annotated[
        list[Literal["alpha", "beta", "gamma"]] | None,
        Field(description="Only these categories."),
    ] = None,
    include_chart: bool = True,
) -> dict[str, Any]:
    """Count per category, as a table and a bar chart."""
    ctx.progress(0, 1, "counting")
    chosen = categories or list(COUNTS)
    table = [{"category": c, "count": COUNTS[c]} for c in chosen]
    result: dict[str, Any] = {"table": table, "total": sum(COUNTS[c] for c in chosen)}
    if include_chart:
        # A figure object: the result is converted as Plotly's encoder does.
        result["figure"] = go.Figure(
            go.Bar(x=chosen, y=[COUNTS[c] for c in chosen]),
            layout={"title": {"text": "rows per category"}},
        )
    ctx.progress(1, 1, "counted")
    return result


@task(role="admin")
def every_kind(
    ctx: RunContext,
    label: Annotated[str, Field(min_length=1, max_length=20)],
    count: Annotated[int, Field(ge=1, le=5)] = 2,
    ratio: float = 0.5,
    loud: bool = False,
    colour: Literal["red", "green"] = "red",
    day: date = date(2026, 1, 31),
    at: datetime | None = None,
    sizes: list[int] | None = None,
) -> dict[str, Any]:
    """Echo every parameter back (admins only)."""
    ctx.progress(1, 1, "echoed")
    return {
        "label": label.upper() if loud else label,
        "count": count,
        "ratio": ratio,
        "colour": colour,
        "day": day,
        "at": at,
        "sizes": sizes,
    }
